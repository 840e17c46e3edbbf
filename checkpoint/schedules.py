"""Schedules: cron expressions stored in Postgres and fired by every worker's sweeper.

There is no beat process and no leader. A sweeper takes due schedules with ``FOR UPDATE SKIP LOCKED``
and, for each tick it fires, inserts the tick's row into ``schedule_fires`` (primary key: schedule,
tick) and creates the run in the same transaction: however many workers race, a tick makes one run.
After an outage the schedule's ``catch_up`` decides how many of the missed ticks run: ``none`` (only a
tick due within the last :data:`GRACE_SECONDS`), ``one`` (the latest), or ``all``. With ``overlap``
``skip``, a tick whose schedule still has a run going is recorded as skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from sqlalchemy import Engine

from checkpoint import runs
from checkpoint.errors import BadInput, SteplogError
from checkpoint.jsonutil import dumps
from checkpoint.queries import EVENT_LOG, load
from checkpoint.steps import Dispatch
from checkpoint.tables import SCHEDULE_CATCH_UP, SCHEDULE_OVERLAP

Q = load(EVENT_LOG)

#: With catch_up "none", a tick this late (seconds) still fires; older ones are skipped.
GRACE_SECONDS = 30.0
#: Most ticks one sweep fires for one schedule (catch_up "all" after a long outage goes on next sweep).
MAX_TICKS = 1000


class ScheduleExists(SteplogError):
    """A schedule of this name exists already (remove it first)."""


class UnknownSchedule(SteplogError, LookupError):
    """No schedule has this name."""


@dataclass(frozen=True)
class Cron:
    """A cron expression (5 fields, or 6 with seconds last) in a time zone."""

    expr: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise BadInput(f"--timezone: unknown time zone {self.timezone!r} (e.g. UTC, Europe/Berlin)") from None
        if not croniter.is_valid(self.expr):
            raise BadInput(f"--cron: {self.expr!r} is not a cron expression (e.g. '*/5 * * * *')")

    def after(self, moment: datetime) -> datetime:
        """The first tick strictly after ``moment``."""
        return croniter(self.expr, moment.astimezone(ZoneInfo(self.timezone))).get_next(datetime)

    def ticks(self, start: datetime, end: datetime, limit: int = MAX_TICKS) -> list[datetime]:
        """Ticks from ``start`` (included) up to ``end`` (included), at most ``limit`` of them."""
        found: list[datetime] = []
        tick = self.after(start - timedelta(microseconds=1))
        while tick <= end and len(found) < limit:
            found.append(tick)
            tick = self.after(tick)
        return found


def add(engine: Engine, name: str, cron: Cron, workflow: str, input: dict[str, Any], state: dict[str, Any], *,
        overlap: str = "skip", catch_up: str = "one", created_by: str) -> datetime:
    """Store a schedule; returns its first tick. The caller validated ``input`` and built ``state``."""
    if overlap not in SCHEDULE_OVERLAP:
        raise BadInput(f"--overlap must be one of {', '.join(SCHEDULE_OVERLAP)}; got {overlap!r}")
    if catch_up not in SCHEDULE_CATCH_UP:
        raise BadInput(f"--catch-up must be one of {', '.join(SCHEDULE_CATCH_UP)}; got {catch_up!r}")
    if not name or len(name) > 200:
        raise BadInput(f"a schedule name must be 1 to 200 characters, got {name!r}")
    with engine.begin() as conn:
        now = conn.exec_driver_sql("SELECT now()").scalar_one()
        first = cron.after(now)
        added = conn.execute(Q["add_schedule"], dict(
            name=name, cron=cron.expr, timezone=cron.timezone, workflow=workflow, input=dumps(input),
            state=dumps(state), overlap=overlap, catch_up=catch_up, next_fire_at=first, created_by=created_by,
        )).one_or_none()
    if added is None:
        raise ScheduleExists(f"a schedule named {name!r} exists already: `steplog schedule remove {name}` first")
    return first


def listing(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(Q["list_schedules"])]


def remove(engine: Engine, name: str) -> None:
    with engine.begin() as conn:
        if conn.execute(Q["remove_schedule"], dict(name=name)).one_or_none() is None:
            raise UnknownSchedule(f"no schedule named {name!r}")


def fire_due(engine: Engine, *, worker: str) -> list[Dispatch]:
    """Fire every due tick of every due schedule not being fired elsewhere; the first steps to publish."""
    dispatches: list[Dispatch] = []
    with engine.begin() as conn:
        for s in conn.execute(Q["due_schedules"]).all():
            cron = Cron(s.cron, s.timezone)
            due = cron.ticks(s.next_fire_at, s.now)
            if s.catch_up == "one":
                due = due[-1:]
            elif s.catch_up == "none":
                due = [t for t in due[-1:] if (s.now - t).total_seconds() <= GRACE_SECONDS]
            for tick in due:
                if conn.execute(Q["claim_tick"], dict(schedule=s.name, tick=tick)).one_or_none() is None:
                    continue  # fired already (an earlier sweep whose advance was lost)
                if s.overlap == "skip" and conn.execute(Q["schedule_busy"], dict(schedule=s.name)).scalar_one():
                    conn.execute(Q["record_fire"], dict(schedule=s.name, tick=tick, run_id=None, outcome="skipped"))
                    continue
                run_id = runs.create_in(conn, s.workflow, s.input, s.state, submitted_by=worker,
                                        extra={"schedule": s.name, "tick": tick.isoformat()})
                conn.execute(Q["record_fire"], dict(schedule=s.name, tick=tick, run_id=run_id, outcome="started"))
                dispatches.append(Dispatch(run_id, runs.FIRST_STEP, s.workflow))
            last = due[-1] if len(due) == MAX_TICKS else s.now
            conn.execute(Q["advance_schedule"], dict(name=s.name, next_fire_at=cron.after(last)))
    return dispatches
