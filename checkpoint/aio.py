"""Reads for an asyncio server (the API's hottest routes) on psycopg's async pool: a request that only
looks a row up costs no hop to a worker thread. Statements are the named ones of the ``.sql`` files in
the driver's style (:func:`checkpoint.queries.for_driver`)."""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.engine import make_url


class AsyncReads:
    def __init__(self, database_url: str, *, size: int = 4) -> None:
        conninfo = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        # autocommit: a lookup is its own transaction, with no BEGIN/COMMIT round trips around it;
        # no server-side prepared statements, which a transaction-mode pooler cannot keep.
        self.pool = AsyncConnectionPool(conninfo, min_size=1, max_size=size, open=False,
                                        kwargs={"autocommit": True, "prepare_threshold": None, "row_factory": dict_row})

    async def open(self) -> None:
        await self.pool.open()

    async def close(self) -> None:
        await self.pool.close()

    async def one(self, sql: str, params: dict[str, Any]) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchone()
