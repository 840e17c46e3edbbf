"""Where the tests' servers are, and addresses of their databases: Postgres, Redis, RabbitMQ.

The servers come from ``STEPLOG_DATABASE_URL`` / ``STEPLOG_BROKER_URL`` / ``STEPLOG_REDIS_URL`` (the
test command points them at the project's local services when they are unset) and
``STEPLOG_TEST_AMQP_URL``.
"""

from __future__ import annotations

import os

import psycopg
from sqlalchemy.engine import make_url

PG_URL = os.environ.get("STEPLOG_DATABASE_URL", "postgresql+psycopg://postgres@localhost:5432/postgres")
BROKER_URL = os.environ.get("STEPLOG_BROKER_URL", "redis://localhost:6379/0")
REDIS_URL = os.environ.get("STEPLOG_REDIS_URL") or (
    BROKER_URL if BROKER_URL.startswith("redis") else "redis://localhost:6379/0"
)
AMQP_URL = os.environ.get("STEPLOG_TEST_AMQP_URL", "amqp://guest:guest@localhost:5672//")


def libpq(url: str) -> str:
    """A SQLAlchemy URL as a libpq connection string for psycopg."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def with_database(url: str, name: str) -> str:
    """``url`` with the database ``name``."""
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def admin() -> psycopg.Connection:
    """An autocommit connection to the Postgres server, to create and drop databases."""
    return psycopg.connect(libpq(PG_URL), autocommit=True)


def redis_with_db(url: str, db: int) -> str:
    """``url`` with the Redis database number ``db``."""
    base = url.rsplit("/", 1)[0] if url.count("/") >= 3 else url
    return f"{base}/{db}"
