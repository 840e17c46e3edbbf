"""Gathering the standard library's documentation: which modules, read in guarded child processes.

Each child (``tools/corpus/harvest.py``) runs in an isolated interpreter (``-I -S``) and imports
its share of the modules one after another. A module that crashes, exits or hangs the child loses
only itself: the parent notes it as failed and starts a new child for the rest of the list.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pkgutil
import re
import selectors
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from tools.corpus.store import Document
from tools.corpus.text import identifier_words, vocabulary

HARVESTER = Path(__file__).with_name("harvest.py")

# A child silent for this long (no module finished) is killed and its current module marked failed.
MODULE_SECONDS = 30.0

# Not documented: GUIs, demos, import-time side effects, platform aliases, installers, test suites and
# the modules Python has deprecated (a research answer should not recommend them).
SKIP_TOP = frozenset(
    """antigravity this idlelib tkinter turtle turtledemo lib2to3 ensurepip pydoc_data
    msilib winreg winsound msvcrt nt ntpath posix genericpath opcode sre_compile sre_constants sre_parse
    distutils imp asynchat asyncore smtpd
    aifc audioop cgi cgitb chunk crypt imghdr mailcap nis nntplib ossaudiodev pipes sndhdr spwd
    sunau telnetlib uu xdrlib xxlimited xxlimited_35 xxsubtype test""".split()
)
SKIP_PARTS = frozenset({"test", "tests", "idle_test", "__main__"})
# Packages whose submodules are implementation detail (120 codecs, one per encoding).
NO_SUBMODULES = frozenset({"encodings"})
# posixpath is what ``os.path`` is on this platform; it is documented under the name people use.
ALIASES = {"posixpath": "os.path"}

# Multiplies a passage's text rank. A "which module does X" question is best answered by a module's
# overview, then by a class; each level of nesting makes a name less likely to be the answer.
KIND_BOOST = {
    "module": 2.5,
    "class": 1.3,
    "function": 1.1,
    "exception": 0.7,
    "method": 0.8,
    "property": 0.6,
}


# A module whose own docstring is shorter than this (pathlib, enum and dataclasses have none; asyncio's
# and queue's are one line) says too little for a question about its subject to find it: its document
# also gets a synopsis, the summary line of each of its public classes and functions.
SYNOPSIS_BELOW = 200
# Most members a synopsis lists (classes and functions before exceptions, then by name).
SYNOPSIS_MEMBERS = 40
SYNOPSIS_KINDS = ("class", "function", "exception")
# A member's summary line is cut at its first sentence end past this many characters, or here.
SUMMARY_CHARS = 160


def boost(kind: str, doc_id: str) -> float:
    """The rank multiplier of a standard-library document (see ``KIND_BOOST``)."""
    depth = doc_id.count(".")
    return KIND_BOOST.get(kind, 1.0) / (1.0 + 0.15 * depth)


def skipped(name: str) -> bool:
    """Whether module ``name`` stays out of the corpus (private, test, GUI, side effects, deprecated)."""
    parts = name.split(".")
    return (
        parts[0] in SKIP_TOP
        or any(p.startswith("_") or p in SKIP_PARTS for p in parts)
        or (len(parts) > 1 and parts[0] in NO_SUBMODULES)
    )


def _submodules(name: str, locations: Iterable[str]) -> list[str]:
    found = []
    for info in pkgutil.iter_modules(list(locations), prefix=name + "."):
        if skipped(info.name):
            continue
        found.append(info.name)
        if info.ispkg:
            leaf = info.name.rsplit(".", 1)[1]
            sub = [os.path.join(loc, leaf) for loc in locations if os.path.isdir(os.path.join(loc, leaf))]
            found.extend(_submodules(info.name, sub))
    return found


def stdlib_modules() -> list[str]:
    """The public standard-library modules to document, packages' submodules included, sorted.

    Found on disk without importing anything (``find_spec`` of a top-level name does not import it).
    """
    names = []
    for top in sorted(sys.stdlib_module_names):
        if skipped(top):
            continue
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            continue
        if spec is None:
            continue
        names.append(top)
        if spec.submodule_search_locations and top not in NO_SUBMODULES:
            names.extend(_submodules(top, spec.submodule_search_locations))
    return sorted(set(names))


def _run_child(
    modules: list[str],
    docs: list[dict],
    failed: dict[str, str],
    lock: threading.Lock,
    options: list[str],
    module_seconds: float,
) -> None:
    """Harvest ``modules`` in child processes, restarting after a crash or hang, until all are done."""
    remaining = list(modules)
    while remaining:
        args = [f"{m}={ALIASES[m]}" if m in ALIASES else m for m in remaining]
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(HARVESTER), *options, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,
        )
        finished: set[str] = set()
        current: str | None = None
        pending: list[dict] = []
        buffer = b""
        reason = "the interpreter exited while importing it"
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + module_seconds
            while True:
                if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                    reason = f"no result after {module_seconds:.0f} s"
                    proc.kill()
                    break
                chunk = os.read(proc.stdout.fileno(), 1 << 16)
                if not chunk:
                    break
                *lines, buffer = (buffer + chunk).split(b"\n")
                for line in lines:
                    record = json.loads(line)
                    if "doc" in record:
                        pending.append(record["doc"])
                    elif "start" in record:
                        current, pending = record["start"], []
                    elif "end" in record:
                        with lock:
                            docs.extend(pending)
                        finished.add(record["end"])
                        current, pending = None, []
                        deadline = time.monotonic() + module_seconds
                    elif "failed" in record:
                        with lock:
                            failed[record["failed"]] = record["error"]
                        finished.add(record["failed"])
                        current, pending = None, []
                        deadline = time.monotonic() + module_seconds
        proc.stdout.close()
        code = proc.wait()
        if current is None and not finished and remaining:
            current = remaining[0]  # died before starting anything: blame the first, so we progress
        if current is not None:
            with lock:
                failed[current] = f"{reason} (exit status {code})"
            finished.add(current)
        remaining = [m for m in remaining if m not in finished]


def harvest(
    modules: list[str],
    *,
    processes: int | None = None,
    module_seconds: float = MODULE_SECONDS,
    search_path: Sequence[str] = (),
) -> tuple[list[dict], dict[str, str]]:
    """Raw documentation records of ``modules`` and ``{module: error}`` for those that failed.

    A module whose import takes longer than ``module_seconds``, raises, exits or kills its
    interpreter is reported in the errors and costs nothing else. ``search_path`` adds module
    directories to the children's otherwise standard-library-only ``sys.path``.
    """
    if module_seconds <= 0:
        raise ValueError(f"module_seconds must be positive, got {module_seconds}")
    # The child's own alarm fires first; the parent's kill is the backstop for a hang the alarm misses.
    options = [f"--timeout={max(1, int(module_seconds * 0.8))}", *(f"--path={p}" for p in search_path)]
    n = max(1, min(processes or os.cpu_count() or 1, 4, len(modules) or 1))
    docs: list[dict] = []
    failed: dict[str, str] = {}
    lock = threading.Lock()
    shares = [modules[i::n] for i in range(n)]
    threads = [
        threading.Thread(target=_run_child, args=(s, docs, failed, lock, options, module_seconds), daemon=True)
        for s in shares
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return docs, failed


def _preference(record: dict) -> tuple:
    # Of several names for one object, the shortest public one: asyncio.sleep, not asyncio.tasks.sleep.
    doc_id = record["doc_id"]
    own = record["key"].split(":", 1)[0] == record["module"]
    return (doc_id.count("."), not own, len(doc_id), doc_id)


def member_summary(body: str) -> str:
    """The summary of a docstring: its first paragraph, whitespace collapsed, cut at its first sentence
    end (or at ``SUMMARY_CHARS``); "" for an empty docstring."""
    first = " ".join(re.split(r"\n\s*\n", body.strip(), maxsplit=1)[0].split())
    end = re.search(r"[.!?](?=\s)", first)
    if end:
        first = first[: end.start() + 1]
    if len(first) > SUMMARY_CHARS:
        cut = first.rfind(" ", 0, SUMMARY_CHARS)
        first = first[: cut if cut > 0 else SUMMARY_CHARS] + " ..."
    return first


def synopsis(module: str, members: list[dict]) -> str:
    """The synopsis of a module's document: a bullet per public class or function (exceptions after
    them) with its summary line, ``""`` when none has one. ``members`` are the module's own records."""
    rows = []
    for r in sorted(members, key=lambda r: (r["kind"] == "exception", r["doc_id"].lower())):
        summary = member_summary(r["body"])
        if summary:
            rows.append(f"- {r['doc_id'].rsplit('.', 1)[1]}: {summary}")
    if not rows:
        return ""
    return f"What the {module} module provides:\n\n" + "\n".join(rows[:SYNOPSIS_MEMBERS])


def _with_synopses(unique: dict[str, dict]) -> dict[str, dict]:
    """``unique`` with each short-docstring module's body followed by its :func:`synopsis`."""
    members: dict[str, list[dict]] = {}
    for r in unique.values():
        parent = r["doc_id"].rsplit(".", 1)[0]
        if r["kind"] in SYNOPSIS_KINDS and parent == r["module"] and "." in r["doc_id"]:
            members.setdefault(parent, []).append(r)
    out = {}
    for doc_id, r in unique.items():
        if r["kind"] == "module" and len(r["body"].strip()) < SYNOPSIS_BELOW:
            extra = synopsis(doc_id, members.get(doc_id, []))
            if extra:
                r = {**r, "body": f"{r['body'].strip()}\n\n{extra}" if r["body"].strip() else extra}
        out[doc_id] = r
    return out


def documents(records: list[dict]) -> list[Document]:
    """Documents from harvested records: one per object, under its preferred name, with title words.

    A module whose docstring is short gets a synopsis of its members (see ``SYNOPSIS_BELOW``)."""
    chosen: dict[str, dict] = {}
    for r in records:
        best = chosen.get(r["key"])
        if best is None or _preference(r) < _preference(best):
            chosen[r["key"]] = r
    unique: dict[str, dict] = {}
    for r in sorted(chosen.values(), key=_preference):
        unique.setdefault(r["doc_id"], r)
    vocab = vocabulary(r["body"] for r in unique.values())
    unique = _with_synopses(unique)
    docs = []
    for r in unique.values():
        docs.append(
            Document(
                doc_id=r["doc_id"],
                title=r["doc_id"],
                kind=r["kind"],
                source=r["module"],
                body=r["body"],
                heading=" ".join(identifier_words(r["doc_id"], vocab)),
                signature=r["signature"],
                boost=boost(r["kind"], r["doc_id"]),
            )
        )
    docs.sort(key=lambda d: d.doc_id)
    return docs
