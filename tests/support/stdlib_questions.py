"""The research agent's kind of question, and the standard-library module that answers it."""

QUESTIONS = [
    ("how do I parse command-line options", "argparse"),
    ("how to read a CSV file", "csv"),
    ("how to run a subprocess with a timeout", "subprocess"),
    ("how to compute a SHA-256 hash", "hashlib"),
    ("how to serialize objects to JSON", "json"),
    ("how to match a regular expression", "re"),
    ("how to create a temporary directory", "tempfile"),
    ("how to parse a date string", "datetime"),
    ("how to compress a file with gzip", "gzip"),
    ("how to make an HTTP request", "urllib.request"),
]
