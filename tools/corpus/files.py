"""A user's own files as corpus documents: Markdown, plain text and HTML."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from html.parser import HTMLParser
from pathlib import Path

from tools.corpus.errors import UnsupportedFile
from tools.corpus.store import Document
from tools.corpus.text import identifier_words

MARKDOWN = frozenset({".md", ".markdown"})
TEXT = frozenset({".txt", ".text", ".rst"})
HTML = frozenset({".html", ".htm"})
SUPPORTED = MARKDOWN | TEXT | HTML

# Elements whose content is not prose; elements that end a paragraph.
_SKIP_TAGS = frozenset({"script", "style", "noscript", "template", "svg", "head"})
_BLOCK_TAGS = frozenset(
    "p div section article header footer aside nav main li ul ol dl dt dd table tr td th pre blockquote "
    "h1 h2 h3 h4 h5 h6 br hr figure figcaption".split()
)


class _HTMLText(HTMLParser):
    """Collects the visible text of an HTML page, a blank line between blocks, and its title."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.title = ""
        self.first_heading = ""
        self._skip = 0
        self._in_title = False
        self._heading: list[str] | None = None

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        if tag in _BLOCK_TAGS:
            self.chunks.append("\n\n")
        if tag in ("h1", "h2") and not self.first_heading:
            self._heading = []

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS and self._skip:
            self._skip -= 1
        elif tag == "title":
            self._in_title = False
        if tag in _BLOCK_TAGS:
            self.chunks.append("\n\n")
        if tag in ("h1", "h2") and self._heading is not None:
            self.first_heading = " ".join("".join(self._heading).split())
            self._heading = None

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skip:
            self.chunks.append(data)
            if self._heading is not None:
                self._heading.append(data)

    def text(self) -> str:
        raw = "".join(self.chunks)
        paragraphs = (" ".join(p.split()) for p in re.split(r"\n\s*\n", raw))
        return "\n\n".join(p for p in paragraphs if p)


def html_text(source: str) -> tuple[str, str]:
    """(title, visible text) of an HTML page; the title is ``<title>`` or the first h1/h2, or ""."""
    parser = _HTMLText()
    parser.feed(source)
    parser.close()
    title = " ".join(parser.title.split()) or parser.first_heading
    return title, parser.text()


_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_MD_SETEXT = re.compile(r"^(\S[^\n]*)\n(?:=+|-+)\s*$", re.MULTILINE)


def markdown_title(source: str) -> str:
    """The first heading of a Markdown document (ATX ``# x`` or underlined), or ""."""
    found = [m for m in (_MD_HEADING.search(source), _MD_SETEXT.search(source)) if m]
    if not found:
        return ""
    return min(found, key=lambda m: m.start()).group(1).strip()


def _files(paths: Iterable[str | os.PathLike[str]], root: Path | None) -> list[tuple[Path, str]]:
    """(file, doc_id) for every file named or found under a named directory."""
    out: list[tuple[Path, str]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            base = root or path.resolve()
            for f in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED):
                full = f.resolve()
                out.append((f, full.relative_to(base).as_posix() if full.is_relative_to(base) else f.name))
        elif path.is_file():
            if path.suffix.lower() not in SUPPORTED:
                raise UnsupportedFile(
                    f"{path}: cannot index {path.suffix or 'files without an extension'}; "
                    f"supported: {', '.join(sorted(SUPPORTED))}"
                )
            if root is not None and path.resolve().is_relative_to(root):
                doc_id = path.resolve().relative_to(root).as_posix()
            else:
                doc_id = path.name
            out.append((path, doc_id))
        else:
            raise UnsupportedFile(f"{path}: no such file or directory")
    return out


def read_document(path: Path, doc_id: str) -> Document:
    """One file as a document; raises :class:`UnsupportedFile` naming the file if it cannot be read."""
    suffix = path.suffix.lower()
    try:
        source = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnsupportedFile(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise UnsupportedFile(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if suffix in HTML:
        title, body = html_text(source)
    elif suffix in MARKDOWN:
        title, body = markdown_title(source), source
    else:
        title, body = "", source
    title = title or path.name
    heading = " ".join([title, *identifier_words(Path(doc_id).stem)])
    return Document(doc_id=doc_id, title=title, kind="file", source=str(path), body=body, heading=heading)


def read_documents(paths: Iterable[str | os.PathLike[str]], *, root: str | os.PathLike[str] | None = None) -> list[Document]:
    """Documents of every file in ``paths`` (see :func:`tools.corpus.add_files`); all or nothing."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    base = Path(root).resolve() if root is not None else None
    files = _files(paths, base)
    if not files:
        raise UnsupportedFile(f"no {', '.join(sorted(SUPPORTED))} files in {[str(p) for p in paths]}")
    docs: dict[str, Document] = {}
    for path, doc_id in files:
        if doc_id in docs:
            raise UnsupportedFile(f"{path}: another file has the same document id {doc_id!r}; pass root=")
        docs[doc_id] = read_document(path, doc_id)
    return list(docs.values())
