"""Hooks around each step for what watches the fleet (Prometheus metrics, OpenTelemetry traces).

The runner calls an :class:`Observer` once per step message and the :class:`Observation` it returns at
the step's milestones. The defaults do nothing and cost nothing; ``workers.metrics`` and
``workers.tracing`` implement them, so tasks/ imports neither prometheus-client nor OpenTelemetry.
"""

from __future__ import annotations

from typing import Any

from checkpoint.steps import Claim


class Observation:
    """One step message, from before its claim to its end."""

    def claimed(self, claim: Claim, kind: str) -> None:
        """The claim succeeded: step ``claim.seq`` of a ``claim.workflow`` run, attempt ``claim.attempt``;
        ``kind`` is what it does (``reason``, a tool's name, or the workflow's name)."""

    def parked(self) -> dict[str, Any]:
        """The step is about to park its run (a wait or a sleep): fields for its `waiting` event."""
        return {}

    def committed(self, payload: dict[str, Any]) -> None:
        """The step's event was written; ``payload`` is the step's own (a model call's ``usage``)."""

    def ended(self, outcome: str) -> None:
        """What happened to the message (the runner's return value: ``running``, ``duplicate``, ...)."""


class Observer:
    """Makes an :class:`Observation` per step message."""

    def begin(self, run_id: str, seq: int) -> Observation:
        return NOTHING


NOTHING = Observation()


class Observers(Observer):
    """Several observers as one."""

    def __init__(self, observers: list[Observer]) -> None:
        self.observers = observers

    def begin(self, run_id: str, seq: int) -> Observation:
        return _Each([o.begin(run_id, seq) for o in self.observers])


class _Each(Observation):
    def __init__(self, each: list[Observation]) -> None:
        self.each = each

    def claimed(self, claim: Claim, kind: str) -> None:
        for o in self.each:
            o.claimed(claim, kind)

    def parked(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for o in self.each:
            fields.update(o.parked())
        return fields

    def committed(self, payload: dict[str, Any]) -> None:
        for o in self.each:
            o.committed(payload)

    def ended(self, outcome: str) -> None:
        for o in self.each:
            o.ended(outcome)
