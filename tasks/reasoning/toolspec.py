"""What a reasoner knows of a tool: its name, what it is for, and the JSON schema of its input.

Plain values, so reasoners do not depend on the tool registry: :func:`tool_specs` reads any object
with ``name``, ``description`` and a pydantic ``input_model`` (the registry's ``Tool`` is one).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

# OpenAI's rule for function names; vLLM, Ollama and LiteLLM accept the same.
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class ToolSpec:
    """One tool as the model sees it. ``input_model`` (optional) validates the model's arguments;
    without it only the schema's ``required`` fields are checked."""

    name: str
    description: str
    input_schema: dict[str, Any]
    input_model: type[BaseModel] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"tool name {self.name!r} must match {_NAME.pattern}")
        if not isinstance(self.input_schema, dict) or self.input_schema.get("type", "object") != "object":
            raise ValueError(f"tool {self.name!r}: input_schema must be a JSON schema of an object")
        if self.input_model is not None and not (
            isinstance(self.input_model, type) and issubclass(self.input_model, BaseModel)
        ):
            raise ValueError(f"tool {self.name!r}: input_model must be a pydantic BaseModel class")

    @classmethod
    def from_model(cls, name: str, description: str, input_model: type[BaseModel]) -> ToolSpec:
        """A spec whose schema is ``input_model.model_json_schema()`` and which validates with it."""
        if not (isinstance(input_model, type) and issubclass(input_model, BaseModel)):
            raise ValueError(f"tool {name!r}: input_model must be a pydantic BaseModel class")
        return cls(name, description, input_model.model_json_schema(), input_model)

    def as_openai_tool(self) -> dict[str, Any]:
        """The entry of the ``tools`` list of a chat-completions request."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.input_schema},
        }


def tool_specs(tools: Iterable[Any]) -> list[ToolSpec]:
    """Specs of tools that have ``name``, ``description`` and ``input_model`` (e.g. a tool ``ToolRegistry``)."""
    specs = []
    for t in tools:
        try:
            name, description, model = t.name, t.description, t.input_model
        except AttributeError as exc:
            raise ValueError(f"not a tool (needs name, description, input_model): {t!r}") from exc
        specs.append(ToolSpec.from_model(name, description or name, model))
    return specs
