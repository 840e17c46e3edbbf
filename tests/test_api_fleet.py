"""The API as deployed: two `steplog api` processes on different ports in front of one worker fleet;
a conversation whose turns alternate between them is one conversation, and a run submitted through
one is followed live through the other."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.harness import Fleet, cli_json
from workers.fleet import ApiProc

pytestmark = pytest.mark.slow


@pytest.fixture
def replicas(fleet: Fleet, tmp_path):
    started = [ApiProc(fleet.env, tmp_path) for _ in range(2)]
    for r in started:
        r.wait_up()
    yield started
    for r in started:
        r.stop()


def test_one_conversation_across_two_replicas_and_a_run_followed_through_the_other(fleet: Fleet, replicas) -> None:
    fleet.start()
    token = cli_json(fleet.env, "tokens", "create", "--tenant", "acme", "--role", "operator", "--name", "ops", "--json")
    assert set(token) == {"token", "name", "tenant", "role"} and token["token"].startswith("stl_")
    h = {"Authorization": f"Bearer {token['token']}"}
    one, two = replicas
    sid = httpx.post(f"{one.url}/sessions", json={"agent": "memo"}, headers=h).json()["session_id"]
    said = []
    for i, text in enumerate(["first words", "second words here", "third", "fourth one"]):
        replica = replicas[i % 2]
        res = httpx.post(f"{replica.url}/sessions/{sid}/messages", json={"text": text, "message_id": f"m{i}"},
                         headers=h, timeout=60)
        assert res.status_code == 200, res.text
        said.append(res.json())
    assert [r["turn"] for r in said] == [1, 2, 3, 4]
    assert "I remember 3 earlier messages: first words | second words here | third." in said[3]["reply"]
    # The same message id through the other replica: the same turn, no new one.
    again = httpx.post(f"{one.url}/sessions/{sid}/messages", json={"text": "fourth one", "message_id": "m3"},
                       headers=h, timeout=60).json()
    assert again == said[3]
    session = httpx.get(f"{two.url}/sessions/{sid}", headers=h).json()
    assert [t["turn"] for t in session["turns"]] == [1, 2, 3, 4] and session["tenant"] == "acme"

    # A streamed reply (SSE) through the second replica: one `reply` event with the committed turn.
    with httpx.stream("POST", f"{two.url}/sessions/{sid}/messages", json={"text": "streamed"}, timeout=60,
                      headers={**h, "Accept": "text/event-stream"}) as res:
        body = "".join(res.iter_text())
    replies = [line for line in body.splitlines() if line.startswith("event: reply")]
    assert len(replies) == 1 and '"turn": 5' in body

    # A run submitted through one replica, followed live through the other to its end.
    run_id = httpx.post(f"{one.url}/runs", json={"workflow": "countdown", "input": {"steps": 4, "sleep": 0.05}},
                        headers=h).json()["run_id"]
    with httpx.stream("GET", f"{two.url}/runs/{run_id}/events", headers=h, timeout=60) as res:
        events = [json.loads(line[6:]) for line in res.iter_lines() if line.startswith("data: ")]
    assert events[-1] == {"run_id": run_id, "status": "succeeded"}
    assert [e["seq"] for e in events[:-1]] == list(range(1, len(events)))
