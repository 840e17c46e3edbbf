"""The built-in tools every agent gets."""

from tools.builtin.fetch_url import fetch_url
from tools.builtin.notify import notify
from tools.builtin.publish_report import publish_report
from tools.builtin.read_document import read_document
from tools.builtin.save_note import save_note
from tools.builtin.search_corpus import search_corpus
from tools.builtin.search_memory import search_memory

BUILTIN_TOOLS = (search_corpus, read_document, fetch_url, save_note, publish_report, notify, search_memory)

__all__ = ["BUILTIN_TOOLS", "fetch_url", "notify", "publish_report", "read_document", "save_note", "search_corpus", "search_memory"]
