"""The offline research reasoner on the real standard-library corpus, driven in-process.

A tiny driver plays the research workflow: it asks the reasoner for a decision, runs each tool call
through the real tool runtime (ledger, Postgres, the corpus), turns the outcome into an
Observation, counts two steps per tool call (the tool step and the next reasoning step) and one for
the report, and keeps the saved notes the way the workflow's context shows them.
"""

from __future__ import annotations

import re
import statistics
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine

from tasks.reasoning.base import FinalReport, Observation, ResearchContext, ToolCall
from tasks.reasoning.citations import PassageRef, parse_citation
from tasks.reasoning.extract import GAP, Extract, answer_sentences, name_terms, summary_line, topic_terms
from tasks.reasoning.offline import OfflineReasoner
from tasks.reasoning.report import rank_modules
from tasks.reasoning.subqueries import subqueries
from tests.support.stdlib_questions import QUESTIONS
from tests.support.toolsupport import make_run
from tools.corpus import get_document, get_passage
from tools.registry import builtin_registry
from tools.runtime import ToolRuntime

@pytest.fixture(scope="session")
def corpus_engine(shared_corpus_url) -> Iterator[Engine]:
    """The session's stdlib corpus database."""
    engine = create_engine(shared_corpus_url)
    yield engine
    engine.dispose()


class Driver:
    """Runs one research question to its report, the way the workflow would (in one process)."""

    def __init__(self, engine: Engine, reasoner: OfflineReasoner | None = None, *, window: int | None = None):
        self.engine = engine
        self.reasoner = reasoner or OfflineReasoner()
        self.registry = builtin_registry()
        self.window = window  # keep only the most recent observations, as a bounded context does

    def run(self, question: str, *, max_steps: int = 40) -> tuple[FinalReport, int, list[ToolCall]]:
        run_id = make_run(self.engine, f"run-{uuid.uuid4().hex[:10]}")
        observations: list[Observation] = []
        notes: list[dict] = []
        calls: list[ToolCall] = []
        steps = 0
        while True:
            shown = observations[-self.window :] if self.window else observations
            context = ResearchContext(run_id=run_id, question=question, corpus="stdlib", max_steps=max_steps,
                                      steps_used=steps, observations=list(shown), notes=[dict(n) for n in notes])
            decision = self.reasoner.decide(context)
            steps += 1
            assert steps <= max_steps, f"reasoning step {steps} is past the budget of {max_steps}"
            if isinstance(decision.action, FinalReport):
                return decision.action, steps, calls
            batch = decision.action if isinstance(decision.action, tuple) else (decision.action,)
            if len(batch) > 1 and max_steps - steps < 3:
                batch = batch[:1]  # as the agent loop: no room for a fan-out's two steps
            for i, call in enumerate(batch):  # several reads at once: observed in order, as the join does
                calls.append(call)
                runtime = ToolRuntime(self.engine, self.registry, run_id=run_id, seq=steps * 100 + i)
                outcome = runtime.call(call.tool, call.args)
                with self.engine.begin() as conn:
                    for record in runtime.records():
                        record(conn)
                error = None if outcome.ok else outcome.error["message"]
                observations.append(Observation(call, outcome.ok, outcome.result, error))
                if call.tool == "save_note" and outcome.ok:
                    notes.append({"text": call.args["text"], "citations": list(call.args["citations"])})
            steps += 1 if len(batch) == 1 else 2 * len(batch) - 1  # a fan-out is charged as calls one by one


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def assert_citations_exist(engine: Engine, report: FinalReport) -> None:
    """Every citation is a passage of the corpus holding, verbatim, each run of the quoted sentences."""
    for c in report.citations:
        stored = get_passage(engine, c["corpus"], c["doc_id"], c["ordinal"])
        for piece in c["passage"].split(GAP):
            assert piece and _flat(piece) in _flat(stored["passage"]), (c["doc_id"], c["ordinal"], piece)
        assert f"[{c['doc_id']}]" in report.markdown
        assert c["passage"] in report.markdown  # the Sources section quotes it


def _cites(report: FinalReport, module: str) -> bool:
    return any(c["doc_id"] == module or c["doc_id"].startswith(module + ".") for c in report.citations)


def _best_module(report: FinalReport) -> str | None:
    m = re.search(r"The `([^`]+)` module answers this best", report.markdown)
    return m.group(1) if m else None


# --- the research loop --------------------------------------------------------------------------


def test_reports_cite_the_module_that_answers_the_question(corpus_engine):
    driver = Driver(corpus_engine)
    missed, wrong_best, steps = [], [], []
    for question, module in QUESTIONS:
        report, used, calls = driver.run(question, max_steps=40)
        steps.append(used)
        assert not report.truncated, (question, used)
        assert report.citations, question
        assert_citations_exist(corpus_engine, report)
        # It searched, read and noted: the report is built from what the tools returned.
        assert {c.tool for c in calls} == {"search_corpus", "read_document", "save_note"}
        if not _cites(report, module):
            missed.append((question, module, [c["doc_id"] for c in report.citations]))
        if _best_module(report) != module:
            wrong_best.append((question, module, _best_module(report)))
        # The module named best is the one its first citation belongs to.
        assert report.citations[0]["module"] == _best_module(report)
    print(f"\nsteps per question: {steps}, median {statistics.median(steps)}")
    assert len(missed) <= 2, f"{len(missed)} of {len(QUESTIONS)} reports do not cite their module: {missed}"
    assert len(wrong_best) <= 2, f"{len(wrong_best)} reports name another module best: {wrong_best}"


# New users' phrasings (none of them the ranking was tuned on but the first, the issue's own example):
# the module named best is the one whose name and summary line say it is about the question, not
# the one with a loosely related quote holding more of its words.
LEADS = [
    ("How do I parse command line arguments?", ("argparse",)),  # led with `cmd` before
    ("How do I match file names with wildcards?", ("glob", "fnmatch")),
    ("How do I start a simple HTTP server?", ("http.server",)),
    ("How do I calculate the number of days between two dates?", ("datetime",)),
]


@pytest.mark.parametrize("question,accepted", LEADS, ids=[q for q, _ in LEADS])
def test_the_lead_source_is_the_module_about_the_question(corpus_engine, question, accepted):
    report, _, _ = Driver(corpus_engine).run(question)
    assert _best_module(report) in accepted, report.markdown.split("## Findings")[0]
    assert report.citations[0]["module"] == _best_module(report)


def _extract(doc_id: str, module: str, covered: tuple[str, ...]) -> Extract:
    return Extract(PassageRef("stdlib", doc_id, 0), "a quote", covered, module)


def test_a_module_named_for_the_question_outranks_a_quote_holding_one_more_word():
    loose = _extract("cmd", "cmd", ("command", "line", "arguments"))
    named = _extract("argparse", "argparse", ("command", "line"))
    ranked = rank_modules([loose, named], {"cmd": 2.0, "argparse": 1.0}, {"argparse": 6, "cmd": 2})
    assert [ev.module for ev in ranked] == ["argparse", "cmd"]
    # Without name and summary matches the quote holding most of the question still leads.
    assert [ev.module for ev in rank_modules([loose, named], {"cmd": 2.0, "argparse": 1.0})] == ["cmd", "argparse"]
    # Two more words held by a quote outweigh one more found in a name.
    wide = _extract("cmd", "cmd", ("parse", "command", "line", "arguments"))
    assert rank_modules([wide, named], {}, {"argparse": 2, "cmd": 0})[0].module == "cmd"


def test_topic_terms_are_found_in_a_documents_name_and_summary_line():
    terms = ["parse", "command", "line", "arguments"]
    argparse_doc = {"doc_id": "argparse", "passages": [{"text": "Command-line parsing library\n\nThis module ..."}]}
    assert topic_terms("argparse", argparse_doc, terms) == ("parse", "command", "line")
    assert topic_terms("argparse", None, terms) == ("parse",)  # not read: its name alone
    # A run-together name holds a word's stem; camel case and underscores split a name into words.
    assert name_terms("threading", ["threads"]) == ("threads",)
    assert name_terms("functools.lru_cache", ["cache", "results"]) == ("cache",)
    assert name_terms("csv.DictReader", ["read", "dict"]) == ("read", "dict")
    assert name_terms("os", ["ostensibly"]) == ()
    # The summary line comes after the call signature a member's first passage starts with.
    member = {"doc_id": "datetime.timedelta",
              "passages": [{"text": "datetime.timedelta(days=0)\n\nDifference between two datetime values.\n\nMore."}]}
    assert summary_line(member) == "Difference between two datetime values."
    assert summary_line({"doc_id": "x", "passages": []}) == ""


def test_report_is_markdown_with_a_sources_section(corpus_engine):
    report, _, _ = Driver(corpus_engine).run("how to read a CSV file")
    lines = report.markdown.splitlines()
    assert lines[0] == "# how to read a CSV file"
    assert "## Sources" in lines
    sources = lines[lines.index("## Sources") + 2 :]
    assert len([s for s in sources if s.strip()]) == len(report.citations)
    first = report.citations[0]
    assert sources[0].startswith(f"1. [{first['doc_id']}] corpus `stdlib`, passage {first['ordinal']}:")
    # Every quote answers part of the question: it holds one of its content words.
    for c in report.citations:
        assert re.search(r"csv|read|file", c["passage"], re.I), c


def test_small_budget_ends_with_a_truncated_report(corpus_engine):
    report, used, calls = Driver(corpus_engine).run("how to run a subprocess with a timeout", max_steps=6)
    assert report.truncated and used <= 6
    assert "Stopped early" in report.markdown
    # What it read before the budget ran out is in the report, cited correctly.
    assert [c.tool for c in calls] == ["search_corpus", "read_document"]
    assert _cites(report, "subprocess")
    assert_citations_exist(corpus_engine, report)
    # No room for any tool call: a report straight away, with nothing to cite.
    report, used, calls = Driver(corpus_engine).run("how to run a subprocess with a timeout", max_steps=3)
    assert (report.truncated, used, calls, report.citations) == (True, 1, [], [])
    assert "No passage" in report.markdown


def test_a_module_several_subqueries_find_is_read_after_the_plan(corpus_engine):
    # "pack integers into bytes": struct is only 3rd to 6th in each sub-query's results, so no
    # sub-query takes it; found by most of them, it is read and cited once the plan is done, and the
    # report still finishes within the budget, not cut short.
    report, used, calls = Driver(corpus_engine).run("How do I pack integers into bytes?")
    reads = [c.args["doc_id"] for c in calls if c.tool == "read_document"]
    assert any(d == "struct" or d.startswith("struct.") for d in reads), reads
    assert "several sub-queries" in [c for c in calls if c.tool == "read_document"][-1].thought
    assert _cites(report, "struct") and not report.truncated and used <= 40
    assert_citations_exist(corpus_engine, report)


def test_same_question_gives_the_same_report(corpus_engine):
    driver = Driver(corpus_engine)
    first, steps1, calls1 = driver.run("how to compress a file with gzip")
    second, steps2, calls2 = driver.run("how to compress a file with gzip")
    assert first == second and steps1 == steps2 and calls1 == calls2


def test_same_context_gives_the_same_decision(corpus_engine):
    reasoner = OfflineReasoner()
    search = ToolCall("search_corpus", {"query": "how to read a CSV file", "corpus": "stdlib", "limit": 8})
    runtime = ToolRuntime(corpus_engine, builtin_registry(), run_id=make_run(corpus_engine, "run-same"), seq=1)
    outcome = runtime.call(search.tool, search.args)
    context = ResearchContext(run_id="run-same", question="how to read a CSV file", corpus="stdlib",
                              max_steps=40, steps_used=2, observations=[Observation(search, True, outcome.result)],
                              notes=[])
    decisions = [reasoner.decide(context) for _ in range(3)]
    assert decisions[0] == decisions[1] == decisions[2]
    # The documents the question still needs are read at once (a fan-out), the best-ranked first.
    reads = decisions[0].action
    assert isinstance(reads, tuple) and 1 < len(reads) <= 3 and {c.tool for c in reads} == {"read_document"}
    assert reads[0] == ToolCall(
        "read_document", {"corpus": "stdlib", "doc_id": "csv", "max_passages": 20}, thought=reads[0].thought
    )
    assert len({c.args["doc_id"] for c in reads}) == len(reads)


def test_a_bounded_context_still_finishes_within_the_budget(corpus_engine):
    # Old observations folded away: the notes and the latest results are enough to go on.
    report, used, _ = Driver(corpus_engine, window=6).run("how to compute a SHA-256 hash", max_steps=40)
    assert used <= 40 and _cites(report, "hashlib")
    assert_citations_exist(corpus_engine, report)


def test_a_refused_decision_ends_with_the_notes_so_far(corpus_engine):
    note = {"text": "Temporary files.", "citations": ["stdlib:tempfile#0"]}
    context = ResearchContext(run_id="r", question="how to create a temporary directory", corpus="stdlib",
                              max_steps=40, steps_used=10, observations=[], notes=[note], corrections=1,
                              last_error="unknown tool 'read_document'")
    report = OfflineReasoner().decide(context).action
    assert isinstance(report, FinalReport) and report.truncated
    assert "unknown tool 'read_document'" in report.markdown
    assert [(c["doc_id"], c["ordinal"]) for c in report.citations] == [("tempfile", 0)]
    assert_citations_exist(corpus_engine, report)


def test_a_question_without_content_words_gets_a_report_not_a_search():
    context = ResearchContext(run_id="r", question="how do I do it?", corpus="stdlib", max_steps=40,
                              steps_used=0, observations=[], notes=[])
    report = OfflineReasoner().decide(context).action
    assert isinstance(report, FinalReport) and report.citations == [] and not report.truncated
    with pytest.raises(ValueError, match="no words to search for"):
        subqueries("how do I do it?")


# --- its parts ----------------------------------------------------------------------------------


def test_subqueries_are_the_question_its_phrases_and_its_words():
    assert subqueries("how to run a subprocess with a timeout") == [
        "how to run a subprocess with a timeout", "run a subprocess", "timeout", "run",
    ]
    assert subqueries("how to compute a SHA-256 hash") == ["how to compute a SHA-256 hash", "compute", "SHA-256", "hash"]
    assert subqueries("how to make an HTTP request", limit=2) == ["how to make an HTTP request", "HTTP"]
    with pytest.raises(ValueError, match="limit"):
        subqueries("csv", limit=0)


def test_citations_round_trip_in_both_shapes():
    ref = PassageRef("stdlib", "csv.DictReader", 2)
    assert parse_citation(ref.as_string()) == ref == parse_citation(ref.as_dict())
    # File ids may hold ':' and '#'; a known corpus name may hold ':'.
    assert parse_citation("my:notes:a#b.md#3", "my:notes") == PassageRef("my:notes", "a#b.md", 3)
    for junk in ["https://example.com/page#1", "csv.DictReader", "stdlib:csv#x", {"doc_id": "csv"}, 7]:
        assert parse_citation(junk) is None, junk


def test_answer_sentences_cover_the_question_from_one_passage():
    passage = (
        "Run command with arguments. Wait for the command to complete.\n\n"
        "If the timeout expires, the child process will be killed and waited for. "
        "The other arguments are the same as for the Popen constructor."
    )
    chosen = answer_sentences(passage, ["run", "command", "timeout"])
    assert chosen == ["Run command with arguments.", "If the timeout expires, the child process will be killed and waited for."]
    assert answer_sentences(passage, ["gzip"]) == []


# --- the read_document tool ---------------------------------------------------------------------


def test_read_document_returns_the_passages_with_their_ordinals(corpus_engine):
    runtime = ToolRuntime(corpus_engine, builtin_registry(), run_id=make_run(corpus_engine, f"run-{uuid.uuid4().hex[:8]}"), seq=1)
    out = runtime.call("read_document", {"corpus": "stdlib", "doc_id": "subprocess"})
    assert out.ok, out.error
    doc = get_document(corpus_engine, "stdlib", "subprocess")
    result = out.result
    assert (result["doc_id"], result["source"], result["kind"]) == ("subprocess", "subprocess", "module")
    assert result["total_passages"] == doc["passages"] > 1
    assert [p["ordinal"] for p in result["passages"]] == list(range(min(20, doc["passages"])))
    for p in result["passages"]:
        assert p["text"] == get_passage(corpus_engine, "stdlib", "subprocess", p["ordinal"])["passage"]
    short = runtime.call("read_document", {"corpus": "stdlib", "doc_id": "subprocess", "max_passages": 1})
    assert [p["ordinal"] for p in short.result["passages"]] == [0] and short.result["truncated"]


@pytest.mark.parametrize(
    ("args", "field", "says"),
    [
        ({"corpus": "stdlib", "doc_id": "no.such.doc"}, "doc_id", "no.such.doc"),
        ({"corpus": "no-such-corpus", "doc_id": "csv"}, "corpus", "no-such-corpus"),
        ({"corpus": "stdlib", "doc_id": "csv", "max_passages": 0}, "max_passages", "greater than or equal to 1"),
        ({"corpus": "stdlib"}, "doc_id", "required"),
    ],
)
def test_read_document_names_what_is_wrong(corpus_engine, args, field, says):
    runtime = ToolRuntime(corpus_engine, builtin_registry(), run_id=make_run(corpus_engine, f"run-{uuid.uuid4().hex[:8]}"), seq=1)
    out = runtime.call("read_document", args)
    assert not out.ok and out.error["type"] == "ToolInputError"
    assert out.error["field"] == field and says in out.error["message"]


@pytest.mark.parametrize("question", [
    "how to read a CSV file", "how to compute a SHA-256 hash", "how to run a subprocess with a timeout",
    "how do I parse command-line options",
])
@pytest.mark.parametrize("max_steps", [40, 12])
def test_reading_documents_at_once_gives_the_report_of_reading_them_one_by_one(corpus_engine, monkeypatch, question,
                                                                               max_steps):
    from tasks.reasoning import offline

    together, used, calls = Driver(corpus_engine, window=6).run(question, max_steps=max_steps)
    monkeypatch.setattr(offline, "_unread", lambda *a, **k: [])  # one read per decision
    one_by_one, used_alone, calls_alone = Driver(corpus_engine, window=6).run(question, max_steps=max_steps)
    assert together == one_by_one and used == used_alone
    assert sorted(c.args.get("doc_id", "") for c in calls) == sorted(c.args.get("doc_id", "") for c in calls_alone)
