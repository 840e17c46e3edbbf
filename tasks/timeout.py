"""A step's own time limit, enforced inside the process that runs it.

SIGALRM interrupts Python code and blocking calls in the main thread (solo and prefork pools run
tasks there). Elsewhere the lease deadline is the backstop: a step that overruns it is taken over.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class StepTimeout(BaseException):
    """The step overran its time limit. A BaseException so a workflow's `except Exception` cannot swallow it."""


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _expire(signum, frame):
        raise StepTimeout(f"the step overran its time limit of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
