"""`steplog research`, `steplog report` and `steplog corpus ...`: the research job from the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workers.cli.common import ctx, fail, operator, out, print_json
from workers.cli.errors import CommandFailed

corpus_app = typer.Typer(no_args_is_help=True, help="Corpora the research agent searches.")


def research(
    question: Annotated[str, typer.Argument(help="The research question.")],
    wait: Annotated[bool, typer.Option("--wait", help="Follow the run and print the report.")] = False,
    max_steps: Annotated[int, typer.Option("--max-steps", help="Step budget.")] = 40,
    notify_url: Annotated[str | None, typer.Option("--notify-url", help="Webhook told when the report is ready.")] = None,
    corpus: Annotated[str, typer.Option(help="Corpus to research.")] = "stdlib",
    approve: Annotated[bool, typer.Option("--approve", help="publish_report and notify wait for `steplog approve`.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print {\"run_id\": ...} (and the result with --wait).")] = False,
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant the run belongs to.")] = "default",
) -> None:
    """Submit a research job: a question in, a cited Markdown report out."""
    data = {"question": question, "max_steps": max_steps, "corpus": corpus, "notify_url": notify_url, "approve": approve}
    run_id = ctx.celery.steplog.submit("research", data, submitted_by=operator(), tenant=tenant)
    if not wait:
        print_json({"run_id": run_id}) if as_json else out.print(run_id, markup=False, highlight=False)
        return
    if not as_json:
        out.print(f"run {run_id}: following (Ctrl-C stops following, not the run)", markup=False)
    run = _follow(run_id, quiet=as_json)
    if as_json:
        print_json({"run_id": run_id, "status": run["status"], "result": run["result"], "error": run["error"]})
    elif run["status"] == "succeeded":
        out.print(run["result"]["report"], markup=False, highlight=False)
    else:
        out.print(f"run {run_id} {run['status']}: {run['error']}", markup=False)
    raise typer.Exit(0 if run["status"] == "succeeded" else 1)


def _follow(run_id: str, *, quiet: bool) -> dict:
    """Follow the run with `steplog watch`'s loop (Redis doorbell, Postgres as the source), printing
    one line per step unless ``quiet``; returns the finished run."""
    from workers.cli.watch import follow, progress_stream

    def print_steps(state, new) -> None:
        for e in () if quiet else new:
            p = e["payload"]
            what = p.get("tool") or (p.get("decision") or {}).get("tool") or p.get("kind") or ""
            out.print(f"  step {e['seq']:>3} {e['type']:<10} {what:<16} {e['worker'] or ''} attempt {e['attempt']}",
                      markup=False, highlight=False)

    return follow(ctx.engine, run_id, 0.2, print_steps, progress_stream(ctx.settings)).run


def report(run_id: Annotated[str, typer.Argument(help="Run id.")]) -> None:
    """Print a research run's report (Markdown)."""
    from workers.cli import pg

    run = pg.get_run(ctx.db, run_id)
    if run["workflow"] != "research":
        fail(f"run {run_id} is a {run['workflow']} run, not research; it has no report", 1)
    if run["status"] != "succeeded":
        fail(f"run {run_id} is {run['status']}; no report yet", 1)
    out.print(run["result"]["report"], markup=False, highlight=False)


@corpus_app.command("build")
def corpus_build(name: Annotated[str, typer.Option(help="Corpus name.")] = "stdlib") -> None:
    """Build (or rebuild) the built-in corpus: the Python standard library's documentation."""
    from tools.corpus import build_stdlib

    stats = build_stdlib(ctx.engine, name=name)
    out.print(f"corpus {name!r}: {stats.documents} documents, {stats.passages} passages", markup=False)


@corpus_app.command("add")
def corpus_add(
    paths: Annotated[list[Path], typer.Argument(help="Markdown, text or HTML files or folders.")],
    name: Annotated[str, typer.Option("--name", help="Corpus name.")] = "docs",
) -> None:
    """Add your own Markdown, text or HTML files as a corpus."""
    from tools.corpus import add_files
    from tools.corpus.errors import CorpusError

    try:
        stats = add_files(ctx.engine, paths, corpus=name)
    except CorpusError as exc:
        # Exit 2 for every corpus error here, as this command always did (CorpusStorageError's own code is 1).
        raise CommandFailed(str(exc), 2) from exc
    out.print(f"corpus {name!r}: {stats.documents} documents, {stats.passages} passages added", markup=False)


@corpus_app.command("list")
def corpus_list() -> None:
    """The corpora there are."""
    from tools.corpus import corpora

    for name in corpora(ctx.engine):
        out.print(name, markup=False, highlight=False)
