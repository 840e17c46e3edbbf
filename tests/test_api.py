"""The HTTP API in this process (FastAPI's TestClient on the real app, real Postgres and Redis): every
cell of the role-by-action-by-tenant matrix, bad input answered clearly with nothing written, and a
run's live events resumed with Last-Event-ID without a loss or a repeat."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from checkpoint import access
from workers.api.app import create_api
from workers.settings import settings_from_env

ROLES = ("viewer", "operator", "approver", "admin")


@pytest.fixture
def api(fast_env):
    settings = settings_from_env(fast_env)
    app = create_api(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.runtime = app.state.api.runtime
        yield client


@pytest.fixture
def tokens(api) -> dict[tuple[str, str], dict[str, str]]:
    """A bearer header per (tenant, role)."""
    out = {}
    for tenant in ("acme", "globex"):
        for role in ROLES:
            _, token = access.create(api.runtime.engine, tenant=tenant, role=role, name=f"{tenant}-{role}", created_by="test")
            out[tenant, role] = {"Authorization": f"Bearer {token}"}
    return out


def _run(api, tenant: str, workflow: str = "waiter", data: dict | None = None) -> str:
    return api.runtime.submit(workflow, data or {"signal": "go"}, submitted_by="test", tenant=tenant, publish=False)


def _session(api, tenant: str) -> str:
    return api.runtime.conversations.open("memo", by="test", tenant=tenant)


# Each action: (what it does, the status when allowed on the caller's own tenant, the roles allowed).
ACTIONS = {
    "read": (lambda c, h, run, sid: c.get(f"/runs/{run}", headers=h), 200, ROLES),
    "submit": (lambda c, h, run, sid: c.post("/runs", json={"workflow": "countdown", "input": {"steps": 1}}, headers=h),
               201, ("operator", "admin")),
    "cancel": (lambda c, h, run, sid: c.post(f"/runs/{run}/cancel", headers=h), 200, ("operator", "admin")),
    "signal": (lambda c, h, run, sid: c.post(f"/runs/{run}/signals/go", json={"data": {"n": 1}}, headers=h),
               200, ("operator", "admin")),
    # The run waits for a signal, not an approval: an allowed caller hears 409, which says so.
    "approve": (lambda c, h, run, sid: c.post(f"/runs/{run}/approve", json={}, headers=h), 409, ("approver", "admin")),
    "reject": (lambda c, h, run, sid: c.post(f"/runs/{run}/reject", json={"reason": "no"}, headers=h),
               409, ("approver", "admin")),
    "session": (lambda c, h, run, sid: c.get(f"/sessions/{sid}", headers=h), 200, ROLES),
    # No worker runs in this test: the message is stored, and the reply does not come in time.
    "message": (lambda c, h, run, sid: c.post(f"/sessions/{sid}/messages?timeout=0.2", json={"text": "hi"}, headers=h),
                504, ("operator", "admin")),
    "open": (lambda c, h, run, sid: c.post("/sessions", json={"agent": "memo"}, headers=h), 201, ("operator", "admin")),
}
GLOBAL = {"submit", "open"}  # actions on no existing run: no other tenant's version


@pytest.mark.parametrize("role", ROLES)
def test_every_role_action_and_tenant(api, tokens, role) -> None:
    for action, (call, ok, allowed) in ACTIONS.items():
        for owner in ("acme", "globex"):
            if action in GLOBAL and owner == "globex":
                continue
            run, sid = _run(api, owner), _session(api, owner)
            res = call(api, tokens["acme", role], run, sid)
            if role not in allowed:
                expected = 403
            elif owner == "globex":
                expected = 404  # another tenant's run: as if it did not exist
            else:
                expected = ok
            assert res.status_code == expected, (role, action, owner, res.status_code, res.text)
            assert "Traceback" not in res.text


def test_no_token_a_bad_one_or_a_revoked_one_is_401(api, tokens) -> None:
    run = _run(api, "acme")
    assert api.get(f"/runs/{run}").status_code == 401
    assert api.get(f"/runs/{run}", headers={"Authorization": "Bearer stl_nope"}).status_code == 401
    access.revoke(api.runtime.engine, "acme-viewer")
    res = api.get(f"/runs/{run}", headers=tokens["acme", "viewer"])
    assert res.status_code == 401 and res.headers["www-authenticate"] == "Bearer"
    assert api.get(f"/runs/{run}", headers=tokens["acme", "admin"]).status_code == 200


def test_a_revoked_token_is_refused_once_the_token_cache_forgets_it(fast_env) -> None:
    import time

    app = create_api(settings_from_env({**fast_env, "STEPLOG_API_TOKEN_CACHE_SECONDS": "0.3"}))
    with TestClient(app) as client:
        runtime = app.state.api.runtime
        _, token = access.create(runtime.engine, tenant="acme", role="viewer", name="v", created_by="test")
        h = {"Authorization": f"Bearer {token}"}
        assert client.get("/runs", headers=h).status_code == 200
        access.revoke(runtime.engine, "v")
        assert client.get("/runs", headers=h).status_code == 200  # still trusted from the cache
        time.sleep(0.4)
        assert client.get("/runs", headers=h).status_code == 401


def test_lists_and_the_inbox_show_one_tenant_and_actions_record_the_token_name(api, tokens) -> None:
    mine, theirs = _run(api, "acme"), _run(api, "globex")
    listed = api.get("/runs", headers=tokens["acme", "viewer"]).json()
    assert mine in {r["run_id"] for r in listed} and theirs not in {r["run_id"] for r in listed}
    assert set(listed[0]) == {"run_id", "workflow", "status", "created_at", "updated_at"}
    assert api.get("/approvals", headers=tokens["acme", "viewer"]).json() == []
    shown = api.get(f"/runs/{mine}", headers=tokens["acme", "viewer"]).json()
    assert shown["tenant"] == "acme" and shown["run_id"] == mine and shown["events"][0]["type"] == "submitted"

    sent = api.post(f"/runs/{mine}/signals/go", json={"data": {"x": 1}, "key": "k1"}, headers=tokens["acme", "operator"])
    assert sent.json() == {"run_id": mine, "key": "k1", "status": "buffered", "seq": None}
    again = api.post(f"/runs/{mine}/signals/go", json={"data": {"x": 1}, "key": "k1"}, headers=tokens["acme", "operator"])
    assert again.json()["status"] == "duplicate"
    api.post(f"/runs/{mine}/cancel", headers=tokens["acme", "operator"])
    with api.runtime.engine.connect() as conn:
        sender = conn.execute(text("SELECT sender FROM signals WHERE run_id = :r"), {"r": mine}).scalar_one()
        by = conn.execute(text("SELECT cancel_requested_by FROM runs WHERE run_id = :r"), {"r": mine}).scalar()
        status = conn.execute(text("SELECT status FROM runs WHERE run_id = :r"), {"r": mine}).scalar()
    assert sender == "acme-operator"
    assert status == "cancelled" or by == "acme-operator"
    made = api.post("/runs", json={"workflow": "countdown", "input": {"steps": 1}}, headers=tokens["globex", "admin"]).json()
    assert api.get(f"/runs/{made['run_id']}", headers=tokens["globex", "viewer"]).json()["tenant"] == "globex"


def test_a_run_read_again_is_fresh_and_an_unchanged_one_answers_304(api, tokens) -> None:
    """Each replica keeps the JSON it rendered for a run that only its own row can change, under the
    digest of that row (its ETag): a change to the run must show at once."""
    run = _run(api, "acme")
    viewer = tokens["acme", "viewer"]
    queued = api.get(f"/runs/{run}", headers=viewer)
    assert "etag" not in queued.headers  # a queued step's throttle lives in other rows: never kept
    assert queued.json()["children"] is None and queued.json()["parent"] is None

    api.post(f"/runs/{run}/cancel", headers=tokens["acme", "operator"])
    first = api.get(f"/runs/{run}", headers=viewer)
    assert first.json()["status"] == "cancelled" and first.json()["events"][-1]["type"] == "cancelled"
    etag = first.headers["etag"]
    assert api.get(f"/runs/{run}", headers=viewer).json() == first.json()
    assert api.get(f"/runs/{run}", headers={**viewer, "If-None-Match": etag}).status_code == 304

    with api.runtime.engine.begin() as conn:  # any write to the run's row (here: as `gc` archiving it would)
        conn.execute(text("UPDATE runs SET updated_at = now() + interval '1 second' WHERE run_id = :r"), {"r": run})
    after = api.get(f"/runs/{run}", headers={**viewer, "If-None-Match": etag})
    assert after.status_code == 200 and after.headers["etag"] != etag
    assert after.json()["updated_at"] != first.json()["updated_at"]
    assert api.get(f"/runs/{run}", headers=tokens["globex", "viewer"]).status_code == 404


def test_the_consoles_chat_list_shows_only_the_tenants_sessions(api, tokens) -> None:
    mine, theirs = _session(api, "acme"), _session(api, "globex")
    token = tokens["acme", "viewer"]["Authorization"].split()[1]
    api.cookies.set("steplog_token", token)
    page = api.get("/ui/chat")
    assert page.status_code == 200 and mine in page.text and theirs not in page.text


def test_the_consoles_limits_page_is_for_admins(api, tokens) -> None:
    api.cookies.set("steplog_token", tokens["acme", "admin"]["Authorization"].split()[1])
    page = api.get("/ui/limits")
    assert page.status_code == 200 and "Concurrency keys" in page.text and 'href="/ui/limits"' in page.text
    api.cookies.set("steplog_token", tokens["acme", "operator"]["Authorization"].split()[1])
    assert api.get("/ui/limits").status_code == 403
    assert 'href="/ui/limits"' not in api.get("/ui/runs").text


def _counts(engine) -> tuple:
    with engine.connect() as conn:
        return conn.execute(text("SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM signals), "
                                 "(SELECT count(*) FROM events)")).one()


def test_bad_input_is_answered_clearly_and_nothing_is_written(api, tokens) -> None:
    h = tokens["acme", "admin"]
    done = _run(api, "acme", "countdown", {"steps": 1})
    api.post(f"/runs/{done}/cancel", headers=h)
    before = _counts(api.runtime.engine)
    cases = [
        (lambda: api.post("/runs", json={"workflow": "no_such_flow"}, headers=h), 422, "unknown workflow 'no_such_flow'"),
        (lambda: api.post("/runs", json={"workflow": "countdown", "input": {"steps": "many"}}, headers=h), 422, "steps"),
        (lambda: api.post("/runs", json={"input": {}}, headers=h), 422, "body.workflow"),
        (lambda: api.post("/runs", json={"workflow": "countdown", "extra": 1}, headers=h), 422, "body.extra"),
        (lambda: api.post("/runs", content=b"{not json", headers={**h, "content-type": "application/json"}), 422, "JSON"),
        (lambda: api.post("/runs", content=b"x" * 2_000_000, headers={**h, "content-type": "application/json"}),
         413, "STEPLOG_API_MAX_BODY_BYTES"),
        (lambda: api.post("/runs", json={"workflow": "countdown", "input": {"steps": 1}},
                          headers={**h, "traceparent": "00-xyz-01"}), 422, "traceparent must be W3C trace context"),
        (lambda: api.get("/runs/no-such-run", headers=h), 404, "no run with id 'no-such-run'"),
        (lambda: api.post(f"/runs/{done}/signals/go", json={"data": 1}, headers=h), 409, "takes no more signals"),
        (lambda: api.post("/runs/no-such-run/signals/go", json={}, headers=h), 404, "no run with id"),
        (lambda: api.post(f"/runs/{done}/reject", json={"reason": ""}, headers=h), 422, "body.reason"),
        (lambda: api.get("/runs?status=sleepy", headers=h), 422, "status must be one of"),
        (lambda: api.post("/sessions", json={"agent": "countdown"}, headers=h), 422, "not a chat agent"),
        (lambda: api.post(f"/sessions/{done}/messages", json={"text": "hi"}, headers=h), 422, "not a session"),
        (lambda: api.post("/sessions/no-such/messages", json={"text": "hi"}, headers=h), 404, "no run with id"),
        (lambda: api.post(f"/sessions/{done}/messages", json={"text": ""}, headers=h), 422, "body.text"),
    ]
    for call, status, says in cases:
        res = call()
        assert res.status_code == status, (status, says, res.status_code, res.text)
        assert says in res.json()["error"], (says, res.text)
        assert "Traceback" not in res.text
    assert _counts(api.runtime.engine) == before


def test_a_traceparent_header_is_stored_with_the_run(api, tokens) -> None:
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    res = api.post("/runs", json={"workflow": "countdown", "input": {"steps": 1}},
                   headers={**tokens["acme", "operator"], "traceparent": tp})
    assert res.status_code == 201, res.text
    from checkpoint import runs

    assert runs.traceparent(api.runtime.engine, res.json()["run_id"]) == tp  # every step's span continues it


def test_health_docs_and_metrics(api, tokens) -> None:
    assert api.get("/healthz").json() == {"postgres": "ok", "broker": "ok"}
    assert api.get("/docs").status_code == 200 and "/runs/{run_id}" in api.get("/openapi.json").json()["paths"]
    run = _run(api, "acme")
    for _ in range(3):
        api.get(f"/runs/{run}", headers=tokens["acme", "viewer"])
    api.get("/runs/nope", headers=tokens["acme", "viewer"])
    scraped = api.get("/metrics").text
    assert 'steplog_api_requests_total{method="GET",route="/runs/{run_id}",status="200"} 3.0' in scraped
    assert 'steplog_api_requests_total{method="GET",route="/runs/{run_id}",status="404"} 1.0' in scraped
    assert run not in scraped  # no label carries a run id
    assert 'steplog_runs{status="queued"}' in scraped and "steplog_runs_waiting_for_approval 0.0" in scraped
    assert "steplog_api_open_streams 0.0" in scraped
    # The families `steplog worker --metrics-port` serves (tests/test_metrics.py counts them).
    assert 'runs{status="queued"} ' in scraped
    for family in ("steps_total", "step_seconds", "step_queue_wait_seconds", "lease_takeovers_total",
                   "redispatches_total", "runs_waiting", "llm_tokens_total"):
        assert f"# TYPE {family} " in scraped, family


# -- live events, with the session's in-process worker ------------------------------------------------


def _sse(lines) -> list[dict]:
    """Parse server-sent events from an iterator of lines until an `end` event."""
    out, event = [], {}
    for line in lines:
        if line == "":
            if event:
                out.append(event)
                if event.get("event") == "end":
                    return out
            event = {}
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(": ")
        event[field] = value
    return out


@pytest.mark.usefixtures("celery_session_worker")
def test_live_events_resume_with_last_event_id_losing_and_repeating_nothing(session_settings) -> None:
    app = create_api(session_settings, unauthenticated=True)
    with TestClient(app) as client:
        run_id = app.state.api.runtime.submit("countdown", {"steps": 8, "sleep": 0.05}, submitted_by="test")
        first: list[dict] = []
        with client.stream("GET", f"/runs/{run_id}/events") as res:
            assert res.headers["content-type"].startswith("text/event-stream")
            event: dict = {}
            for line in res.iter_lines():
                if line == "" and event:
                    first.append(event)
                    event = {}
                    if len(first) == 3:
                        break
                elif line and not line.startswith(":"):
                    field, _, value = line.partition(": ")
                    event[field] = value
        with client.stream("GET", f"/runs/{run_id}/events", headers={"Last-Event-ID": first[-1]["id"]}) as res:
            rest = _sse(res.iter_lines())
    assert rest[-1]["event"] == "end" and json.loads(rest[-1]["data"])["status"] == "succeeded"
    seqs = [int(e["id"]) for e in first + rest[:-1]]
    engine = create_engine(session_settings.database_url)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT seq FROM events WHERE run_id = :r ORDER BY seq"), {"r": run_id}).scalars().all()
    engine.dispose()
    assert seqs == list(stored)  # every event once, in order, across the reconnect
    assert all(json.loads(e["data"])["seq"] == int(e["id"]) for e in first + rest[:-1])


def test_tokens_cli_shows_a_token_once_and_revokes_it(steplog_env) -> None:
    from tests.support.harness import cli, cli_json

    made = cli_json(steplog_env, "tokens", "create", "--tenant", "acme", "--role", "approver", "--name", "ann", "--json")
    assert made["name"] == "ann" and made["role"] == "approver" and made["token"].startswith("stl_")
    listed = cli_json(steplog_env, "tokens", "list", "--json")
    assert [(t["name"], t["tenant"], t["role"], t["revoked_at"]) for t in listed] == [("ann", "acme", "approver", None)]
    assert made["token"] not in json.dumps(listed)
    engine = create_engine(steplog_env["STEPLOG_DATABASE_URL"])
    with engine.connect() as conn:  # only the hash is stored
        stored = conn.execute(text("SELECT token_hash FROM api_tokens")).scalar_one()
    engine.dispose()
    assert stored == access.digest(made["token"]) and made["token"] not in stored
    for args, code, says in [
        (("tokens", "create", "--tenant", "acme", "--role", "root"), 2, "role must be one of viewer, operator, approver, admin"),
        (("tokens", "create", "--tenant", "a b", "--role", "viewer"), 2, "a token's tenant is 1 to 64"),
        (("tokens", "create", "--tenant", "acme", "--role", "viewer", "--name", "ann"), 1, "a token named 'ann' exists already"),
        (("tokens", "revoke", "nobody"), 1, "no live token named 'nobody'"),
    ]:
        res = cli(steplog_env, *args)
        assert res.returncode == code and says in res.stderr and res.stdout == "", (args, res.stderr)
    assert cli(steplog_env, "tokens", "revoke", "ann").returncode == 0
    assert cli_json(steplog_env, "tokens", "list", "--json")[0]["revoked_at"] is not None
