"""Read-side commands for ``care-episodes``: rebuild, project (catch up / follow), lag."""

from __future__ import annotations

import time

import click

from episodes.cli import _AppContext, pass_app
from projections.projector import Projector


def _projector(ctx: _AppContext) -> Projector:
    projector = Projector(ctx.app)
    projector.create_tables()
    return projector


@click.command("rebuild")
@click.option("--batch-size", default=500, show_default=True, help="Events per transaction.")
@pass_app
def rebuild(ctx: _AppContext, batch_size: int) -> None:
    """Drop every read model and rebuild it from the events (in bounded memory)."""
    projector = Projector(ctx.app)
    projector.drop_tables()
    projector.create_tables()
    total = projector.lag()
    with click.progressbar(length=total, label="Rebuilding read models", show_pos=True) as bar:
        applied = projector.catch_up(batch_size=batch_size, progress=bar.update)
    click.echo(f"Rebuilt the read models from {applied} events.")


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


COMMANDS = (rebuild, project, lag, list_episodes)
