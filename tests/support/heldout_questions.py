"""A held-out set of standard-library questions: never used to tune retrieval, only to measure it.

``tests/support/stdlib_questions.py`` holds the ten questions the ranking was tuned on (the tests,
the benchmark and the demo use them). These twenty were written before any ranking change, in the
words a new user would type, and are only measured (``scripts/bench_answers.py``): at the start,
as a baseline, and at the end. Do not tune weights on them; if they are ever tuned on, write a new
held-out set.

What counts as right: the report's lead source (the module it says "answers this best", which is
the module of its first citation) is one of the accepted modules, or a submodule of one
(``logging.handlers`` for ``logging``). Where the standard library has two good answers, both are
accepted (``datetime`` or ``zoneinfo`` for time zones).
"""

HELDOUT = [
    ("How do I parse command line arguments?", ("argparse",)),
    ("How do I pretty-print a dictionary as JSON?", ("json",)),
    ("How do I write rows to a CSV file?", ("csv",)),
    ("How do I convert a datetime to another time zone?", ("datetime", "zoneinfo")),
    ("How do I get the file extension of a path?", ("pathlib", "os.path")),
    ("How do I find all matches of a pattern in a string?", ("re",)),
    ("How do I write log messages to a file?", ("logging",)),
    ("How do I run a function in a background thread?", ("threading", "concurrent.futures")),
    ("How do I run tasks in parallel with a process pool?", ("concurrent.futures", "multiprocessing")),
    ("How do I query a SQLite database?", ("sqlite3",)),
    ("How do I pick a random element from a list?", ("random", "secrets")),
    ("How do I get all combinations of items in a list?", ("itertools",)),
    ("How do I count how many times each word occurs?", ("collections",)),
    ("How do I copy a directory tree?", ("shutil",)),
    ("How do I create a temporary file?", ("tempfile",)),
    ("How do I split a URL into its components?", ("urllib.parse",)),
    ("How do I decompress gzip data in memory?", ("gzip", "zlib")),
    ("How do I write unit tests for my code?", ("unittest",)),
    ("How do I measure how long some code takes to run?", ("time", "timeit")),
    ("How do I get the n smallest items from a list?", ("heapq",)),
]


def is_right(module: str | None, accepted: tuple[str, ...] | list[str]) -> bool:
    """Whether a lead module is one of ``accepted`` or a submodule of one."""
    return module is not None and any(module == a or module.startswith(a + ".") for a in accepted)
