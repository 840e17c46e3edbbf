"""The project's own Postgres and Redis (no Docker, no system services): a leaf package.

It imports nothing of steplog but the error root, so the settings, the CLI, the demo and the tests can
all use it. ``servers`` runs the servers, ``procs`` holds the process and port helpers, ``cli`` is the
one command line for them (``steplog services ...`` and ``python -m workers.local ...``).
"""

#: Where the local services keep their data when STEPLOG_HOME is unset.
DEFAULT_HOME = ".steplog"
