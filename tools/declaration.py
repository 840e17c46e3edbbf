"""What a tool is: a name, a version, pydantic input and output models, an effect class and a function."""

from __future__ import annotations

import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Engine

from tools.config import ToolConfig
from tools.errors import ToolDeclarationError

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class Effect(StrEnum):
    """How a tool touches the world, which decides what a retry may do."""

    #: No side effects: executing again is always safe.
    READ = "read"
    #: Creates or updates something of ours, idempotently by the key or an existence check.
    WRITE = "write"
    #: An effect outside our control (a message sent): the key goes to the outside system.
    IRREVERSIBLE = "irreversible"


@dataclass(frozen=True)
class ToolContext:
    """What a tool function gets besides its input: its key (hand it to outside systems) and resources."""

    key: str
    run_id: str
    seq: int
    #: 1 for the first execution of this key; higher after a lost attempt or a transient error.
    execution: int
    engine: Engine
    config: ToolConfig


@dataclass(frozen=True)
class Rate:
    """At most ``limit`` executions of a tool per ``per_seconds``, fleet-wide; with ``key`` (a path into
    the tool's arguments, ``args.FIELD``), one such budget per value of that field. A call over it
    defers its step (due when a slot of the window frees), holding no worker."""

    limit: int
    per_seconds: float
    key: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.limit, int) or isinstance(self.limit, bool) or self.limit < 1:
            raise ToolDeclarationError(f"Rate limit must be a positive integer, not {self.limit!r}")
        if not isinstance(self.per_seconds, (int, float)) or not self.per_seconds > 0:
            raise ToolDeclarationError(f"Rate per_seconds must be a positive number, not {self.per_seconds!r}")
        if self.key is not None and not _RATE_KEY.match(self.key):
            raise ToolDeclarationError(f"Rate key must be a path into the arguments such as 'args.host', not {self.key!r}")

    def name_for(self, tool: str, args: dict[str, Any]) -> str:
        """The budget a call draws on: ``tool NAME``, or ``tool NAME FIELD=value`` with a key."""
        if self.key is None:
            return f"tool {tool}"
        value: Any = args
        for part in self.key.split(".")[1:]:
            value = value.get(part) if isinstance(value, dict) else None
        return f"tool {tool} {self.key.rsplit('.', 1)[-1]}={value}"


_RATE_KEY = re.compile(r"^args(\.[A-Za-z_][A-Za-z0-9_]*)+$")


@dataclass(frozen=True)
class Tool:
    """A declared tool. ``fn(ctx, input) -> output`` gets a validated ``input_model`` instance.

    ``dedupes`` is only meaningful for irreversible tools: True when the outside system deduplicates
    by the key it is handed, so re-firing after a lost answer is safe. ``approval``: a person approves
    each call first (``steplog approve``); ``STEPLOG_APPROVE_TOOLS`` asks it of any tool by name.
    """

    name: str
    version: str
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    effect: Effect
    fn: Callable[[ToolContext, Any], Any]
    dedupes: bool = False
    description: str = field(default="")
    approval: bool = False
    rate: Rate | None = None  # a fleet-wide rate limit on its executions (an outside API's)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ToolDeclarationError(f"tool name {self.name!r} must match {_NAME.pattern}")
        if not self.version or not isinstance(self.version, str):
            raise ToolDeclarationError(f"tool {self.name!r}: version must be a non-empty string")
        for label, model in (("input", self.input_model), ("output", self.output_model)):
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise ToolDeclarationError(f"tool {self.name!r}: {label} model must be a pydantic BaseModel class")
        if not isinstance(self.effect, Effect):
            raise ToolDeclarationError(f"tool {self.name!r}: effect must be an Effect, not {self.effect!r}")
        if self.dedupes and self.effect is not Effect.IRREVERSIBLE:
            raise ToolDeclarationError(f"tool {self.name!r}: only an irreversible tool declares dedupes")

    @property
    def may_refire(self) -> bool:
        """Whether executing again after a lost answer is safe (no duplicate effect)."""
        return self.effect is not Effect.IRREVERSIBLE or self.dedupes


def tool(
    name: str, version: str, effect: Effect, *, dedupes: bool = False, approval: bool = False, rate: Rate | None = None
) -> Callable[[Callable[[ToolContext, Any], Any]], Tool]:
    """Declare a tool from a function annotated ``(ctx: ToolContext, args: InputModel) -> OutputModel``."""

    def wrap(fn: Callable[[ToolContext, Any], Any]) -> Tool:
        try:
            hints = typing.get_type_hints(fn)
        except NameError as exc:  # models must be importable names, not locals of another function
            raise ToolDeclarationError(f"tool {name!r}: cannot resolve an annotation: {exc}") from exc
        params = [p for p in fn.__code__.co_varnames[: fn.__code__.co_argcount]]
        if len(params) != 2 or params[1] not in hints or "return" not in hints:
            raise ToolDeclarationError(f"tool {name!r}: annotate fn(ctx, args: InputModel) -> OutputModel")
        return Tool(
            name=name, version=version, input_model=hints[params[1]], output_model=hints["return"],
            effect=effect, fn=fn, dedupes=dedupes, description=(fn.__doc__ or "").strip(), approval=approval,
            rate=rate,
        )

    return wrap
