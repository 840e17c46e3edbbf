"""Sessions in this process (the session's step worker): turns, message ids, queued messages, the three
tiers of a conversation's context (Redis wiped, Redis expired), and the offline chat agent's follow-ups."""

from __future__ import annotations

import threading

import pytest
import redis
from sqlalchemy import create_engine

from checkpoint import redis_keys, turns
from checkpoint import runs as runs_mod
from checkpoint.errors import BadInput, RunNotFound
from checkpoint.recall import search_memory
from tests.support.harness import Runs, assert_contiguous, wait_for
from tools.corpus import build_stdlib, corpus_exists
from workers.conversation import Conversations, SessionEnded

pytestmark = pytest.mark.usefixtures("celery_session_worker")


@pytest.fixture
def steps(celery_session_app) -> Runs:
    return Runs(celery_session_app)


@pytest.fixture
def talk(celery_session_app) -> Conversations:
    return celery_session_app.steplog.conversations


@pytest.fixture
def hot(session_settings) -> redis.Redis:
    client = redis.Redis.from_url(session_settings.redis_url)
    yield client
    client.close()


def _say(talk: Conversations, sid: str, text: str, **kw) -> turns.Turn:
    return talk.reply(talk.send(sid, text, by="tester", **kw), timeout=30)


def _replies(steps: Runs, sid: str) -> list[dict]:
    return [e["payload"] for e in steps.events(sid) if e["type"] == "reply"]


def test_each_message_gets_one_turn_that_knows_the_conversation(talk: Conversations, steps: Runs) -> None:
    sid = talk.open("memo", by="tester")
    first = _say(talk, sid, "one two three")
    second = _say(talk, sid, "four five")
    third = _say(talk, sid, "six")
    assert (first.turn, second.turn, third.turn) == (1, 2, 3)
    assert first.reply.startswith("one two three (3 words). I remember 0 earlier messages")
    assert "I remember 2 earlier messages: one two three | four five." in third.reply
    replies = _replies(steps, sid)
    assert [r["turn"] for r in replies] == [1, 2, 3]
    assert [r["reply"] for r in replies] == [first.reply, second.reply, third.reply]
    run = steps.run(sid)
    assert run["status"] == "waiting" and run["wait_signal"] == "message"
    events = steps.events(sid)
    assert_contiguous(events)
    assert {e["attempt"] for e in events} <= {0, 1}  # no step needed a second attempt
    # A turn: the message's signal, a reasoning step, the tool step, the reasoning step that replies.
    assert [e["type"] for e in events][-4:] == ["signal", "step", "step", "reply"]


def test_the_same_message_id_twice_is_one_turn_and_one_reply(talk: Conversations, steps: Runs) -> None:
    sid = talk.open("memo", by="tester")
    first = _say(talk, sid, "hello there", key="m-1")
    again = talk.send(sid, "hello there", by="tester", key="m-1")
    assert again.status == "duplicate"
    assert talk.reply(again, timeout=10) == first
    assert len(_replies(steps, sid)) == 1
    assert _say(talk, sid, "next", key="m-2").turn == 2


def test_messages_sent_at_once_get_a_turn_each_in_order(talk: Conversations, steps: Runs) -> None:
    sid = talk.open("memo", by="tester")
    _say(talk, sid, "warm up")
    sent = [talk.send(sid, f"message {i}", by="tester") for i in range(3)]  # while the first is answered
    got = [talk.reply(s, timeout=30) for s in sent]
    assert [t.turn for t in got] == [2, 3, 4]
    assert [t.message for t in got] == ["message 0", "message 1", "message 2"]
    assert "message 0 | message 1." in got[2].reply
    assert [r["turn"] for r in _replies(steps, sid)] == [1, 2, 3, 4]


def test_concurrent_senders_each_get_their_own_turn(talk: Conversations, steps: Runs) -> None:
    sid = talk.open("memo", by="tester")
    got: dict[int, turns.Turn] = {}

    def send(i: int) -> None:
        got[i] = _say(talk, sid, f"sender {i}", key=f"s-{i}")

    threads = [threading.Thread(target=send, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(t.turn for t in got.values()) == [1, 2, 3]
    by_turn = sorted(got.values(), key=lambda t: t.turn)
    # Each turn saw exactly the turns before it, whatever order the senders raced in.
    for i, t in enumerate(by_turn):
        assert t.reply.count("|") == max(i - 1, 0) and f"remember {i} earlier" in t.reply


def test_a_redis_wipe_between_turns_loses_nothing(talk: Conversations, steps: Runs, hot: redis.Redis) -> None:
    sid = talk.open("memo", by="tester")
    for text in ("alpha", "beta", "gamma"):
        _say(talk, sid, text)
    assert hot.exists(redis_keys.session_turns(sid))
    hot.flushdb()
    after = _say(talk, sid, "delta")
    assert "I remember 3 earlier messages: alpha | beta | gamma." in after.reply
    wait_for(lambda: hot.llen(redis_keys.session_turns(sid)) == 4, timeout=10, what="rebuilt from Postgres, then this turn")


def test_a_ttl_expiry_forces_a_cold_rebuild_with_the_same_answer(
    talk: Conversations, steps: Runs, hot: redis.Redis, celery_session_app, monkeypatch
) -> None:
    cache = celery_session_app.steplog.runner().services.sessions
    monkeypatch.setattr(cache, "ttl", 1)
    warm_sid, cold_sid = talk.open("memo", by="tester"), talk.open("memo", by="tester")
    messages = [f"message number {i}" for i in range(6)]  # more than the window (4): memory lines too
    for text in messages:
        _say(talk, warm_sid, text)
        _say(talk, cold_sid, text)
    wait_for(lambda: not hot.exists(redis_keys.session_turns(cold_sid), redis_keys.session_live(cold_sid)),
             timeout=10, what="the idle session's Redis keys to expire")
    assert not [k for k in hot.scan_iter(match=f"*{cold_sid}*")]  # an idle session holds nothing in Redis
    monkeypatch.setattr(cache, "ttl", 3600)
    hot.lpush(redis_keys.session_turns(warm_sid), b"{}")  # poison the warm one's head: still a hit
    hot.rpop(redis_keys.session_turns(warm_sid))
    cold, warm = _say(talk, cold_sid, "and now?"), _say(talk, warm_sid, "and now?")
    assert cold.reply == warm.reply
    assert "I remember 4 earlier messages: message number 2 | message number 3 | message number 4 | message number 5." in cold.reply
    assert "Memory: 2 lines." in cold.reply


def test_bad_messages_and_bad_sessions_are_refused_and_nothing_is_written(talk: Conversations, steps: Runs) -> None:
    sid = talk.open("memo", by="tester")
    with pytest.raises(BadInput, match="needs some text"):
        talk.send(sid, "   ", by="tester")
    with pytest.raises(BadInput, match="at most 20000"):
        talk.send(sid, "x" * 20001, by="tester")
    with pytest.raises(RunNotFound):
        talk.send("no-such-session", "hi", by="tester")
    countdown = steps.submit("countdown", {"steps": 1})
    with pytest.raises(BadInput, match="is a .countdown. run, not a session"):
        talk.send(countdown, "hi", by="tester")
    with pytest.raises(BadInput, match="not a chat agent"):
        talk.open("countdown", by="tester")
    assert _replies(steps, sid) == []
    assert _say(talk, sid, "still fine").turn == 1


def test_a_message_that_is_not_text_gets_a_reply_saying_so(talk: Conversations, steps: Runs, celery_session_app) -> None:
    sid = talk.open("memo", by="tester")
    celery_session_app.steplog.signal(sid, "message", [1, 2], key="raw-1", sender="tester")
    bad = wait_for(lambda: turns.by_key(celery_session_app.steplog.engine, sid, "raw-1"), timeout=30, what="a reply")
    assert "I could not read that message" in bad.reply and '{"text": "..."}' in bad.reply
    assert _say(talk, sid, "now in words").turn == 2


def test_a_cancelled_session_says_so(talk: Conversations, steps: Runs, celery_session_app) -> None:
    sid = talk.open("memo", by="tester")
    _say(talk, sid, "hi")
    runs_mod.cancel(celery_session_app.steplog.engine, sid, by="tester", lease_seconds=5)
    wait_for(lambda: steps.run(sid)["status"] == "cancelled", timeout=30, what="the cancel")
    with pytest.raises(SessionEnded, match="cancelled"):
        talk.send(sid, "anyone?", by="tester")


def test_turns_are_searchable_across_the_session(talk: Conversations, celery_session_app) -> None:
    sid = talk.open("memo", by="tester")
    _say(talk, sid, "the quartermaster counts barrels")
    _say(talk, sid, "something else")
    hits = search_memory(celery_session_app.steplog.engine, "quartermaster", run_id=sid)
    # Turn 2's reply recalls turn 1's message, so both match; nothing outside this session does.
    assert {(h.kind, h.source) for h in hits} == {("turn", "turn:1"), ("turn", "turn:2")}
    assert all(h.run_id == sid for h in hits)


# -- the built-in chat agent, offline ---------------------------------------------------------------


@pytest.fixture(scope="module")
def chat_corpus(session_settings) -> None:
    engine = create_engine(session_settings.database_url)
    if not corpus_exists(engine, "stdlib"):
        build_stdlib(engine)
    engine.dispose()


def test_a_follow_up_resolves_against_the_previous_turn(chat_corpus, talk: Conversations) -> None:
    sid = talk.open("chat", by="tester")
    first = _say(talk, sid, "How do I run a subprocess with a timeout?")
    assert first.citations[0] == "subprocess.run", first.reply
    follow = _say(talk, sid, "and which exception tells me it expired?")
    assert follow.citations[0] == "subprocess.TimeoutExpired", follow.reply
    assert "[subprocess.TimeoutExpired]" in follow.reply
    # Without the conversation the same words point elsewhere: the follow-up used it.
    fresh = talk.open("chat", by="tester")
    alone = _say(talk, fresh, "and which exception tells me it expired?")
    assert alone.citations[:1] != ["subprocess.TimeoutExpired"]
