"""Gather the docstrings of standard-library modules: run as a child process, stdlib only.

    python -I -S harvest.py [--timeout=SECONDS] [--path=DIR ...] MODULE[=DISPLAY_NAME] ...

For each module it writes JSON lines to its standard output: ``{"start": name}``, then one
``{"doc": {...}}`` per documented module, class, function, method or property, then
``{"end": name}`` or ``{"failed": name, "error": "..."}``. Whatever the imported modules print goes to
/dev/null, so a chatty import cannot corrupt the stream. The parent (``tools.corpus.build``) runs it
with ``-I -S``: no site-packages and no current directory on ``sys.path``, so only the standard library
is imported, and a module that crashes or hangs the interpreter costs that module alone (the parent
restarts the child with the rest of its list).

This file must not import anything outside the standard library.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import signal
import sys
import warnings

# A module whose import has not finished after this long is abandoned (the parent has its own backstop).
IMPORT_SECONDS = 20


class _Timeout(Exception):
    pass


def _on_alarm(signum, frame):  # pragma: no cover - only on a hanging import
    raise _Timeout("import took too long")


def _signature(obj) -> str | None:
    try:
        text = str(inspect.signature(obj))
    except Exception:  # noqa: BLE001 - C signatures can fail in odd ways (curses: AttributeError)
        return None
    # A default such as <object object at 0x7f...> would make every build's text differ.
    return re.sub(r" at 0x[0-9a-fA-F]+", "", text)


def _own_doc(obj) -> str:
    """The object's own docstring (not one inherited from a base class), cleaned of indentation."""
    doc = getattr(obj, "__doc__", None)
    if not isinstance(doc, str) or not doc.strip():
        return ""
    return inspect.cleandoc(doc)


def _identity(obj, fallback: str) -> str:
    # The same object re-exported under several names is documented once, under its shortest name.
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str):
        return f"{module}:{qualname}"
    return fallback


def _is_private_module(name: str | None) -> bool:
    return bool(name) and any(part.startswith("_") for part in name.split("."))


def _public_names(module, real_name: str) -> list[str]:
    exported = getattr(module, "__all__", None)
    if isinstance(exported, (list, tuple)):
        return sorted({n for n in exported if isinstance(n, str) and not n.startswith("_")})
    names = []
    for name, obj in vars(module).items():
        if name.startswith("_"):
            continue
        # Without __all__, an imported name (os in shutil) is not part of this module: keep only what
        # it defines itself or re-exports from its private C accelerator (_csv, _hashlib, ...).
        owner = getattr(obj, "__module__", None)
        if owner == real_name or _is_private_module(owner):
            names.append(name)
    return sorted(names)


def _kind(obj) -> str | None:
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    if inspect.isroutine(obj):
        return "function"
    return None


def _members(cls) -> dict[str, object]:
    """A class's own attributes, plus those it inherits from private bases.

    ArgumentParser.add_argument is defined on argparse._ActionsContainer: a private base is documented
    nowhere else, so its methods belong to the public class. Public bases document their own.
    """
    members: dict[str, object] = {}
    for klass in cls.__mro__:
        if klass is cls or (klass is not object and klass.__name__.startswith("_")):
            for name, raw in vars(klass).items():
                members.setdefault(name, raw)
    return members


def _member_kind(raw):
    if isinstance(raw, property):
        return "property", raw
    if isinstance(raw, (classmethod, staticmethod)):
        return "method", raw.__func__
    if inspect.isroutine(raw) or inspect.ismethoddescriptor(raw):
        return "method", raw
    return None, None


def _docs_of_module(module, real_name: str, display: str):
    yield {
        "doc_id": display,
        "kind": "module",
        "module": display,
        "signature": None,
        "body": _own_doc(module),
        "key": f"module:{real_name}",
    }
    for name in _public_names(module, real_name):
        try:
            obj = getattr(module, name)
        except Exception:  # noqa: BLE001 - a lazy attribute that fails is skipped, not the module
            continue
        kind = _kind(obj)
        if kind is None:
            continue
        doc_id = f"{display}.{name}"
        key = _identity(obj, doc_id)
        body = _own_doc(obj)
        if inspect.isclass(obj) and not body:
            body = _own_doc(vars(obj).get("__init__"))
        # A class is documented even without a docstring: its name, signature and methods still are
        # (csv.DictReader has none). An undocumented function says too little to keep.
        if body or inspect.isclass(obj):
            yield {
                "doc_id": doc_id,
                "kind": kind,
                "module": display,
                "signature": _signature(obj),
                "body": body,
                "key": key,
            }
        if not inspect.isclass(obj):
            continue
        for member, raw in sorted(_members(obj).items()):
            if member.startswith("_"):
                continue
            mkind, mobj = _member_kind(raw)
            if mkind is None:
                continue
            mbody = _own_doc(mobj)
            if not mbody:
                continue
            yield {
                "doc_id": f"{doc_id}.{member}",
                "kind": mkind,
                "module": display,
                "signature": _signature(mobj) if mkind == "method" else None,
                "body": mbody,
                "key": f"{key}.{member}",
            }


def main(argv: list[str]) -> int:
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    # Everything a module prints or reads at import goes nowhere; the protocol has its own descriptor.
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    sys.stdin = open(os.devnull)
    sys.stdout = open(os.devnull, "w")
    warnings.simplefilter("ignore")
    signal.signal(signal.SIGALRM, _on_alarm)

    def emit(record: dict) -> None:
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        out.flush()

    timeout = IMPORT_SECONDS
    for arg in argv:
        if arg.startswith("--timeout="):
            timeout = max(1, int(float(arg.split("=", 1)[1])))
            continue
        if arg.startswith("--path="):  # extra module directories (a test's misbehaving modules)
            sys.path.insert(0, arg.split("=", 1)[1])
            continue
        real_name, _, display = arg.partition("=")
        display = display or real_name
        emit({"start": real_name})
        try:
            signal.alarm(timeout)
            try:
                module = importlib.import_module(real_name)
            finally:
                signal.alarm(0)
            docs = list(_docs_of_module(module, real_name, display))
        except BaseException as exc:  # noqa: BLE001 - SystemExit or anything else: this module only
            emit({"failed": real_name, "error": f"{type(exc).__name__}: {exc}"[:500]})
            continue
        for doc in docs:
            emit({"doc": doc})
        emit({"end": real_name})
    out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
