"""One error root: every exception class steplog defines descends from SteplogError, pickles whole
(errors cross Celery's process boundary), and none is named like a driver's or SQLAlchemy's class."""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil

import psycopg
import sqlalchemy.exc

from checkpoint.errors import RunNotFound, SteplogError
from tasks.errors import UnknownWorkflow
from tasks.reasoning.errors import LLMEndpointError
from tasks.timeout import StepTimeout
from tools.corpus.errors import UnknownCorpus
from tools.errors import ToolInputError, TransientToolError

PACKAGES = ("checkpoint", "tasks", "tools", "workers")
# Not errors but control flow: a step's time limit must get past a workflow's `except Exception`.
NOT_ERRORS = {StepTimeout}


def _steplog_exception_classes() -> list[type[BaseException]]:
    found = set()
    for package in PACKAGES:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            if info.name.endswith("__main__") or ".migrations" in info.name:
                continue  # __main__ modules run the CLI when imported
            module = importlib.import_module(info.name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if issubclass(cls, BaseException) and cls.__module__ == info.name:
                    found.add(cls)
    return sorted(found, key=lambda c: f"{c.__module__}.{c.__qualname__}")


def test_every_steplog_error_descends_from_the_root() -> None:
    classes = _steplog_exception_classes()
    assert len(classes) > 20
    strays = [
        f"{c.__module__}.{c.__qualname__}" for c in classes
        if not issubclass(c, SteplogError) and c not in NOT_ERRORS and not c.__name__.startswith("_")
    ]
    assert strays == []


def test_no_steplog_error_is_named_like_a_driver_or_sqlalchemy_error() -> None:
    theirs = {name for module in (sqlalchemy.exc, psycopg, psycopg.errors) for name in dir(module)}
    clashes = [f"{c.__module__}.{c.__name__}" for c in _steplog_exception_classes() if c.__name__ in theirs]
    assert clashes == []


def test_errors_pickle_with_their_message_and_attributes() -> None:
    for exc in (
        RunNotFound("abc"),
        UnknownWorkflow("nope", ["countdown", "research"]),
        ToolInputError("query", "must not be empty"),
        TransientToolError("timed out", maybe_applied=False, status=504),
        LLMEndpointError("bad key", status=401, retryable=False),
        UnknownCorpus("missing", ["stdlib"]),
    ):
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc) and vars(back) == vars(exc)


def test_exit_codes_say_bad_input_or_failure() -> None:
    assert RunNotFound("x").exit_code == 1
    assert UnknownWorkflow("x", []).exit_code == 2
    assert ToolInputError("f", "bad").exit_code == 2
