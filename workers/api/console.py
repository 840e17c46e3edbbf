"""The web console: server-rendered pages (Jinja2), live parts over server-sent events."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
