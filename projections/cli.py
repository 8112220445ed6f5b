"""Read-side commands for ``care-episodes``: rebuild, project (catch up / follow), lag, list,
export-fhir."""

from __future__ import annotations

import getpass
import time
from uuid import UUID

import click

from episodes.access import AccessLog
from episodes.cli import _AppContext, pass_app
from episodes.errors import EpisodesError
from projections.projector import Projector
from projections.rebuild import (
    PAGE_EVENTS,
    PARALLEL_MIN_EVENTS,
    DatabaseRestarted,
    Rebuild,
    RebuildAlreadyRunning,
    interrupted,
)
from projections.rebuild_lock import rebuild_running


def _projector(ctx: _AppContext) -> Projector:
    if interrupted(ctx.app):
        # Its rows cover part of the log in stream order, not a prefix of it: catching up from
        # the position would apply some events a second time.
        if rebuild_running(ctx.app.recorder.datastore.engine):
            raise click.ClickException(
                "a rebuild of the read models is running; wait for it to finish"
            )
        raise click.ClickException(
            "a rebuild of the read models was interrupted; run 'care-episodes rebuild' again"
        )
    projector = Projector(ctx.app)
    projector.create_tables()
    return projector


@click.command("rebuild")
@click.option("--batch-size", default=500, show_default=True,
              help="Events per transaction when catching up with what was appended meanwhile.")
@click.option("--page-size", default=PAGE_EVENTS, show_default=True,
              help="Events read and written per transaction by the rebuild itself.")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Processes that rebuild the streams, this one included (0 or 1: this one "
                   f"alone).  Default: one per core for a log of {PARALLEL_MIN_EVENTS['fork']:,} events "
                   f"or more ({PARALLEL_MIN_EVENTS['spawn']:,} where workers are spawned).")
@pass_app
def rebuild(ctx: _AppContext, batch_size: int, page_size: int, workers: int | None) -> None:
    """Drop every read model and rebuild it from the events (in bounded memory)."""
    total = ctx.app.recorder.max_notification_id() or 0
    job = Rebuild(ctx.app, page_events=page_size, workers=workers)
    if rebuild_running(ctx.app.recorder.datastore.engine):  # said before any progress bar
        raise click.ClickException(str(RebuildAlreadyRunning("it holds the rebuild lock")))
    try:
        with click.progressbar(length=total, label="Rebuilding read models", show_pos=True) as bar:
            applied = job.run(batch_size=batch_size, progress=bar.update)
    except (RebuildAlreadyRunning, DatabaseRestarted) as refused:
        raise click.ClickException(str(refused)) from None
    if job.restarted:
        click.echo("An earlier rebuild had not finished: this one started again from the beginning.",
                   err=True)
    processes = f" in {job.processes_used} processes" if job.processes_used > 1 else ""
    click.echo(f"Rebuilt the read models from {applied} events{processes}.")


@click.command("project")
@click.option("--follow", is_flag=True, help="Keep polling for new events until interrupted.")
@click.option("--interval", default=1.0, show_default=True, help="Seconds between polls with --follow.")
@click.option("--batch-size", default=500, show_default=True, help="Events per transaction.")
@pass_app
def project(ctx: _AppContext, follow: bool, interval: float, batch_size: int) -> None:
    """Apply the events not yet in the read models (catch up), once or continuously."""
    projector = _projector(ctx)
    while True:
        applied = projector.catch_up(batch_size=batch_size)
        if applied or not follow:
            click.echo(f"Applied {applied} events; position {projector.position()}, lag {projector.lag()}.")
        if not follow:
            return
        time.sleep(interval)


@click.command("lag")
@pass_app
def lag(ctx: _AppContext) -> None:
    """Print how many events the read models have not applied yet."""
    click.echo(str(_projector(ctx).lag()))


@click.command("list")
@click.option("--status", help="FHIR status code, e.g. active, onhold, finished.")
@click.option("--program", "program_code", help="Program code.")
@click.option("--clinic", help="Clinic name.")
@click.option("--over-target", is_flag=True, default=None, help="Only stays past the program's target.")
@click.option("--search", help="Part of a patient reference.")
@click.option("--page", default=1, show_default=True)
@click.option("--page-size", default=50, show_default=True)
@pass_app
def list_episodes(ctx: _AppContext, **filters: object) -> None:
    """List episodes from the read models (catching up first), one per line, tab-separated."""
    from projections.reads import ReadModels

    _projector(ctx).catch_up()
    page = ReadModels(ctx.app).episodes(**{k: v for k, v in filters.items() if v is not None})
    for row in page.rows:
        click.echo("\t".join(str(v) if v is not None else "-" for v in (
            row.episode_id, row.patient_ref, row.status, row.program_code, row.clinic,
            row.referred_on, row.admitted_on, row.discharged_on,
        )))
    click.echo(f"page {page.page} of {page.pages}, {page.total} episodes", err=True)


@click.command("export-fhir")
@click.argument("episode_id", type=click.UUID)
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True),
              help="Write the Bundle to FILE instead of standard output.")
@pass_app
def export_fhir(ctx: _AppContext, episode_id: UUID, output: str | None) -> None:
    """Write an episode as a FHIR R4 Bundle (JSON).

    The Bundle holds the EpisodeOfCare, the referral, the diagnoses, one Encounter per attended
    session, the PHQ-9 / GAD-7 scores and one Provenance per event (see docs/compliance.md (FHIR export))."""
    from projections.fhir import export_episode, to_json

    try:
        bundle = export_episode(ctx.app, episode_id)
    except EpisodesError as error:
        raise click.ClickException(str(error)) from None
    text = to_json(bundle)
    # An export from the command line is a disclosure like any other: it goes in the access log,
    # under the operating-system user who ran it.
    AccessLog(ctx.app.recorder.datastore.engine, ctx.app.clock).record(
        actor_id=f"os:{getpass.getuser()}", actor_role="system", action="export",
        episode_id=episode_id, patient_ref=ctx.app.episode(episode_id).state.patient_ref,
        detail=f"care-episodes export-fhir ({'stdout' if output is None else 'file'})",
    )
    if output is None:
        click.echo(text, nl=False)
        return
    with open(output, "w", encoding="utf-8") as file:
        file.write(text)
    click.echo(f"Wrote a FHIR Bundle of {len(bundle['entry'])} resources to {output}.", err=True)


COMMANDS = (rebuild, project, lag, list_episodes, export_fhir)
