"""The ``care-episodes`` command line.

    care-episodes [--db URL] COMMAND ...

The database is ``--db``, else ``$CARE_EPISODES_DATABASE_URL``, else ``sqlite:///care-episodes.db``
in the working directory.  Later parts of the project add ``serve``, ``rebuild``, ``verify``,
``export-fhir`` and ``list`` to this same group.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, is_dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID, uuid4

import click

from episodes import storage
from episodes.application import Episodes
from episodes.errors import EpisodesError
from episodes.values import Actor
from episodes.vocabulary import ActorRole


class _AppContext:
    """Opens the application lazily, so ``--help`` never touches a database."""

    def __init__(self, url: str | None):
        self.url = storage.database_url(url)
        self._app: Episodes | None = None

    @property
    def app(self) -> Episodes:
        if self._app is None:
            self._app = _or_fail(lambda: Episodes(self.url))  # e.g. a wrong cipher key
        return self._app

    def close(self) -> None:
        """Close the application if a command opened it (its pooled connections too)."""
        if self._app is not None:
            self._app.close()
            self._app = None


pass_app = click.make_pass_decorator(_AppContext)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    "url",
    metavar="URL",
    envvar=storage.DATABASE_URL_VARIABLE,
    default=storage.DEFAULT_DATABASE_URL,
    show_default=True,
    help=f"SQLAlchemy database URL (also ${storage.DATABASE_URL_VARIABLE}); "
    "e.g. sqlite:///care.db or postgresql+psycopg://user@host/db.",
)
@click.version_option(package_name="care-episodes")
@click.pass_context
def main(ctx: click.Context, url: str) -> None:
    """Episodes of care for Intensive Outpatient Programs, kept as append-only event streams."""
    ctx.obj = _AppContext(url)
    ctx.call_on_close(ctx.obj.close)  # also when the command fails


@main.command("programs")
@pass_app
def list_programs(ctx: _AppContext) -> None:
    """List the programs defined in the database."""
    for program in ctx.app.programs():
        click.echo(
            f"{program.code}\t{program.name}\t{program.target_weeks} weeks\t"
            f"{program.days_per_week} days/week\tmin {program.minimum_weekly_hours} h/week"
        )


@main.command("show")
@click.argument("episode_id", type=click.UUID)
@click.option("--version", type=int, help="The episode as of this version.")
@click.option("--on", "effective_on", type=click.DateTime(["%Y-%m-%d"]), help="As of a clinical date.")
@pass_app
def show(ctx: _AppContext, episode_id: UUID, version: int | None, effective_on: datetime | None) -> None:
    """Print an episode's state (JSON)."""
    view = _or_fail(
        lambda: ctx.app.episode(
            episode_id, version=version, effective_on=effective_on.date() if effective_on else None
        )
    )
    click.echo(json.dumps({"id": view.id, "version": view.version, "state": view.state},
                          default=_json_default, indent=2))


@main.command("history")
@click.argument("episode_id", type=click.UUID)
@pass_app
def show_history(ctx: _AppContext, episode_id: UUID) -> None:
    """Print every event of an episode, one JSON object per line (JSON Lines)."""
    for event in _or_fail(lambda: list(ctx.app.history(episode_id))):
        record = {
            "version": event.originator_version,
            "event": type(event).__name__,
            "recorded_at": event.timestamp,
        }
        hidden = ("originator_id", "originator_version", "originator_topic", "timestamp")
        record.update({k: v for k, v in vars(event).items() if k not in hidden})
        click.echo(json.dumps(record, default=_json_default))


@main.command("demo")
@click.option("--episodes", "count", default=60, show_default=True, help="How many episodes to seed.")
@click.option("--seed", default=7, show_default=True, help="Same seed, same data.")
@pass_app
def demo(ctx: _AppContext, count: int, seed: int) -> None:
    """Seed synthetic, realistic episodes (no real patient) and print a summary."""
    from episodes.demo import seed_demo

    summary = seed_demo(ctx.app, episodes=count, seed=seed)
    click.echo(f"Seeded {len(summary.episode_ids)} episodes into {ctx.url}")
    for status, n in sorted(summary.statuses.items()):
        click.echo(f"  {status:<18}{n:>6}")
    click.echo("The admin panel is not built yet; read an episode with the library or:")
    for episode_id in summary.episode_ids[:3]:
        click.echo(f"  care-episodes show {episode_id}")


@main.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--actor", "actor_spec", metavar="ID:ROLE", default="migration:system",
              show_default=True,
              help="Who runs the import; also the actor of the commands that name none.")
@click.option("--correlation-id", metavar="ID",
              help="Given to every imported event without its own (default: import-<random>).")
@click.option("--batch-events", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="About this many events (whole episodes) per transaction.")
@click.option("--check", "dry_run", is_flag=True,
              help="Validate and decide every episode, write nothing.")
@click.option("--workers", type=click.IntRange(min=0), metavar="N",
              help="Processes deciding the episodes while this one writes (default: one per "
              "core; 0: this process only).  A small file is always decided in this process.")
@pass_app
def import_command(ctx: _AppContext, file: Any, actor_spec: str, correlation_id: str | None,
                   batch_events: int, dry_run: bool, workers: int | None) -> None:
    """Import historical episodes from FILE (JSON Lines, one episode a line; - for stdin).

    Each line: {"commands": [{"command": "refer", "data": {...}, "actor": {"id": ..., "role":
    ...}}, ...]}, the referral first, with the same command names and data as the library's
    commands.  An episode already in the database (same referral command id) is skipped.
    Exit 1 naming the line, the command and the field of the first history that breaks a rule:
    nothing of its batch is written.  The read models are not updated: run `project` after."""
    from episodes.import_parallel import ImportWorkerDied
    from episodes.importing import ImportRejected, ImportSummary, import_episodes, read_json_lines

    actor = _parse_actor(actor_spec)
    correlation_id = correlation_id or f"import-{uuid4().hex[:12]}"
    verb = "checked" if dry_run else "imported"
    start = time.perf_counter()

    def progress(summary: ImportSummary) -> None:
        click.echo(f"... {summary.imported} episodes {verb} ({summary.events} events), "
                   f"{len(summary.skipped)} skipped", err=True)

    try:
        summary = import_episodes(ctx.app, read_json_lines(file), actor=actor,
                                  correlation_id=correlation_id, batch_events=batch_events,
                                  dry_run=dry_run, progress=progress, workers=workers)
    except ImportRejected as rejected:
        click.echo(f"error: {rejected}", err=True)
        click.echo("Nothing of that episode's batch was written"
                   + ("." if dry_run else "; earlier batches were, and importing the fixed "
                      "file again skips their episodes."), err=True)
        sys.exit(1)
    except (EpisodesError, ImportWorkerDied) as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    seconds = time.perf_counter() - start
    rate = f", {summary.events / seconds:,.0f} events/s" if seconds > 0 and summary.events else ""
    click.echo(f"{summary.imported} episodes {verb} ({summary.events} events) in {seconds:.1f} s"
               f"{rate}; {len(summary.skipped)} skipped (already in the database)."
               + (f"  Decided by {summary.workers} worker processes." if summary.workers else ""))
    if not dry_run:
        click.echo(f"Correlation id {correlation_id}.  The read models are not updated by an "
                   "import: run `care-episodes project` to bring them up to date.")


def _parse_actor(spec: str) -> Actor:
    actor_id, _, role = spec.rpartition(":")
    try:
        return Actor(actor_id, ActorRole(role))
    except ValueError:
        roles = ", ".join(r.value for r in ActorRole if r.can_record)
        raise click.BadParameter(f"{spec!r}: give ID:ROLE, the role one of {roles}",
                                 param_hint="--actor") from None


@main.command("verify")
@click.option("--checkpoint", "checkpoint_file", type=click.File("r"),
              help="A checkpoint exported earlier (kept outside the database) to check against too.")
@pass_app
def verify_command(ctx: _AppContext, checkpoint_file: Any) -> None:
    """Check every stream's hash chain, the heads, the checkpoints and the access log.

    Exit 0 with a one-line summary when intact; exit 1 naming the first break."""
    from episodes.verification import load_exported, verify

    exported = load_exported(checkpoint_file.read()) if checkpoint_file else None
    report = verify(ctx.app, exported)
    click.echo(report.summary())
    for problem in report.problems[1:20]:
        click.echo(f"  also: {problem}")
    sys.exit(0 if report.intact else 1)


@main.command("checkpoint")
@click.option("--export", "export_file", type=click.File("w"),
              help="Also write the checkpoint as JSON to this file (keep it outside the database).")
@pass_app
def checkpoint_command(ctx: _AppContext, export_file: Any) -> None:
    """Record every stream's head and one digest over them all."""
    from episodes.verification import export_checkpoint, take_checkpoint

    checkpoint = take_checkpoint(ctx.app)
    click.echo(f"checkpoint {checkpoint.id}: {checkpoint.streams} streams, {checkpoint.events} events, "
               f"{checkpoint.access_entries} access entries, digest {checkpoint.digest}")
    if export_file:
        json.dump(export_checkpoint(ctx.app, checkpoint.id), export_file, indent=1)
        click.echo(f"exported to {export_file.name}")


def _or_fail(action: Any) -> Any:
    try:
        return action()
    except EpisodesError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)


def _json_default(value: Any) -> Any:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (UUID, Decimal)):
        return str(value)
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
