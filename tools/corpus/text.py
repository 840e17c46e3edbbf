"""Text processing of the research corpus: passages, identifier words, query terms, sentence picking.

Pure functions, no database: the builder, the search and the extractive reasoner share them, so a
term means the same thing when indexed, when searched and when a sentence is picked.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache

import snowballstemmer

# Passages: about a paragraph; a long paragraph is cut at sentence or line ends, never past MAX.
PASSAGE_TARGET = 700
PASSAGE_MAX = 1200

# Words of a question that say nothing about its subject. Postgres' english configuration drops the
# grammatical ones ("how", "do", "I", "a"); these are the ones it keeps but a doc search should not
# require ("how do I *use* ... in *Python*").
QUESTION_NOISE = frozenset(
    "python python3 use using used make making way ways best want need needs example examples "
    "please possible proper properly correct correctly module modules library libraries stdlib "
    "standard function functions method methods class classes easiest easy simple simply".split()
)

# Words of a how-to question that say what is done or how much, not to what: a library's name or
# summary rarely turns on them ("*get* the size of a file", "how many *times*"). They still count
# in a question, at half weight (see :func:`term_weight`), and never match inside a run-together
# name ("read" in readline, "get" in getpass, "time" in timeit for "how many times").
GENERIC_WORDS = frozenset(
    "get gets getting got set sets setting do does doing done run runs running create creates creating "
    "read reads reading write writes writing find finds finding check checks checking show shows add "
    "adds remove removes open opens put puts take takes give gives keep keeps start starts change "
    "changes convert converts turn turns load loads save saves pass passes passed call calls called "
    "send sends print prints return returns handle handles work works go let try see look tell know "
    "new one two each every all several many much same some given specific certain "
    "multiple different own current instead later data value values thing things item items "
    "object objects number numbers".split()
)
# Generic only as written: "how many times" counts, "time" is a subject (their stems are the same).
GENERIC_FORMS = frozenset({"times"})

# The common English function words (a subset of Postgres' english.stop), for sentence scoring
# outside the database.
STOP_WORDS = frozenset(
    "a about above after again against all am an and any are as at be because been before being "
    "below between both but by can could did do does doing down during each few for from further "
    "had has have having he her here hers him his how i if in into is it its itself just me more "
    "most my no nor not now of off on once only or other our out over own same she should so some "
    "such than that the their them then there these they this those through to too under until up "
    "very was we were what when where which while who whom why will with would you your".split()
)

_WORD = re.compile(r"[A-Za-z0-9]+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_VOCAB_WORD = re.compile(r"[a-z]{3,}")


@lru_cache(maxsize=1)
def _stemmer():
    return snowballstemmer.stemmer("english")


def stem(word: str) -> str:
    """The Snowball English stem of a word, as Postgres' ``english`` configuration computes it."""
    return _stemmer().stemWord(word.lower())


# --- passages ---------------------------------------------------------------------------------


def _cut_long(paragraph: str, limit: int) -> list[str]:
    """A paragraph longer than ``limit`` cut at sentence ends, then line ends, then spaces."""
    pieces: list[str] = []
    rest = paragraph
    while len(rest) > limit:
        window = rest[:limit]
        cut = max(window.rfind(". "), window.rfind(".\n"), window.rfind("? "), window.rfind("! "))
        if cut < limit // 3:
            cut = window.rfind("\n")
        if cut < limit // 3:
            cut = window.rfind(" ")
        if cut < limit // 3:
            cut = limit - 1
        pieces.append(rest[: cut + 1].strip())
        rest = rest[cut + 1 :].strip()
    if rest:
        pieces.append(rest)
    return pieces


def split_passages(body: str, *, target: int = PASSAGE_TARGET, limit: int = PASSAGE_MAX) -> list[str]:
    """Split a document body into paragraph-sized passages of at most ``limit`` characters.

    Paragraphs (blank-line separated; a Markdown heading also starts one) are kept whole when they
    fit, short neighbours are merged up to about ``target`` characters, and a paragraph longer than
    ``limit`` is cut at sentence or line ends. Returns ``[]`` for an empty body.
    """
    if target <= 0 or limit < target:
        raise ValueError(f"need 0 < target <= limit, got target={target} limit={limit}")
    text = body.replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"\n(?=#{1,6} )", "\n\n", text)  # a heading opens a new paragraph
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    passages: list[str] = []
    current = ""
    for para in paragraphs:
        for piece in _cut_long(para, limit) if len(para) > limit else [para]:
            if current and len(current) + 2 + len(piece) > target:
                passages.append(current)
                current = piece
            else:
                current = f"{current}\n\n{piece}" if current else piece
    if current:
        passages.append(current)
    return passages


# --- identifier words ---------------------------------------------------------------------------


def vocabulary(texts: Iterable[str], *, min_count: int = 3) -> Counter[str]:
    """Lower-case words (3+ letters) of ``texts`` seen at least ``min_count`` times, with counts."""
    counts: Counter[str] = Counter()
    for t in texts:
        counts.update(_VOCAB_WORD.findall(t.lower()))
    return Counter({w: c for w, c in counts.items() if c >= min_count})


def _segment(word: str, vocab: Counter[str], total: int) -> list[str] | None:
    """The most probable split of ``word`` into 2 or 3 vocabulary words of 3+ letters, or None.

    A unigram model over the corpus' own words: "argparse" -> arg parse, "datetime" -> date time,
    "urlopen" -> url open, "tempfile" -> temp file. Only used to *add* index terms to a title.
    """
    n = len(word)
    if n < 6:
        return None

    def logp(w: str) -> float | None:
        c = vocab.get(w)
        return math.log(c / total) if c else None

    best: tuple[float, list[str]] | None = None
    for i in range(3, n - 2):
        left, right = word[:i], word[i:]
        lp = logp(left)
        if lp is None:
            continue
        rp = logp(right)
        if rp is not None and (best is None or lp + rp > best[0]):
            best = (lp + rp, [left, right])
        for j in range(3, len(right) - 2):
            a, b = right[:j], right[j:]
            ap, bp = logp(a), logp(b)
            # A third part costs a penalty so that two real words beat three fragments.
            if ap is not None and bp is not None and (best is None or lp + ap + bp - 5 > best[0]):
                best = (lp + ap + bp - 5, [left, a, b])
    return best[1] if best else None


def identifier_words(name: str, vocab: Counter[str] | None = None) -> list[str]:
    """The words in a qualified name, for indexing its title.

    ``argparse.ArgumentParser`` -> argparse ArgumentParser argument parser arg parse;
    ``email.utils.parsedate_to_datetime`` -> ... parsedate parse date to datetime date time.
    Splits at dots, underscores, camel case and digits; with a ``vocab`` (see :func:`vocabulary`)
    also splits run-together lower-case words. Every original part is kept, words are not repeated.
    """
    words: list[str] = []
    seen: set[str] = set()
    total = sum(vocab.values()) if vocab else 0

    def add(w: str) -> None:
        if w and w.lower() not in seen:
            seen.add(w.lower())
            words.append(w)

    for part in re.split(r"[^A-Za-z0-9]+", name):
        if not part:
            continue
        add(part)
        pieces = _CAMEL.findall(part)
        for piece in pieces if len(pieces) > 1 else []:
            add(piece.lower())
        for piece in pieces:
            if vocab and piece.isalpha():
                for w in _segment(piece.lower(), vocab, total) or []:
                    add(w)
    return words


# --- query terms -------------------------------------------------------------------------------


def query_groups(query: str) -> list[list[str]]:
    """The search terms of a question: each a group of alternative spellings, noise words removed.

    ``"how do I compute a SHA-256 hash?"`` -> [["compute"], ["sha256", "sha-256"], ["hash"]].
    A letter-digit hyphenation (SHA-256, UTF-8) is tried joined and as written; a word-word one
    (command-line) becomes two words, so "command line" in a document matches it too.
    Postgres drops the grammatical stop words itself; only alphanumerics and hyphens are returned,
    so the result is safe to join into a ``to_tsquery`` expression.
    """
    groups: list[list[str]] = []
    seen: set[str] = set()
    for token in re.findall(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*", query):
        parts = token.split("-")
        if len(parts) == 2 and parts[0].isalpha() and parts[1].isdigit():
            alternatives = [parts[0] + parts[1], token]
            candidates = [alternatives]
        else:
            candidates = [[p] for p in parts]
        for alts in candidates:
            key = alts[0].lower()
            if key in QUESTION_NOISE or key in STOP_WORDS or key in seen:
                continue
            seen.add(key)
            groups.append([a.lower() for a in alts])
    return groups


@lru_cache(maxsize=1)
def _generic_stems() -> frozenset[str]:
    return frozenset(stem(w) for w in GENERIC_WORDS)


def is_generic(term: str) -> bool:
    """Whether a question term is one of the :data:`GENERIC_WORDS` (compared by stem) or
    :data:`GENERIC_FORMS` (as written)."""
    return term.lower() in GENERIC_FORMS or stem(term) in _generic_stems()


def term_weight(term: str) -> float:
    """What a question term found in a quote, a name or a summary line is worth: 1, or 0.5 for a
    generic word (see :data:`GENERIC_WORDS`)."""
    return 0.5 if is_generic(term) else 1.0


def query_terms(query: str) -> list[str]:
    """The content words of a question (first spelling of each group of :func:`query_groups`)."""
    return [g[0] for g in query_groups(query)]


# --- sentences ---------------------------------------------------------------------------------

# A sentence ends at . ! ? followed by space and a capital, quote or bracket; "e.g. foo" and
# "os.path.join" do not end one. Blank lines and list bullets always do.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(\[`*])|\n\s*\n|\n(?=\s*(?:[-*+]|\d+[.)])\s)")


def split_sentences(passage: str) -> list[str]:
    """The sentences of a passage, whitespace collapsed, in order."""
    parts = (re.sub(r"\s+", " ", s).strip() for s in _SENTENCE_END.split(passage))
    return [p for p in parts if p]


def word_stems(text: str) -> set[str]:
    """The stems of the words of ``text`` (stop words left out), camel-case pieces included."""
    words = set()
    for w in _WORD.findall(text):
        lw = w.lower()
        if lw in STOP_WORDS:
            continue
        words.add(stem(lw))
        for piece in _CAMEL.findall(w):  # DictReader matches "reader"
            if len(piece) > 2:
                words.add(stem(piece.lower()))
    return words


def extract_sentences(passage: str, query: str | Iterable[str], *, limit: int = 3) -> list[str]:
    """The sentences of ``passage`` that best answer ``query``, in passage order.

    ``query`` is a question or its terms. A sentence scores one point per distinct query term whose
    stem it contains (after splitting camel case); sentences matching no term are never returned.
    Deterministic: ties go to the earlier sentence.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    terms = query_terms(query) if isinstance(query, str) else [t.lower() for t in query]
    wanted = {stem(t) for t in terms if t and t.lower() not in STOP_WORDS}
    if not wanted:
        return []
    sentences = split_sentences(passage)
    scored = []
    for i, sentence in enumerate(sentences):
        hits = len(wanted & word_stems(sentence))
        if hits:
            scored.append((-hits, i))
    chosen = sorted(i for _, i in sorted(scored)[:limit])
    return [sentences[i] for i in chosen]
