"""Which workflows this process can run: the built-ins plus modules named in STEPLOG_WORKFLOW_MODULES.

A module's ``WORKFLOWS`` lists :class:`~tasks.workflow.Workflow` values or :class:`~tasks.agent.Agent`
values (anything with ``as_workflow()``), which run as the workflow they convert to."""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import ValidationError

from tasks import countdown, fanout, tool_call
from tasks.chat import workflow as chat
from tasks.errors import InvalidInput, UnknownWorkflow
from tasks.research import workflow as research
from tasks.workflow import Workflow

BUILTIN: tuple[Workflow, ...] = (
    countdown.WORKFLOW, research.WORKFLOW, chat.WORKFLOW, fanout.WORKFLOW, fanout.CHILD, tool_call.WORKFLOW,
)


def _workflow(item: Any, module: str) -> Workflow:
    convert = getattr(item, "as_workflow", None)
    wf = convert() if callable(convert) else item
    if not isinstance(wf, Workflow):
        raise TypeError(f"{module}.WORKFLOWS holds {item!r}, which is neither a Workflow nor an Agent")
    return wf


class WorkflowRegistry:
    def __init__(self, workflows: tuple[Workflow, ...] | list[Workflow]) -> None:
        self._by_name = {wf.name: wf for wf in workflows}

    @classmethod
    def load(cls, modules: list[str] = ()) -> WorkflowRegistry:
        """Built-ins, then each module's ``WORKFLOWS`` list (how users add their own)."""
        found = list(BUILTIN)
        for name in modules:
            try:
                module = importlib.import_module(name)
            except ImportError as exc:
                raise ImportError(f"STEPLOG_WORKFLOW_MODULES names {name!r}, which cannot be imported: {exc}") from exc
            found.extend(_workflow(w, name) for w in getattr(module, "WORKFLOWS", ()))
        return cls(found)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def is_session(self, name: str) -> bool:
        wf = self._by_name.get(name)
        return wf is not None and wf.session

    def sessions(self) -> list[str]:
        """The chat agents: workflows whose runs are sessions."""
        return sorted(name for name, wf in self._by_name.items() if wf.session)

    def get(self, name: str) -> Workflow:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownWorkflow(name, self.names()) from None

    def validate(self, name: str, raw: Any, *, engine: Any = None) -> tuple[Workflow, dict[str, Any]]:
        """The workflow and its validated input as JSON-ready data; raises a WorkflowError naming the
        problem. With ``engine``, the workflow's precheck runs too (e.g. that the corpus exists)."""
        wf = self.get(name)
        try:
            model = wf.input_model.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in exc.errors()
            )
            raise InvalidInput(f"invalid input for workflow {name!r}: {problems}") from None
        if engine is not None and wf.precheck is not None:
            wf.precheck(model, engine)
        return wf, model.model_dump(mode="json")
