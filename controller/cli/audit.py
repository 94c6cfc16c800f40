"""``pipectl audit`` (list, ``verify``) and ``pipectl state backup|restore``, all over the ledger.

    pipectl audit [RELEASE] [-o json|yaml]
    pipectl audit show RUN [--query "SELECT …" --repo DIR]  # one run's record; a query as of it
    pipectl audit verify [--anchor-key FILE] [--anchors FILE]   # chain + signed anchors; exit 0 or 1
    pipectl audit verify --state sqlite:///backup.db --backup-of sqlite:///.pipectl/state.db
    pipectl state backup FILE          # appends a state-backup record first: the backup holds it
    pipectl state restore FILE         # then appends a state-restore record and a restore anchor
    pipectl state mark-restored SOURCE # the same record for a restore made outside (pg_restore)

``verify`` walks the hash chain from the first record and compares it with the signed anchors
(``controller/audit/anchor.py``): it fails, naming what it found, on an edited record or column, a
truncated or emptied ledger, an older backup copied into place, a bad anchor signature, or records
of the pre-2 hash scheme. A restore made with ``state restore`` is recorded (the record carries the
head of the ledger before it, and so does its restore anchor), so it verifies.

``show`` prints the record of one run (its ``run_id`` or ``record_id``); with ``--query`` it runs
a read-only Presto query in which each table is pinned to the Iceberg snapshot that run recorded
(``controller/audit/snapshots.py``: ``query_as_of``), through the Presto endpoint of the run's
stage in the repo's environments.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any, NoReturn

import typer

from controller.cli.options import REPO_OPT
from controller.cli.output import output_option

STATE_OPT = typer.Option(
    "sqlite:///.pipectl/state.db", "--state", envvar="PIPECTL_STATE", help="State store (SQLAlchemy URL)."
)
KEY_OPT = typer.Option(
    None, "--anchor-key", envvar="PIPECTL_ANCHOR_KEY",
    help="Ed25519 key that signs the ledger's anchors (default: <state dir>/audit-anchor.key).",
)
ANCHORS_OPT = typer.Option(
    None, "--anchors", envvar="PIPECTL_ANCHORS",
    help="Append-only anchor file (default: <state dir>/audit-anchors.jsonl).",
)

state_app = typer.Typer(help="Back up and restore the controller's state store.", no_args_is_help=True)


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _operator() -> str:
    """Backup and restore run on the controller host: the actor is ``local:<os user>`` (as for
    ``pipectl approve --user``)."""
    return f"local:{getpass.getuser()}"


def _ledger(state: str, key: Path | None, anchors: Path | None) -> Any:
    from controller.audit.anchor import Anchors
    from controller.audit.ledger import Ledger
    from controller.store.db import Store

    return Ledger(Store(state), anchors=Anchors.for_url(state, key, anchors))


def audit(
    release: str | None = typer.Argument(
        None, help="Release name, 'verify' to check the ledger, or 'show' to print one run."
    ),
    run: str | None = typer.Argument(None, help="show: the run id (or record id)."),
    query: str | None = typer.Option(
        None, "--query", help="show: a SELECT run with each table as of the run's recorded snapshot."
    ),
    repo: str = REPO_OPT,
    output: str = output_option("table", "json", "yaml"),
    state: str = STATE_OPT,
    anchor_key: Path | None = KEY_OPT,
    anchors: Path | None = ANCHORS_OPT,
    backup_of: str | None = typer.Option(
        None, "--backup-of", help="verify: --state is a backup of this store (its head must be anchored)."
    ),
) -> None:
    """List audit records; `audit verify`: exit 0 when chain and signed anchors agree, else 1."""
    from controller.cli.render import dump, plain_table

    if release == "verify":
        _verify(state, anchor_key, anchors, backup_of)
    if release == "show":
        _show(_ledger(state, anchor_key, anchors), run, query, repo, output)
        return
    recs = _ledger(state, anchor_key, anchors).records(release)
    if output in ("json", "yaml"):
        typer.echo(dump(recs, output))
        return
    rows = [
        [
            r["seq"], str(r["finished_at"])[:19], r["kind"], r["release"], r.get("version") or "-",
            r.get("stage") or "-", r["outcome"], (r.get("git_commit") or "-")[:12], r["hash"][:12],
        ]
        for r in recs
    ]
    typer.echo(
        plain_table(["SEQ", "TIME", "KIND", "RELEASE", "VERSION", "STAGE", "OUTCOME", "COMMIT", "HASH"], rows)
    )


def _show(ledger: Any, run: str | None, query: str | None, repo: str, output: str) -> None:
    from controller.audit.snapshots import AsOfError, query_as_of
    from controller.cli.render import dump, plain_table

    if not run:
        _fail("audit show needs a run id (pipectl audit RELEASE lists them: -o json shows run_id)")
    found = [r for r in ledger.records() if run in (r.get("run_id"), r.get("record_id"))]
    if not found:
        _fail(f"no audit record of run {run}")
    rec = found[-1]
    if query is None:
        typer.echo(dump(rec, "json" if output == "json" else "yaml"))
        return
    try:
        pinned, rows = query_as_of(_stage_presto(repo, str(rec.get("stage") or "")), rec, query)
    except AsOfError as e:
        _fail(str(e))
    typer.echo(f"-- as of run {rec['run_id']}: {pinned}", err=True)
    if output in ("json", "yaml"):
        typer.echo(dump([list(r) for r in rows], output))
    else:
        typer.echo(plain_table([f"_col{i}" for i in range(len(rows[0]) if rows else 0)],
                               [[str(v) for v in r] for r in rows]))


def _stage_presto(repo: str, stage: str) -> Any:
    """The Presto client of ``stage`` as the repo's environments declare it."""
    from controller.plan.desired import stage_context
    from controller.source.validate import find_repo_root, load_repo
    from controller.wiring import presto_client

    snap = load_repo(find_repo_root(Path(repo).resolve()))
    if stage not in snap.environments:
        _fail(f"stage {stage!r} of the record is not an environment of {repo}")
    ctx = stage_context(stage, {n: snap.environment(n) for n in snap.environments})
    if ctx.spec.presto is None:
        _fail(f"stage {stage}: the environment names no Presto endpoint")
    return presto_client(stage, ctx.spec.presto)


def _verify(state: str, key: Path | None, anchors: Path | None, backup_of: str | None) -> NoReturn:
    from controller.audit.anchor import Anchors

    ledger = _ledger(state, key, anchors)
    if backup_of:
        ok, msg = ledger.verify_backup(Anchors.for_url(backup_of, key, anchors))
    else:
        ok, msg = ledger.verify()
    typer.echo(msg if ok else f"audit ledger does not verify: {msg}", err=not ok)
    raise typer.Exit(0 if ok else 1)


@state_app.command("backup")
def state_backup(
    dest: Path = typer.Argument(..., help="Backup file."),
    state: str = STATE_OPT,
    anchor_key: Path | None = KEY_OPT,
    anchors: Path | None = ANCHORS_OPT,
) -> None:
    """Write a consistent copy of the state store (audit ledger, approvals, history) to a file.
    A state-backup record is appended (and anchored) first, so the backup's head is anchored."""
    if not state.startswith("sqlite:///"):
        _fail("backup of non-SQLite stores: use pg_dump (docs/runbooks.md, backup and restore)")
    ledger = _ledger(state, anchor_key, anchors)
    ledger.record_backup(dest, _operator())
    ledger.store.backup(dest)
    typer.echo(f"backed up {state} to {dest}")


@state_app.command("restore")
def state_restore(
    src: Path = typer.Argument(..., help="Backup file."),
    state: str = STATE_OPT,
    anchor_key: Path | None = KEY_OPT,
    anchors: Path | None = ANCHORS_OPT,
) -> None:
    """Replace the state store with a backup (stop the controller first), then record the restore:
    a state-restore record naming the backup and the head the ledger had before, and a restore
    anchor saying the same, so `pipectl audit verify` tells this restore from tampering."""
    from controller.audit.anchor import AnchorError, Anchors
    from controller.store.db import Store

    if not src.exists():
        _fail(f"{src}: no such file")
    if not state.startswith("sqlite:///"):
        _fail("restore into non-SQLite stores: use pg_restore (docs/runbooks.md, backup and restore)")
    signer = Anchors.for_url(state, anchor_key, anchors)
    previous = signer.latest()
    Store.restore(src, state)
    ledger = _ledger(state, anchor_key, anchors)
    try:
        ledger.record_restore(src, previous, _operator())
    except AnchorError as e:
        _fail(f"restored {state} from {src}, but the restore could not be anchored: {e}")
    was = f" (the ledger before it ended at #{previous.seq})" if previous else ""
    typer.echo(f"restored {state} from {src}; recorded and anchored{was}")


@state_app.command("mark-restored")
def state_mark_restored(
    source: str = typer.Argument(..., help="What the store was restored from (e.g. the pg_dump file)."),
    state: str = STATE_OPT,
    anchor_key: Path | None = KEY_OPT,
    anchors: Path | None = ANCHORS_OPT,
) -> None:
    """Record a restore made outside pipectl (pg_restore, point-in-time recovery): the same
    state-restore record and restore anchor that `state restore` writes after a SQLite copy."""
    from controller.audit.anchor import AnchorError, Anchors

    previous = Anchors.for_url(state, anchor_key, anchors).latest()
    try:
        _ledger(state, anchor_key, anchors).record_restore(Path(source), previous, _operator())
    except AnchorError as e:
        _fail(f"the restore could not be anchored: {e}")
    was = f" (the ledger before it ended at #{previous.seq})" if previous else ""
    typer.echo(f"recorded the restore of {state} from {source}{was}")
