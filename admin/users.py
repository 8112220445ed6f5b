"""Panel users: a name, a role, a password hash, and a lockout after repeated failures.

Passwords are hashed with Werkzeug's ``generate_password_hash`` (scrypt), part of Flask's own
dependencies.  After ``MAX_FAILURES`` wrong passwords in a row an account is locked for
``LOCKOUT``; every attempt, right or wrong, goes to the access log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask_login import UserMixin
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    insert,
    select,
    update,
)
from werkzeug.security import check_password_hash, generate_password_hash

from episodes import Actor, ActorRole
from episodes.clock import Clock
from projections.reads import plain_reads

MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=15)
MIN_PASSWORD_LENGTH = 10

metadata = MetaData()
users = Table(
    "admin_users",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(256), nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    Column("failed_attempts", Integer, nullable=False, default=0),
    Column("locked_until", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

_USER = select(users.c.username, users.c.role, users.c.active).where(
    users.c.username == bindparam("username"))


@dataclass(frozen=True)
class User(UserMixin):
    username: str
    role: ActorRole
    active: bool = True

    def get_id(self) -> str:
        return self.username

    @property
    def is_active(self) -> bool:  # type: ignore[override]
        return self.active

    @property
    def actor(self) -> Actor:
        return Actor(self.username, self.role)


class UserError(ValueError):
    """A user could not be created or changed; the message says why."""


class LoginRefused(Exception):
    def __init__(self, reason: str, locked: bool = False):
        self.locked = locked
        super().__init__(reason)


class UserStore:
    def __init__(self, engine: Engine, clock: Clock):
        self.engine = engine
        self._plain_reads = plain_reads(engine)
        self.clock = clock
        metadata.create_all(engine)

    def add(self, username: str, role: str | ActorRole, password: str) -> User:
        username = username.strip()
        if not username or len(username) > 64 or not username.replace("-", "").replace("_", "").isalnum():
            raise UserError("a username is 1-64 letters, digits, '-' or '_'")
        try:
            role = ActorRole(role) if not isinstance(role, ActorRole) else role
        except ValueError:
            raise UserError(f"unknown role {role!r}; one of admin, clinician, reviewer") from None
        if role is ActorRole.SYSTEM:
            raise UserError("the system role is for imports and jobs, not for people")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise UserError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
        if self.get(username) is not None:
            raise UserError(f"user {username!r} exists")
        with self.engine.begin() as connection:
            connection.execute(insert(users).values(
                username=username, role=role.value, password_hash=generate_password_hash(password),
                active=True, failed_attempts=0, created_at=self.clock.now(),
            ))
        return User(username, role)

    def set_password(self, username: str, password: str) -> None:
        if len(password) < MIN_PASSWORD_LENGTH:
            raise UserError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
        self._update(username, password_hash=generate_password_hash(password), failed_attempts=0,
                     locked_until=None)

    def set_active(self, username: str, active: bool) -> None:
        self._update(username, active=active)

    def set_role(self, username: str, role: str) -> None:
        try:
            ActorRole(role)
        except ValueError:
            raise UserError(f"unknown role {role!r}") from None
        self._update(username, role=role)

    def get(self, username: str) -> User | None:
        # On every request (Flask-Login loads the user): one prebuilt statement, no transaction.
        with self._plain_reads.connect() as connection:
            row = connection.execute(_USER, {"username": username}).first()
        return User(row.username, ActorRole(row.role), row.active) if row else None

    def all(self) -> list[dict]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(users).order_by(users.c.username)).mappings().all()
        return [{k: v for k, v in row.items() if k != "password_hash"} for row in rows]

    def authenticate(self, username: str, password: str) -> User:
        """The user, if the password is right and the account open; else LoginRefused."""
        now = self.clock.now()
        with self.engine.connect() as connection:
            row = connection.execute(select(users).where(users.c.username == username)).first()
        if row is None:
            check_password_hash(_DUMMY_HASH, password)  # take as long as a real check
            raise LoginRefused("unknown user or wrong password")
        locked_until = _aware(row.locked_until)
        if locked_until is not None and locked_until > now:
            raise LoginRefused("too many failed attempts: the account is locked for a while", locked=True)
        if not check_password_hash(row.password_hash, password):
            failures = row.failed_attempts + 1
            lock = now + LOCKOUT if failures >= MAX_FAILURES else None
            self._update(username, failed_attempts=0 if lock else failures, locked_until=lock)
            raise LoginRefused("unknown user or wrong password", locked=lock is not None)
        if not row.active:
            raise LoginRefused("this account is disabled")
        if row.failed_attempts or row.locked_until:
            self._update(username, failed_attempts=0, locked_until=None)
        return User(row.username, ActorRole(row.role), row.active)

    def _update(self, username: str, **values: object) -> None:
        with self.engine.begin() as connection:
            result = connection.execute(update(users).where(users.c.username == username).values(**values))
        if result.rowcount == 0:
            raise UserError(f"no user {username!r}")


def _aware(moment: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; they were stored in UTC.
    if moment is not None and moment.tzinfo is None:
        from datetime import timezone

        return moment.replace(tzinfo=timezone.utc)
    return moment


_DUMMY_HASH = generate_password_hash("not a real password, only for timing")
