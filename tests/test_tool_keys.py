"""Idempotency keys are fixed functions of (run, seq, tool, version, canonical input): the same on every
machine and Python version, which the literal vectors below pin down."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import BaseModel

from tools.errors import ToolInputError
from tools.keys import canonical_json, idempotency_key, input_hash

NOTIFY_INPUT = {"url": "https://example.com/hook", "payload": {"n": 1.0, "text": "héllo"}}


def test_fixed_vectors():
    assert idempotency_key("run-1", 2, "notify", "1", NOTIFY_INPUT) == (
        "d0af136c0a023afc301fcb661f3735d24e7b1bce78c870b90b51382b2ef98aa3"
    )
    assert idempotency_key("r", 7, "search_corpus", "1", {"query": "asyncio timeout", "corpus": "stdlib", "limit": 5}) == (
        "92eb4a6c394402e66d71f2e1922d57e6512210c749388df8fd76e8fa4532598a"
    )
    assert idempotency_key("r", 7, "search_corpus", "1", {}) == (
        "a6322b9f557ddcc7e1d2a961d36fe8f06dcfb2aac19979856c2ec3c38a5cad2b"
    )


def test_key_is_sha256_of_the_canonical_envelope():
    # Written out by hand: sorted keys, no whitespace, UTF-8, 1.0 written as 1.
    envelope = (
        b'{"input":{"payload":{"n":1,"text":"h\xc3\xa9llo"},"url":"https://example.com/hook"},'
        b'"run_id":"run-1","scheme":1,"seq":2,"tool":"notify","version":"1"}'
    )
    assert idempotency_key("run-1", 2, "notify", "1", NOTIFY_INPUT) == hashlib.sha256(envelope).hexdigest()


def test_canonical_numbers_and_ordering():
    assert canonical_json({"b": [1e21, 0.1, -0.0, 1e-7, 3.0], "a": None}) == b'{"a":null,"b":[1e+21,0.1,0,1e-7,3]}'
    # Keys sort by UTF-16 code units (RFC 8785): U+1F600 (a surrogate pair) before U+FB01.
    assert canonical_json({"\ufb01": 1, "\U0001f600": 2, "a": 3}) == b'{"a":3,"\xf0\x9f\x98\x80":2,"\xef\xac\x81":1}'
    assert input_hash({"x": 1}) == hashlib.sha256(b'{"x":1}').hexdigest()


def test_same_call_same_key_whatever_the_dict_order_or_number_form():
    a = idempotency_key("run", 3, "t", "1", {"a": 1, "b": {"y": 2, "x": [1, 2]}})
    b = idempotency_key("run", 3, "t", "1", {"b": {"x": [1.0, 2], "y": 2.0}, "a": 1.0})
    assert a == b


@pytest.mark.parametrize(
    "change",
    [
        dict(seq=4),
        dict(run_id="other"),
        dict(tool="u"),
        dict(version="2"),
        dict(validated_input={"a": 2}),
        dict(validated_input={"a": "1"}),
    ],
)
def test_any_part_changes_the_key(change):
    base = dict(run_id="run", seq=3, tool="t", version="1", validated_input={"a": 1})
    assert idempotency_key(**{**base, **change}) != idempotency_key(**base)


def test_validated_input_normalizes_before_keying():
    class In(BaseModel):
        limit: float
        query: str

    one = In.model_validate({"limit": 1, "query": "q"}).model_dump(mode="json")
    other = In.model_validate({"query": "q", "limit": "1.0"}).model_dump(mode="json")
    assert idempotency_key("r", 1, "t", "1", one) == idempotency_key("r", 1, "t", "1", other)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"a": {"b": float("nan")}}, "a.b"),
        ({"xs": [1, float("inf")]}, "xs.1"),
        ({"big": 2**60}, "big"),
        ({"obj": object()}, "obj"),
    ],
)
def test_values_without_canonical_form_name_the_field(value, field):
    with pytest.raises(ToolInputError) as info:
        canonical_json(value)
    assert info.value.field == field
