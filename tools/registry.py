"""The tools an agent may call, by name."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from tools.declaration import Tool
from tools.errors import ToolDeclarationError, UnknownToolError


class ToolRegistry:
    """Tools by name; one version of each name (the version is part of every call's key)."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for t in tools:
            self.register(t)

    def register(self, tool: Tool) -> Tool:
        """Add ``tool``; a second tool of the same name is a :class:`ToolDeclarationError`."""
        if not isinstance(tool, Tool):
            raise ToolDeclarationError(f"not a Tool: {tool!r}")
        if tool.name in self._tools:
            raise ToolDeclarationError(f"tool {tool.name!r} is registered twice")
        self._tools[tool.name] = tool
        return tool

    def get(self, name: str) -> Tool:
        """The tool called ``name``, or :class:`UnknownToolError` listing the known ones."""
        try:
            return self._tools[name]
        except (KeyError, TypeError):
            raise UnknownToolError(str(name), list(self._tools)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)


def builtin_registry() -> ToolRegistry:
    """A registry holding the built-in tools: search_corpus, fetch_url, save_note, publish_report, notify."""
    from tools.builtin import BUILTIN_TOOLS

    return ToolRegistry(BUILTIN_TOOLS)
