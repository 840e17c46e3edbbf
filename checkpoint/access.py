"""API tokens: who may do what, for which tenant. A token is shown once; only its SHA-256 is stored.

Roles, each with what the one before it may do, except that an approver does not submit:
- ``viewer`` reads;
- ``operator`` also submits runs, opens sessions and sends them messages, cancels and signals;
- ``approver`` also approves and rejects tool calls waiting for a person (and reads);
- ``admin`` does everything, and manages tokens.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from checkpoint.db import autocommit
from checkpoint.errors import BadInput, SteplogError
from checkpoint.queries import load
from checkpoint.tables import ROLES

Q = load(Path(__file__).with_name("access.sql"))

PREFIX = "stl_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")

#: What each role may do (the API's actions).
ALLOWED: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "operator": frozenset({"read", "submit", "cancel", "signal"}),
    "approver": frozenset({"read", "approve"}),
    "admin": frozenset({"read", "submit", "cancel", "signal", "approve", "admin"}),
}


class TokenExists(SteplogError):
    """A token with this name exists already."""


class TokenNotFound(SteplogError):
    """No (unrevoked) token has this name."""


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a token's ``name`` (recorded in the event log), its ``tenant`` (None: every
    tenant, for ``--unauthenticated`` local use) and ``role``."""

    name: str
    tenant: str | None
    role: str

    def may(self, action: str) -> bool:
        return action in ALLOWED[self.role]

    def sees(self, tenant: str) -> bool:
        return self.tenant is None or self.tenant == tenant


@dataclass(frozen=True)
class TokenRow:
    name: str
    tenant: str
    role: str
    created_by: str | None
    created_at: datetime
    revoked_at: datetime | None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check(name: str, tenant: str, role: str) -> None:
    for what, value in (("name", name), ("tenant", tenant)):
        if not isinstance(value, str) or not _NAME.match(value):
            raise BadInput(f"a token's {what} is 1 to 64 letters, digits or . _ @ - (starting with a letter or "
                           f"digit), got {value!r}")
    if role not in ROLES:
        raise BadInput(f"role must be one of {', '.join(ROLES)}, got {role!r}")


def create(engine: Engine, *, tenant: str, role: str, name: str | None = None, created_by: str) -> tuple[str, str]:
    """A new token; returns ``(name, token)``. The token is not stored and cannot be shown again."""
    name = name or f"{role}-{secrets.token_hex(3)}"
    check(name, tenant, role)
    token = PREFIX + secrets.token_urlsafe(32)
    try:
        with engine.begin() as conn:
            conn.execute(Q["create_token"], dict(name=name, token_hash=digest(token), tenant=tenant, role=role,
                                                 created_by=created_by))
    except IntegrityError:
        raise TokenExists(f"a token named {name!r} exists already") from None
    return name, token


def resolve(engine: Engine, token: str) -> Principal | None:
    """The principal of an unrevoked ``token``, or None."""
    if not isinstance(token, str) or not token.startswith(PREFIX) or len(token) > 200:
        return None
    with autocommit(engine).connect() as conn:  # no transaction to open and roll back: one round trip
        row = conn.execute(Q["resolve_token"], dict(token_hash=digest(token))).one_or_none()
    return None if row is None else Principal(row.name, row.tenant, row.role)


def listing(engine: Engine, *, tenant: str | None = None) -> list[TokenRow]:
    with engine.connect() as conn:
        rows = conn.execute(Q["list_tokens"], dict(tenant=tenant)).all()
    return [TokenRow(r.name, r.tenant, r.role, r.created_by, r.created_at, r.revoked_at) for r in rows]


def revoke(engine: Engine, name: str, *, tenant: str | None = None) -> None:
    """Revoke token ``name`` (of ``tenant``, when given); TokenNotFound if there is no such live token."""
    with engine.begin() as conn:
        if conn.execute(Q["revoke_token"], dict(name=name, tenant=tenant)).one_or_none() is None:
            raise TokenNotFound(f"no live token named {name!r}")
