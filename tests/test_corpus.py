"""The research corpus on a real Postgres: the standard library's docs built once per session,
searched with full-text search; users' files added; text helpers for the extractive reasoner."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine

from tools.corpus import (
    CorpusKindMismatch,
    DocumentNotFound,
    UnknownCorpus,
    UnsupportedFile,
    add_files,
    build_stdlib,
    corpora,
    corpus_exists,
    extract_sentences,
    get_document,
    get_passage,
    query_terms,
    search,
)
from tools.corpus.build import SYNOPSIS_BELOW, documents, harvest, member_summary, stdlib_modules
from tools.corpus.files import html_text, markdown_title
from tests.support.stdlib_questions import QUESTIONS
from tools.corpus.text import identifier_words, query_groups, split_passages, split_sentences

@pytest.fixture(scope="session")
def stdlib_db(stdlib_corpus, shared_corpus_url) -> Iterator[tuple[Engine, object]]:
    """The session's stdlib corpus database: (engine, build stats)."""
    stats = stdlib_corpus[1]
    engine = create_engine(shared_corpus_url)
    yield engine, stats
    engine.dispose()




# --- the built-in corpus ------------------------------------------------------------------------


def test_build_covers_the_standard_library(stdlib_db):
    engine, stats = stdlib_db
    assert stats.corpus == "stdlib" and corpora(engine) == ["stdlib"] and corpus_exists(engine, "stdlib")
    assert stats.modules > 250, stats
    assert stats.documents > 3000 and stats.passages >= stats.documents
    # A module that cannot be imported here is reported, not fatal; the common ones all made it.
    assert not {"csv", "json", "os", "re", "subprocess"} & set(stats.failed)
    print(f"\nstdlib corpus: {stats.documents} docs, {stats.passages} passages, {stats.modules} modules, "
          f"{stats.seconds:.1f} s, failed: {sorted(stats.failed)}")


def test_questions_find_the_module_that_answers_them(stdlib_db):
    engine, _ = stdlib_db
    misses = []
    for question, module in QUESTIONS:
        results = search(engine, question, limit=5)
        ids = [r["doc_id"] for r in results]
        if not any(r["source"] == module and (r["doc_id"] + ".").startswith(module + ".") for r in results):
            misses.append((question, module, ids))
    assert len(misses) <= 2, f"{len(misses)} of {len(QUESTIONS)} questions missed their module: {misses}"


def test_results_are_ranked_passages_with_their_ids(stdlib_db):
    engine, _ = stdlib_db
    results = search(engine, "run a subprocess with a timeout", limit=5)
    assert len(results) == 5
    first = results[0]
    assert set(first) >= {"doc_id", "title", "passage", "rank", "corpus", "ordinal"}
    assert first["corpus"] == "stdlib" and first["all_terms"]
    assert "timeout" in first["passage"].lower()
    # One passage per document by default; several when asked.
    assert len({r["doc_id"] for r in results}) == 5
    many = search(engine, "subprocess", limit=10, per_doc=3)
    assert len({r["doc_id"] for r in many}) < len(many) or all(
        get_document(engine, "stdlib", r["doc_id"])["passages"] == 1 for r in many
    )
    # Passages holding every term come before those holding some.
    flags = [r["all_terms"] for r in search(engine, "compress a file with gzip", limit=20)]
    assert flags == sorted(flags, reverse=True)
    assert search(engine, "how to do it", limit=5) == []  # stop words only


def test_documents_carry_their_qualified_names(stdlib_db):
    engine, _ = stdlib_db
    for doc_id, kind, source in [
        ("csv", "module", "csv"),
        ("csv.DictReader", "class", "csv"),
        ("subprocess.run", "function", "subprocess"),
        ("hashlib.sha256", "function", "hashlib"),
        ("argparse.ArgumentParser", "class", "argparse"),
        ("argparse.ArgumentParser.add_argument", "method", "argparse"),
        ("os.path.join", "function", "os.path"),
        ("asyncio.sleep", "function", "asyncio"),  # re-exported: documented under its shortest name
    ]:
        doc = get_document(engine, "stdlib", doc_id)
        assert (doc["doc_id"], doc["kind"], doc["source"]) == (doc_id, kind, source)
        assert (doc["body"] or doc["signature"]) and doc["passages"] >= 1
    with pytest.raises(DocumentNotFound, match="asyncio.tasks.sleep"):
        get_document(engine, "stdlib", "asyncio.tasks.sleep")
    run = get_passage(engine, "stdlib", "subprocess.run", 0)
    assert run["passage"].startswith("subprocess.run(") and "timeout=None" in run["passage"]
    with pytest.raises(DocumentNotFound, match="passage 999 of document 'subprocess.run'"):
        get_passage(engine, "stdlib", "subprocess.run", 999)
    # Private and side-effect modules stay out.
    for absent in ("_csv", "this", "antigravity", "tkinter", "test.support"):
        with pytest.raises(DocumentNotFound):
            get_document(engine, "stdlib", absent)


def test_rebuild_replaces_the_corpus_with_the_same_content(stdlib_db):
    engine, first = stdlib_db
    before = get_document(engine, "stdlib", "csv.DictReader")
    again = build_stdlib(engine)
    assert (again.documents, again.passages) == (first.documents, first.passages)
    assert (again.total_documents, again.total_passages) == (first.total_documents, first.total_passages)
    assert get_document(engine, "stdlib", "csv.DictReader") == before
    assert corpora(engine) == ["stdlib"]


def test_unknown_corpus_is_named(stdlib_db):
    engine, _ = stdlib_db
    with pytest.raises(UnknownCorpus, match="unknown corpus 'nope'.*stdlib"):
        search(engine, "csv", corpus="nope")
    with pytest.raises(UnknownCorpus, match="'nope'"):
        get_document(engine, "nope", "csv")
    with pytest.raises(UnknownCorpus, match="'nope'"):
        search(engine, "the", corpus="nope")
    assert not corpus_exists(engine, "nope")


def test_bad_search_arguments_are_refused(stdlib_db):
    engine, _ = stdlib_db
    with pytest.raises(ValueError, match="non-empty"):
        search(engine, "   ")
    with pytest.raises(ValueError, match="limit"):
        search(engine, "csv", limit=0)


def test_files_cannot_go_into_the_stdlib_corpus(stdlib_db, tmp_path):
    engine, stats = stdlib_db
    note = tmp_path / "note.md"
    note.write_text("# Note\n\nhello\n")
    with pytest.raises(CorpusKindMismatch, match="'stdlib'"):
        add_files(engine, [note], corpus="stdlib")
    with pytest.raises(DocumentNotFound):
        get_document(engine, "stdlib", "note.md")


# --- a user's own files ---------------------------------------------------------------------------


def _write_docs(root):
    (root / "guide").mkdir(parents=True)
    (root / "guide" / "deploy.md").write_text(
        textwrap.dedent(
            """\
            # Deploying the flux capacitor

            Before deploying, calibrate the flux capacitor to 1.21 gigawatts.

            ## Rollback

            To roll back a failed deployment, restore the previous plutonium snapshot.
            """
        )
    )
    (root / "faq.html").write_text(
        "<html><head><title>Quokka FAQ</title><style>.x { color: zebrafish }</style>"
        "<script>var secret = 'narwhal';</script></head>"
        "<body><h1>Questions</h1><p>Quokkas eat <b>leaves</b> &amp; grass.</p>"
        "<p>They live on Rottnest Island.</p></body></html>"
    )
    (root / "plain.txt").write_text("Wombats produce cube-shaped droppings.\n")
    (root / "image.png").write_bytes(b"\x89PNG")


def test_add_files_indexes_markdown_html_and_text(engine, tmp_path):
    _write_docs(tmp_path)
    stats = add_files(engine, [tmp_path], corpus="notes")
    assert (stats.corpus, stats.documents, stats.total_documents) == ("notes", 3, 3)
    assert sorted(corpora(engine)) == ["notes"]

    deploy = get_document(engine, "notes", "guide/deploy.md")
    assert deploy["title"] == "Deploying the flux capacitor" and deploy["kind"] == "file"
    hit = search(engine, "how to roll back a failed deployment", corpus="notes")[0]
    assert hit["doc_id"] == "guide/deploy.md" and "plutonium" in hit["passage"]
    assert hit["corpus"] == "notes"

    faq = get_document(engine, "notes", "faq.html")
    assert faq["title"] == "Quokka FAQ"
    assert "Quokkas eat leaves & grass." in faq["body"] and "<" not in faq["body"]
    assert [r["doc_id"] for r in search(engine, "what do quokkas eat", corpus="notes")] == ["faq.html"]
    assert search(engine, "narwhal", corpus="notes") == []  # script text is not prose
    assert search(engine, "zebrafish", corpus="notes") == []

    assert get_document(engine, "notes", "plain.txt")["title"] == "plain.txt"
    assert search(engine, "wombat droppings", corpus="notes")[0]["doc_id"] == "plain.txt"
    # The stdlib corpus was never built in this database.
    with pytest.raises(UnknownCorpus, match="'stdlib'.*notes"):
        search(engine, "csv")


def test_adding_a_file_again_replaces_its_document(engine, tmp_path):
    _write_docs(tmp_path)
    add_files(engine, [tmp_path / "plain.txt"], corpus="notes", root=tmp_path)
    (tmp_path / "plain.txt").write_text("Platypuses lay eggs.\n")
    stats = add_files(engine, [tmp_path / "plain.txt"], corpus="notes", root=tmp_path)
    assert (stats.documents, stats.total_documents) == (1, 1)
    assert search(engine, "wombat", corpus="notes") == []
    assert search(engine, "platypus eggs", corpus="notes")[0]["doc_id"] == "plain.txt"
    add_files(engine, [tmp_path / "guide" / "deploy.md"], corpus="notes", root=tmp_path)
    assert get_document(engine, "notes", "guide/deploy.md")["doc_id"] == "guide/deploy.md"


def test_unsupported_files_are_refused_before_anything_is_written(engine, tmp_path):
    _write_docs(tmp_path)
    with pytest.raises(UnsupportedFile, match=r"image\.png: cannot index \.png"):
        add_files(engine, [tmp_path / "plain.txt", tmp_path / "image.png"], corpus="notes")
    with pytest.raises(UnsupportedFile, match="missing.md: no such file"):
        add_files(engine, [tmp_path / "missing.md"], corpus="notes")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("café".encode("latin-1"))
    with pytest.raises(UnsupportedFile, match="latin.txt: not UTF-8"):
        add_files(engine, [latin], corpus="notes")
    assert not corpus_exists(engine, "notes")


# --- gathering in child processes -------------------------------------------------------------------


def test_a_crashing_or_hanging_module_costs_only_itself(tmp_path):
    (tmp_path / "crashes.py").write_text("import os\nos._exit(3)\n")
    (tmp_path / "raises.py").write_text("raise RuntimeError('broken at import')\n")
    (tmp_path / "exits.py").write_text("import sys\nsys.exit(0)\n")
    # Blocks the child's own alarm, so only the parent's deadline can end it.
    (tmp_path / "hangs.py").write_text(
        "import signal, time\nsignal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})\ntime.sleep(60)\n"
    )
    (tmp_path / "chatty.py").write_text('"""Chatty module."""\nprint("noise on stdout")\n\ndef hello():\n    """Say hello."""\n')
    modules = ["json", "crashes", "raises", "exits", "hangs", "chatty", "csv"]
    records, failed = harvest(modules, processes=1, module_seconds=2, search_path=[str(tmp_path)])
    assert set(failed) == {"crashes", "raises", "exits", "hangs"}
    assert "broken at import" in failed["raises"] and "no result after 2 s" in failed["hangs"]
    ids = {r["doc_id"] for r in records}
    assert {"json", "json.dumps", "csv", "csv.DictReader", "chatty", "chatty.hello"} <= ids


def test_a_module_without_a_docstring_is_described_by_its_members(stdlib_db):
    engine, _ = stdlib_db
    # pathlib has no module docstring: its document lists its classes' summary lines, so a question
    # about paths finds the module itself.
    pathlib = get_document(engine, "stdlib", "pathlib")
    assert "- Path: PurePath subclass that can make system calls." in pathlib["body"]
    assert "- PurePath: Base class for manipulating paths without I/O." in pathlib["body"]
    assert pathlib["body"].startswith("What the pathlib module provides:")
    assert any(r["doc_id"] == "enum" for r in search(engine, "create an enumeration", limit=8))
    # A module with a long docstring of its own keeps it alone.
    csv = get_document(engine, "stdlib", "csv")
    assert "What the csv module provides" not in csv["body"]


def test_synopsis_lists_members_after_a_short_docstring():
    def rec(doc_id, kind, body):
        return {"doc_id": doc_id, "kind": kind, "module": "box", "signature": None, "body": body, "key": f"k:{doc_id}"}

    records = [
        rec("box", "module", "Boxes."),
        rec("box.Crate", "class", "A wooden crate.\n\nHolds things."),
        rec("box.Crate.open", "method", "Open the crate."),
        rec("box.pack", "function", "Pack items\ninto a box. Then close it."),
        rec("box.Full", "exception", "Raised when the box is full."),
        rec("box.nothing", "function", ""),
        rec("long", "module", "x" * SYNOPSIS_BELOW),
        rec("long.thing", "function", "A thing."),
    ]
    docs = {d.doc_id: d for d in documents(records)}
    assert docs["box"].body == (
        "Boxes.\n\nWhat the box module provides:\n\n"
        "- Crate: A wooden crate.\n- pack: Pack items into a box.\n- Full: Raised when the box is full."
    )
    assert docs["long"].body == "x" * SYNOPSIS_BELOW
    assert member_summary("word " * 100).endswith(" ...") and len(member_summary("word " * 100)) < 170


def test_module_list_skips_private_tests_and_side_effects():
    mods = stdlib_modules()
    assert {"argparse", "csv", "json", "urllib.request", "xml.etree.ElementTree", "email.mime.text"} <= set(mods)
    for name in mods:
        parts = name.split(".")
        assert not any(p.startswith("_") for p in parts), name
        assert parts[0] not in {"this", "antigravity", "idlelib", "tkinter", "turtle", "lib2to3", "ensurepip", "test"}
        assert "tests" not in parts and "__main__" not in parts, name


# --- text helpers -------------------------------------------------------------------------------------


def test_split_passages_keeps_paragraphs_and_bounds_length():
    body = "\n\n".join(
        ["Short intro.", "Second short one.", "word " * 400, "A closing paragraph. " * 5]
    )
    passages = split_passages(body, target=300, limit=500)
    assert passages[0] == "Short intro.\n\nSecond short one."
    assert all(len(p) <= 500 for p in passages)
    assert " ".join(" ".join(passages).split()) == " ".join(body.split())
    assert split_passages("") == []
    with pytest.raises(ValueError, match="target"):
        split_passages("x", target=10, limit=5)


def test_identifier_words_split_names_for_the_title_index():
    vocab = {"arg": 50, "parse": 80, "date": 40, "time": 90, "url": 30, "open": 70}
    assert identifier_words("argparse.ArgumentParser", vocab) == [
        "argparse", "arg", "parse", "ArgumentParser", "argument", "parser"
    ]
    assert identifier_words("urllib.request.urlopen", vocab) == ["urllib", "request", "urlopen", "url", "open"]
    assert "date" in identifier_words("email.utils.parsedate_to_datetime", vocab)


def test_query_terms_drop_question_words_and_keep_versions():
    assert query_terms("How do I use Python to compute a SHA-256 hash?") == ["compute", "sha256", "hash"]
    assert query_groups("SHA-256")[0] == ["sha256", "sha-256"]
    assert query_terms("parse command-line options") == ["parse", "command", "line", "options"]


def test_extract_sentences_picks_the_answering_sentences():
    passage = (
        "Run command with arguments and return a CompletedProcess instance. "
        "The returned instance will have attributes args, returncode, stdout and stderr. "
        "If timeout is given, and the process takes too long, a TimeoutExpired exception will be raised. "
        "There is an optional argument \"input\", e.g. bytes, passed to the child."
    )
    picked = extract_sentences(passage, "what is raised if the timeout expires", limit=1)
    assert picked == [
        "If timeout is given, and the process takes too long, a TimeoutExpired exception will be raised."
    ]
    # In passage order, only sentences that match, e.g. abbreviations do not end a sentence.
    two = extract_sentences(passage, ["input", "returncode"], limit=5)
    assert two == [split_sentences(passage)[1], split_sentences(passage)[3]]
    assert extract_sentences(passage, "zebra") == []
    with pytest.raises(ValueError):
        extract_sentences(passage, "x", limit=0)


def test_html_and_markdown_titles():
    assert html_text("<h2>Intro</h2><p>a<br>b</p>") == ("Intro", "Intro\n\na\n\nb")
    assert markdown_title("Some text\n\nTitle\n=====\n\n# Later") == "Title"
    assert markdown_title("no heading here") == ""
