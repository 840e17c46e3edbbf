"""`chat`: the built-in chat agent. Each run is a session that answers questions about Python's
standard library from the corpus, follow-ups included (`steplog chat`, `steplog say`).

Its reasoner is the worker's chat reasoner: the model of ``STEPLOG_LLM_*`` (replies stream live), else
the offline chat reasoner (:mod:`tasks.reasoning.chat`). Other chat agents are ``Agent(..., chat=True)``.
"""

from __future__ import annotations

from typing import Any

from tasks.agent import Agent, SessionInput
from tasks.workflow import InvalidInput

CORPUS = "stdlib"


def precheck(inp: SessionInput, engine: Any) -> None:
    from tools.corpus import corpus_exists

    if not corpus_exists(engine, CORPUS):
        raise InvalidInput(f"the chat agent answers from the {CORPUS!r} corpus, which is not built yet: "
                           "run `steplog corpus build`")


AGENT = Agent(
    "chat",
    "You answer questions about Python's standard library from its documentation, in a conversation. "
    "Search the corpus, then answer briefly and cite the documents you used as [doc_id].",
    tools=("search_corpus", "read_document", "search_memory"),
    reasoner=None,  # the worker's chat reasoner
    max_steps=8,
    chat=True,
    precheck=precheck,
)
WORKFLOW = AGENT.workflow
