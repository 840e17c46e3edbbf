"""Logging for workers and the CLI: readable text by default, one JSON object per line with
STEPLOG_LOG_FORMAT=json."""

from __future__ import annotations

import json
import logging
import time

from tasks import logcontext
from workers.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(processName)s[%(process)d] %(name)s:%(step_context)s %(message)s"


class StepContextFilter(logging.Filter):
    """Puts the step being run (tasks.logcontext) on every record: as attributes for JSON, and as
    one ` [run=.. seq=.. step=.. worker=.. attempt=..]` string for the text format."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = logcontext.current()
        for key in logcontext.FIELDS:
            if key in fields and not hasattr(record, key):
                setattr(record, key, fields[key])
        shown = " ".join(f"{k}={fields[k]}" for k in logcontext.FIELDS if k in fields)
        record.step_context = f" [{shown}]" if shown else ""
        return True


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for key in logcontext.FIELDS:
            if hasattr(record, key):
                doc[key] = getattr(record, key)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def setup_logging(settings: Settings, level: str | None = None) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(StepContextFilter())
    handler.setFormatter(JSONFormatter() if settings.log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or settings.log_level).upper())
