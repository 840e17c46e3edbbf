"""`steplog api` (the HTTP API and web console) and `steplog tokens create | list | revoke`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from workers.cli.common import ctx, err, operator, out, print_json

tokens_app = typer.Typer(no_args_is_help=True, help="API tokens: a tenant and a role each; shown once, stored hashed.")


def api(
    host: Annotated[str, typer.Option("--host", help="Address to listen on; 0.0.0.0 for all.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8000,
    unauthenticated: Annotated[bool, typer.Option(
        "--unauthenticated", help="No tokens: every request acts as an admin of every tenant (local use only).")] = False,
) -> None:
    """Serve the HTTP API (OpenAPI at /docs) and the web console (at /); stateless: run as many as you like."""
    import uvicorn

    from workers.api.app import create_api

    if unauthenticated:
        err.print(Text("warning: --unauthenticated: anyone who reaches this port acts as an admin of every tenant",
                       style="bold yellow"))
    app = create_api(ctx.settings, unauthenticated=unauthenticated)
    # Keep-alive longer than a load balancer's usual idle reuse, so a reused connection is not closed under it.
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, timeout_keep_alive=75)


@tokens_app.command("create")
def create(
    tenant: Annotated[str, typer.Option("--tenant", help="Whose runs the token sees and makes.")],
    role: Annotated[str, typer.Option("--role", help="viewer, operator, approver or admin.")],
    name: Annotated[str | None, typer.Option("--name", help="Recorded in the event log for what the token does.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help='Print {"token", "name", "tenant", "role"}.')] = False,
) -> None:
    """Create a token; it is printed once (only its hash is stored)."""
    from checkpoint import access

    made, token = access.create(ctx.engine, tenant=tenant, role=role, name=name, created_by=operator())
    if as_json:
        print_json({"token": token, "name": made, "tenant": tenant, "role": role})
    else:
        out.print(token, markup=False, highlight=False)
        err.print(Text(f"token {made!r}: {role} of tenant {tenant!r}; shown once, keep it", style="dim"))


@tokens_app.command("list")
def listing(
    tenant: Annotated[str | None, typer.Option("--tenant")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Tokens (names, tenants, roles; never the tokens themselves)."""
    from checkpoint import access
    from workers.cli.render import iso, table

    rows = [{"name": r.name, "tenant": r.tenant, "role": r.role, "created_by": r.created_by,
             "created_at": iso(r.created_at), "revoked_at": iso(r.revoked_at)} for r in access.listing(ctx.engine, tenant=tenant)]
    if as_json:
        print_json(rows)
        return
    view = table("name", "tenant", "role", "created", "revoked")
    for r in rows:
        view.add_row(r["name"], r["tenant"], r["role"], r["created_at"] or "", r["revoked_at"] or "")
    out.print(view)


@tokens_app.command("revoke")
def revoke(name: Annotated[str, typer.Argument(help="The token's name.")]) -> None:
    """Revoke a token: requests with it are refused from now on."""
    from checkpoint import access

    access.revoke(ctx.engine, name)
    out.print(f"token {name!r} revoked", markup=False)
