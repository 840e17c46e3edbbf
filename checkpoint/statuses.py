"""A run's statuses (no imports: the CLI checks `--status` without loading the table definitions)."""

RUN_STATUSES = ("queued", "running", "waiting", "succeeded", "failed", "cancelled")
TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")
