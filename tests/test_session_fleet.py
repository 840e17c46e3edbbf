"""Sessions with real worker processes and the CLI as scripts use it: a worker SIGKILLed mid-turn (one
reply, printed once), `say` / `chat` / `sessions` / `show` / `watch` and their `--json` shapes, and
exit codes that write nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
from sqlalchemy import text

from tests.support.harness import ROOT, Fleet, assert_contiguous, cli, cli_json, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def corpus_fleet(fast_env, corpus_database_url, tmp_path):
    f = Fleet({**fast_env, "STEPLOG_DATABASE_URL": corpus_database_url}, tmp_path)
    yield f
    f.close()


def _replies(fleet: Fleet, sid: str) -> list[dict]:
    return [e for e in fleet.events(sid) if e["type"] == "reply"]


def _say(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "workers", "say", *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_worker_killed_mid_turn_the_turn_ends_elsewhere_with_one_reply(fleet: Fleet) -> None:
    first, second = fleet.start(), fleet.start()
    opened = cli_json(fleet.env, "say", "--new", "--agent", "memo", "--json", "hello fleet")
    sid = opened["session_id"]
    assert opened["turn"] == 1 and opened["reply"].startswith("hello fleet (2 words)")

    last = _replies(fleet, sid)[-1]["seq"]
    saying = _say(fleet.env, sid, "this one is slow on purpose", "--json", "--message-id", "slow-1")
    # Turn 2 is the message's event, a reasoning step, the slow tool step, then the reply.
    flight = wait_for(lambda: (f := fleet.in_flight(sid)) and f["seq"] == last + 3 and f, timeout=60,
                      what="the slow turn's tool step in flight")
    victim = fleet.by_node(flight["worker"])
    victim.kill()
    out, errs = saying.communicate(timeout=90)
    assert saying.returncode == 0, errs
    printed = [json.loads(line) for line in out.splitlines()]
    assert len(printed) == 1  # one printed reply
    assert printed[0]["session_id"] == sid and printed[0]["turn"] == 2
    assert printed[0]["reply"].startswith("this one is slow on purpose (6 words). I remember 1 earlier messages: hello fleet.")

    replies = _replies(fleet, sid)
    assert [r["payload"]["turn"] for r in replies] == [1, 2]  # one reply event per turn
    survivor = first if victim is second else second
    assert replies[-1]["worker"] == survivor.node
    assert_contiguous(fleet.events(sid))
    # Resending the same message id after the fact: the same turn, nothing new.
    again = cli_json(fleet.env, "say", sid, "this one is slow on purpose", "--json", "--message-id", "slow-1")
    assert again == printed[0] and len(_replies(fleet, sid)) == 2


def test_say_chat_sessions_show_and_watch_as_scripts_use_them(corpus_fleet: Fleet) -> None:
    fleet, env = corpus_fleet, corpus_fleet.env
    fleet.start()
    first = cli_json(env, "say", "--new", "--json", "How do I run a subprocess with a timeout?")
    assert set(first) == {"session_id", "turn", "reply", "citations"}
    sid = first["session_id"]
    assert first["turn"] == 1 and first["citations"][0] == "subprocess.run"
    follow = cli_json(env, "say", sid, "and which exception tells me it expired?", "--json")
    assert follow["turn"] == 2 and follow["citations"][0] == "subprocess.TimeoutExpired"
    assert "[subprocess.TimeoutExpired]" in follow["reply"]

    plain = cli(env, "say", sid, "How do I parse JSON?")
    assert plain.returncode == 0, plain.stderr
    assert "[json" in plain.stdout and plain.stdout.count("answers this best") == 1

    # `chat`: each line a message, each reply printed once; the session waits on afterwards.
    chat = subprocess.run([sys.executable, "-m", "workers", "chat", "--session", sid], env=env, cwd=ROOT,
                          input="How do I read a CSV file?\nand how do I write one?\n", capture_output=True,
                          text=True, timeout=120)
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.count("agent> ") == 2 and "[csv" in chat.stdout
    assert f"session {sid} waits for your next message" in chat.stderr

    listed = cli_json(env, "sessions", "--json")
    assert [s["session_id"] for s in listed] == [sid]
    assert set(listed[0]) == {"session_id", "agent", "status", "turns", "created_at", "updated_at", "last_turn_at"}
    assert listed[0]["agent"] == "chat" and listed[0]["turns"] == 5 and listed[0]["status"] == "waiting"

    shown = cli_json(env, "show", sid, "--json")
    assert shown["status"] == "waiting" and shown["waiting"]["signal"] == "message"
    replies = [e["payload"] for e in shown["events"] if e["type"] == "reply"]
    assert [r["turn"] for r in replies] == [1, 2, 3, 4, 5]
    assert replies[1]["citations"] == follow["citations"]
    human = cli(env, "show", sid)
    assert "conversation (5 turns)" in human.stdout and "which exception tells me it expired" in human.stdout

    # `watch --json` follows a session: the next reply shows up as it lands.
    watch = subprocess.Popen([sys.executable, "-m", "workers", "watch", sid, "--json"], env=env, cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        cli_json(env, "say", sid, "How do I sleep for a second?", "--json")
        seen = []
        while not any(e["type"] == "reply" and e["payload"]["turn"] == 6 for e in seen):
            seen.append(json.loads(watch.stdout.readline()))
        assert all(e["run_id"] == sid for e in seen)
    finally:
        watch.send_signal(signal.SIGINT)
        watch.wait(30)


def test_every_error_has_its_exit_code_and_sends_nothing(fleet: Fleet) -> None:
    env = fleet.env
    fleet.start()
    sid = cli_json(env, "say", "--new", "--agent", "memo", "--json", "first")["session_id"]
    done = fleet.submit("countdown", {"steps": 1})
    fleet.wait_finished(done)
    with fleet.engine.connect() as conn:
        before = conn.execute(text("SELECT (SELECT count(*) FROM signals), (SELECT count(*) FROM runs)")).one()
    cases = [
        (("say", "no-such-session", "hi"), 1, "no run with id 'no-such-session'"),
        (("say", done, "hi"), 2, f"run {done} is a 'countdown' run, not a session"),
        (("say", "--new", "--agent", "countdown", "hi"), 2, "'countdown' is not a chat agent; chat agents: chat, memo"),
        (("say", sid, "   "), 2, "a message needs some text"),
        (("say", sid), 2, "give the session and the text"),
        (("say", "--new", sid, "hi"), 2, "with --new give just the text"),
        (("say", sid, "x" * 20_001), 2, "at most 20000 are taken"),
        (("say", sid, "hi", "--agent", "chat"), 2, f"session {sid} talks to 'memo'"),
        (("chat", "--session", sid, "--new"), 2, "give --session or --new, not both"),
        (("chat", "--session", "no-such-session"), 1, "no run with id 'no-such-session'"),
    ]
    for args, code, says in cases:
        res = cli(env, *args)
        assert res.returncode == code, (args, res.returncode, res.stderr)
        assert says in res.stderr and res.stdout == "" and "Traceback" not in res.stderr, (args, res.stderr)
    with fleet.engine.connect() as conn:
        assert conn.execute(text("SELECT (SELECT count(*) FROM signals), (SELECT count(*) FROM runs)")).one() == before

    # No worker: the message is stored, the reply does not come in time: exit 1 saying so; a worker
    # that starts later answers it, and asking again with the same id prints that reply.
    for w in fleet.workers:
        w.kill()
    late = cli(env, "say", sid, "anyone there?", "--message-id", "late-1", "--timeout", "1")
    assert late.returncode == 1 and "no reply from session" in late.stderr and "--message-id late-1" in late.stderr
    fleet.start()
    again = cli_json(env, "say", sid, "anyone there?", "--message-id", "late-1", "--json")
    assert again["turn"] == 2 and again["reply"].startswith("anyone there? (2 words)")
    assert len(_replies(fleet, sid)) == 2


def test_with_a_model_reply_tokens_stream_live_and_the_reply_event_is_the_durable_copy(fake_llm, corpus_fleet) -> None:
    from tests.support.fake_llm import Reply, error, text, tool_call
    from workers.app import create_app
    from workers.settings import settings_from_env

    answer = "Pass timeout= to [subprocess.run]; it raises [subprocess.TimeoutExpired] when time runs out."
    follow_up = "It is [subprocess.TimeoutExpired], raised by [subprocess.run]."
    fake_llm.script(
        tool_call("search_corpus", {"query": "subprocess timeout"}),
        error(429, "slow down", retry_after=0.1),  # retried within the same step
        Reply(body=text(answer), chunk_delay=0.02),
        Reply(body=text(follow_up), chunk_delay=0.02),
    )
    env = {**corpus_fleet.env, "STEPLOG_LLM_BASE_URL": fake_llm.url, "STEPLOG_LLM_MODEL": "fake-model",
           "STEPLOG_LLM_API_KEY": "sk-test-secret-key-123"}
    corpus_fleet.start(env=env)
    first = cli_json(env, "say", "--new", "--json", "How do I run a subprocess with a timeout?")
    sid = first["session_id"]
    assert first["reply"] == answer and first["citations"] == ["subprocess.run", "subprocess.TimeoutExpired"]

    # The second turn through `chat`: its tokens print as they stream, the reply once.
    chat = subprocess.run([sys.executable, "-m", "workers", "chat", "--session", sid], env=env, cwd=ROOT,
                          input="and which exception is it?\n", capture_output=True, text=True, timeout=120)
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.count(follow_up) == 1 and chat.stdout.count("agent> ") == 1

    # What the live stream held: the tokens of each reply, in pieces, adding up to the committed reply.
    hot = create_app(settings_from_env(env)).steplog.conversations.cache
    live = [e for _, e in hot.follow(sid, "0-0", block_ms=0)]
    for turn, reply in ((1, answer), (2, follow_up)):
        deltas = [e["text"] for e in live if e["type"] == "delta" and e["turn"] == turn]
        assert len(deltas) > 1 and "".join(deltas) == reply
    assert [e["turn"]["turn"] for e in live if e["type"] == "reply"] == [1, 2]
    # The model saw the conversation: turn 2's request holds turn 1's question and answer.
    last = fake_llm.chat_requests[-1]
    said = json.dumps(last.messages)
    assert "How do I run a subprocess with a timeout?" in said and "subprocess.TimeoutExpired" in said
    assert last.streamed
    # The key is nowhere in the session's events.
    assert "sk-test-secret-key-123" not in json.dumps(corpus_fleet.events(sid), default=str)
