"""The tool runtime: every tool call keyed, ledgered and safe to repeat.

One :class:`ToolRuntime` serves one step attempt. ``call`` validates the input, derives the
idempotency key, commits a ``started`` ledger row (own short transaction), executes the tool with
retries for transient errors, and returns a :class:`ToolOutcome`. The final result is *not* committed
here: ``outcome.record(conn)`` writes it, and the step engine runs it inside the transaction that
appends the step's checkpoint (``checkpoint.steps.commit(..., extra_writes=runtime.records())``), so
the result and the checkpoint land together or not at all.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection, Engine

from checkpoint import limiter
from checkpoint.jsonutil import dumps
from checkpoint.limiter import Limit
from tools import ledger
from tools.config import ToolConfig
from tools.declaration import Tool, ToolContext
from tools.errors import (
    LedgerError,
    OutcomeUnknown,
    ToolError,
    ToolInputError,
    ToolOutputError,
    TransientToolError,
    UnexpectedToolError,
)
from tools.faults import FaultInjector
from tools.keys import canonical_json, idempotency_key, input_hash, non_finite_path
from tools.registry import ToolRegistry
from tools.retry import retrying

Status = Literal["succeeded", "failed", "unknown"]
Record = Callable[[Connection], None]


class ArtifactSeam(Protocol):
    """Where results larger than the inline limit go; adapt ``checkpoint.artifacts`` to this."""

    def put(self, data: bytes, media_type: str) -> dict[str, Any]:
        """Store ``data``; return a JSON pointer to it."""
        ...

    def get(self, pointer: dict[str, Any]) -> bytes:
        """The bytes a pointer from :meth:`put` refers to."""
        ...


def _no_record(conn: Connection) -> None:
    """Nothing left to write: the ledger already holds this outcome."""


@dataclass(frozen=True)
class ToolOutcome:
    """What a tool call came to. ``record(conn)`` must run in the step's commit transaction."""

    tool: str
    status: Status
    result: Any
    error: dict[str, Any] | None
    replayed: bool
    key: str | None
    record: Record = _no_record
    elapsed_ms: float | None = None  # the tool's own time (its executions and retries), not the ledger's

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    def as_message(self) -> dict[str, Any]:
        """The outcome as the reasoner sees it: a result or a tool error, never an exception."""
        body: dict[str, Any] = {"tool": self.tool, "status": self.status, "replayed": self.replayed}
        if self.ok:
            body["result"] = self.result
        else:
            body["error"] = self.error
        return body


def _input_error(exc: ValidationError) -> ToolInputError:
    """A pydantic error as one ToolInputError naming the (first) bad field and listing the rest."""
    errors = exc.errors(include_url=False)
    path = lambda e: ".".join(str(p) for p in e.get("loc", ()))  # noqa: E731
    first = errors[0]
    rest = "; ".join(f"{path(e) or 'input'}: {e['msg']}" for e in errors[1:])
    return ToolInputError(path(first), first["msg"] + (f" (also {rest})" if rest else ""))


class ToolRuntime:
    """Runs tool calls for one step attempt of one run.

    ``owner`` is the worker process id (liveness id) and ``worker`` the Celery node name, both written
    to the ledger. Exceptions in ``propagate`` (e.g. Celery's SoftTimeLimitExceeded) pass through
    untouched instead of becoming tool errors.
    """

    def __init__(
        self,
        engine: Engine,
        registry: ToolRegistry,
        config: ToolConfig | None = None,
        *,
        run_id: str,
        seq: int,
        owner: str | None = None,
        worker: str | None = None,
        artifacts: ArtifactSeam | None = None,
        propagate: tuple[type[BaseException], ...] = (),
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.engine = engine
        self.registry = registry
        self.config = config or ToolConfig()
        self.run_id = run_id
        self.seq = seq
        self.owner = owner
        self.worker = worker
        self.artifacts = artifacts
        self.propagate = propagate
        self.faults = FaultInjector(self.config.fault_rate, self.config.fault_seed)
        self._sleep = sleep
        self._memo: dict[str, ToolOutcome] = {}
        self._records: list[Record] = []

    # -- public -----------------------------------------------------------------------------------

    def call(self, name: str, args: Mapping[str, Any] | BaseModel | None = None) -> ToolOutcome:
        """Call tool ``name`` with ``args``; a tool error is returned in the outcome, never raised.

        Raises only :class:`~tools.errors.LedgerError` (the ledger is unreachable: the step cannot
        know what it did and must be retried) and the ``propagate`` exceptions.
        """
        outcome = self._call(name, {} if args is None else args)
        self._records.append(outcome.record)
        return outcome

    def requires_approval(self, name: str, also: Iterable[str] = ()) -> bool:
        """Whether a call of ``name`` waits for a person first: declared on the tool, named in
        ``STEPLOG_APPROVE_TOOLS``, or in ``also`` (a run's own list). Unknown tools need none (the call
        is refused anyway)."""
        if name not in self.registry:
            return False
        return self.registry.get(name).approval or name in self.config.approve_tools or name in set(also)

    def key_for(self, name: str, args: Mapping[str, Any] | BaseModel | None = None) -> str | None:
        """The idempotency key ``call(name, args)`` would use, without calling; None for a call that
        would be refused (unknown tool, invalid input)."""
        try:
            tool, _, data, _ = self._validate(name, {} if args is None else args)
        except ToolError:
            return None
        return idempotency_key(self.run_id, self.seq, tool.name, tool.version, data)

    def records(self) -> list[Record]:
        """Every outcome's ``record``, in call order: pass them as the step commit's extra writes."""
        return list(self._records)

    # -- steps of a call --------------------------------------------------------------------------

    def _validate(self, name: str, args: Any) -> tuple[Tool, BaseModel, Any, str]:
        tool = self.registry.get(name)
        raw = args.model_dump(mode="json") if isinstance(args, BaseModel) else args
        bad = non_finite_path(raw)
        if bad is not None:
            raise ToolInputError(bad, "NaN and Infinity are not JSON numbers")
        try:
            validated = tool.input_model.model_validate(raw)
        except ValidationError as exc:
            raise _input_error(exc) from None
        data = validated.model_dump(mode="json")
        return tool, validated, data, input_hash(data)

    def _call(self, name: str, args: Any) -> ToolOutcome:
        try:
            tool, validated, data, digest = self._validate(name, args)
        except ToolError as exc:
            return self._rejected(name, args, exc)
        key = idempotency_key(self.run_id, self.seq, tool.name, tool.version, data)

        if key in self._memo:  # the same call twice in one step: answered from memory
            return dataclasses.replace(self._memo[key], replayed=True, record=partial(ledger.count_replay, key=key))

        unknown = OutcomeUnknown(
            f"{tool.name}: an earlier attempt may have performed this irreversible call and "
            "its outside system cannot deduplicate; not re-fired: an operator must check"
        ).to_dict()
        if tool.rate is not None:
            self._within_rate(tool, data)
        entry = ledger.begin_call(
            self.engine, key=key, run_id=self.run_id, seq=self.seq, tool=tool.name, version=tool.version,
            input_hash=digest, input=data, worker=self.worker, owner=self.owner,
            refire=tool.may_refire, unknown_error=unknown,
        )
        if entry.status == "succeeded":
            outcome = ToolOutcome(tool.name, "succeeded", self._stored_result(entry), None, True, key)
        elif entry.status == "unknown":
            outcome = ToolOutcome(tool.name, "unknown", None, entry.error, False, key)
        else:
            outcome = self._execute(tool, key, validated, entry.attempts)
        self._memo[key] = outcome
        return outcome

    def _within_rate(self, tool: Tool, data: Any) -> None:
        """Take one execution from the tool's fleet-wide rate (before the ledger counts an attempt, so a
        deferred call is not one): :class:`~checkpoint.errors.Throttled` when there is no room, which
        defers the whole step. Without a limiter in the process (no Redis), the call goes ahead."""
        rates = limiter.current()
        if rates is None:
            return
        rate = tool.rate
        name = rate.name_for(tool.name, data if isinstance(data, dict) else {})
        rates.reserve(Limit(name, float(rate.per_seconds), rate.limit, None, {"requests": f"rate: {name}"}),
                      caller=f"{self.run_id}:{self.seq}")

    def _rejected(self, name: str, args: Any, exc: ToolError) -> ToolOutcome:
        """A call refused before execution: an error outcome, audited in the ledger by a key of its raw input."""
        tool = self.registry.get(name) if name in self.registry else None
        version = tool.version if tool else ""
        try:
            canonical_json(args)
            audit_input = args
        except ToolError:
            audit_input = {"unserializable": repr(args)[:2000]}
        key = idempotency_key(self.run_id, self.seq, str(name), version, audit_input)
        if key in self._memo:
            return dataclasses.replace(self._memo[key], replayed=True, record=partial(ledger.count_replay, key=key))
        error = exc.to_dict()
        record = partial(
            ledger.record_rejected, key=key, run_id=self.run_id, seq=self.seq, tool=str(name), version=version,
            input_hash=input_hash(audit_input), input=audit_input, error=error, worker=self.worker, owner=self.owner,
        )
        outcome = ToolOutcome(str(name), "failed", None, error, False, key, record)
        self._memo[key] = outcome
        return outcome

    def _execute(self, tool: Tool, key: str, validated: BaseModel, execution: int) -> ToolOutcome:
        def retry_if(exc: BaseException) -> bool:
            # A non-deduplicating irreversible tool is only re-fired when the effect surely did not happen.
            return isinstance(exc, TransientToolError) and (tool.may_refire or not exc.maybe_applied)

        first = True
        kwargs = {"sleep": self._sleep} if self._sleep else {}
        started = time.perf_counter()
        try:
            for attempt in retrying(self.config, retry_if, **kwargs):
                with attempt:
                    if not first:
                        execution = ledger.bump_attempt(self.engine, key)
                    first = False
                    ctx = ToolContext(key, self.run_id, self.seq, execution, self.engine, self.config)
                    result = self._execute_once(tool, ctx, validated)
        except ToolError as exc:
            return self._failed(tool, key, exc)
        record_result, artifact = self._storable(result)
        record = partial(ledger.finish_call, key=key, status="succeeded", result=record_result, result_artifact=artifact)
        return ToolOutcome(tool.name, "succeeded", result, None, False, key, record,
                           round((time.perf_counter() - started) * 1000, 3))

    def _execute_once(self, tool: Tool, ctx: ToolContext, validated: BaseModel) -> Any:
        """One execution: the tool's exceptions classified, its output validated and made JSON."""
        try:
            output = self.faults.run(ctx.key, ctx.execution, lambda: tool.fn(ctx, validated))
        except ToolError:
            raise
        except self.propagate:
            raise
        except Exception as exc:  # a tool bug is a recorded tool error, never a crashed worker
            raise UnexpectedToolError(exc) from exc
        try:
            model = output if isinstance(output, tool.output_model) else tool.output_model.model_validate(output)
            result = model.model_dump(mode="json")
            canonical_json(result)
        except (ValidationError, ToolError) as exc:
            raise ToolOutputError(f"{tool.name} returned an invalid result: {exc}") from exc
        return result

    def _failed(self, tool: Tool, key: str, exc: ToolError) -> ToolOutcome:
        error = exc.to_dict()
        maybe_applied = isinstance(exc, UnexpectedToolError) or (
            isinstance(exc, TransientToolError) and exc.maybe_applied
        )
        status: Status = "failed"
        if maybe_applied and not tool.may_refire:
            status = "unknown"
            error = {
                **OutcomeUnknown(
                    f"{tool.name}: the call may have taken effect ({exc}); its outside system cannot "
                    "deduplicate, so it is not re-fired: an operator must check"
                ).to_dict(),
                "cause": error,
            }
        record = partial(ledger.finish_call, key=key, status=status, error=error)
        return ToolOutcome(tool.name, status, None, error, False, key, record)

    # -- results too large for a row ---------------------------------------------------------------

    def _storable(self, result: Any) -> tuple[Any, dict[str, Any] | None]:
        if self.artifacts is None:
            return result, None
        data = dumps(result).encode()
        if len(data) <= self.config.inline_limit:
            return result, None
        return None, self.artifacts.put(data, "application/json")

    def _stored_result(self, entry: ledger.LedgerEntry) -> Any:
        if entry.result_artifact is None:
            return entry.result
        if self.artifacts is None:
            raise LedgerError("a stored tool result is an artifact but this runtime has no artifact store")
        return json.loads(self.artifacts.get(entry.result_artifact))
