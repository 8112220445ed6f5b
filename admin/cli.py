"""The ``care-episodes`` console script: one command group for every part of the project.

The write side defines the group; the read side and the panel add their commands here, at the
outermost layer, so that ``episodes`` never has to know about them.
"""

from __future__ import annotations

import ipaddress
import sys

import click

from admin.users import UserError, UserStore
from episodes.cli import _AppContext, main, pass_app
from episodes.clock import SystemClock
from projections.cli import COMMANDS as READ_SIDE_COMMANDS
from projections.projector import Projector

DEMO_USERS = (
    ("admin", "admin", "admin-demo-password"),
    ("clinician", "clinician", "clinician-demo-password"),
    ("reviewer", "reviewer", "reviewer-demo-password"),
)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True)
@click.option("--secure-cookies/--no-secure-cookies", default=None,
              help="Send session cookies over HTTPS only (default: on, except on a loopback address).")
@pass_app
def serve(ctx: _AppContext, host: str, port: int, secure_cookies: bool | None) -> None:
    """Serve the admin panel (Flask's server: for a clinic's intranet put a WSGI server in front)."""
    from admin.app import create_app

    if secure_cookies is None:
        secure_cookies = not _is_loopback(host)
    app = create_app({
        "DATABASE_URL": ctx.url,
        "SESSION_COOKIE_SECURE": secure_cookies,
        "REMEMBER_COOKIE_SECURE": secure_cookies,
    })
    click.echo(f"care-episodes panel on http://{host}:{port}/  (database {ctx.url})")
    app.run(host=host, port=port, threaded=True)


@main.group("users")
def users() -> None:
    """Manage the panel's users."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["admin", "clinician", "reviewer"]), required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@pass_app
def add_user(ctx: _AppContext, name: str, role: str, password_stdin: bool) -> None:
    """Create a user; the password is prompted for (or read from stdin, for scripts)."""
    if password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        _user_store(ctx).add(name, role, password)
    except UserError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Created {role} {name}.")


@users.command("list")
@pass_app
def list_users(ctx: _AppContext) -> None:
    """List users with their role and state."""
    for user in _user_store(ctx).all():
        state = "active" if user["active"] else "disabled"
        click.echo(f"{user['username']}\t{user['role']}\t{state}")


@click.command("demo")
@click.option("--episodes", "count", default=60, show_default=True, help="How many episodes to seed.")
@click.option("--seed", default=7, show_default=True, help="Same seed, same data.")
@pass_app
def demo(ctx: _AppContext, count: int, seed: int) -> None:
    """Seed synthetic, realistic episodes and demo users; print how to log in."""
    from episodes.demo import seed_demo

    summary = seed_demo(ctx.app, episodes=count, seed=seed)
    Projector(ctx.app).create_tables()
    Projector(ctx.app).catch_up()
    click.echo(f"Seeded {len(summary.episode_ids)} episodes into {ctx.url}")
    for status, n in sorted(summary.statuses.items()):
        click.echo(f"  {status:<18}{n:>6}")
    store = _user_store(ctx)
    click.echo("Demo users (for a demo only; never use these passwords with real data):")
    for name, role, password in DEMO_USERS:
        if store.get(name) is None:
            store.add(name, role, password)
        else:
            store.set_password(name, password)
        click.echo(f"  {role:<10} user {name!r:<12} password {password!r}")
    click.echo("Serve the panel with: care-episodes serve   (then open http://127.0.0.1:5000/)")
    for episode_id in summary.episode_ids[:3]:
        click.echo(f"  care-episodes show {episode_id}")


def _user_store(ctx: _AppContext) -> UserStore:
    return UserStore(ctx.app.recorder.datastore.engine, SystemClock())  # type: ignore[attr-defined]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


for command in (*READ_SIDE_COMMANDS, serve, demo):
    main.add_command(command)  # the panel's demo replaces the write side's (it adds users)

__all__ = ["main"]
