"""`steplog demo`, the README's main command: it finishes, shows a kill and a resumption, the report, then a
conversation whose second turn survives a SIGKILL with one reply."""

from tests.support.harness import cli


def test_demo_runs_to_completion_with_a_kill_and_a_resumption(steplog_env):
    res = cli(steplog_env, "demo", "--max-steps", "12", timeout=240)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    assert "SIGKILL" in out
    assert "attempt 2   <- resumed here after the kill" in out
    killed = out.index("SIGKILL")
    assert out.index("resumed here after the kill") > killed
    assert "# How do I run a subprocess with a timeout?" in out and "## Sources" in out
    assert "[subprocess" in out
    assert "report artifact: file://" in out
    # The report waited for an approval, given by the demo, and the call ran once with the key shown.
    assert "publish_report waits for approval" in out and "$ steplog approve" in out
    assert out.index("publish_report waits for approval") < out.index("approved by demo") < out.index("## Sources")
    # Then a conversation: the follow-up resolves "it", and its turn survives a SIGKILL with one reply.
    talk = out[out.index("a conversation: session"):]
    assert "you> How do I run a subprocess with a timeout?" in talk and "agent> **[subprocess.run]**" in talk
    assert talk.index("you> and which exception tells me it expired?") < talk.index("SIGKILL doomed")
    assert "**[subprocess.TimeoutExpired]** answers this best" in talk
    assert "turn 2: 1 reply event, committed by demo-next" in talk
    assert talk.count("agent> ") == 2
