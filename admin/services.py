"""What the panel's views use: the library's two halves, the users and the access log."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from eventsourcing.persistence import Mapper
from flask import current_app, request
from flask_login import current_user

from admin.users import UserStore
from episodes.access import AccessLog
from projections import ProjectedEpisodes, ReadModels


@dataclass
class Services:
    episodes: ProjectedEpisodes  # commands; read models updated in the same transaction
    reads: ReadModels
    users: UserStore
    access: AccessLog
    # Decodes stored events to the same events as episodes.mapper, as fast as it can (an
    # episode page decodes its whole history): projections.decoding.fast_mapper, built once;
    # the application's own mapper unless a TRANSCODER_TOPIC configures another JSON transcoder.
    history_mapper: Mapper[UUID]

    def close(self) -> None:
        self.episodes.close()


def services() -> Services:
    return current_app.extensions["care_episodes"]


def record_access(action: str, *, episode_id: UUID | None = None, patient_ref: str | None = None,
                  detail: str | None = None, outcome: str = "success",
                  actor_id: str | None = None, actor_role: str | None = None) -> None:
    """Put a read, an export or a login in the access log, with who and from where."""
    user = current_user if current_user and current_user.is_authenticated else None
    services().access.record(
        actor_id=actor_id or (user.username if user else "anonymous"),
        actor_role=actor_role or (user.role.value if user else "none"),
        action=action, outcome=outcome, episode_id=episode_id, patient_ref=patient_ref,
        detail=detail or f"{request.method} {request.path}",
        client_address=request.remote_addr,
        correlation_id=request.headers.get("X-Request-Id"),
    )
