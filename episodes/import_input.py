"""The bulk import's input: episode histories of commands, their JSON Lines form, and the
error that names what in them is wrong (see :mod:`episodes.importing`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from episodes.errors import EpisodesError
from episodes.values import Actor
from episodes.vocabulary import ActorRole


def episode_id_for(referral_command_id: str) -> UUID:
    """The stream id of the episode a referral with this command id opens (as ``execute``)."""
    return uuid5(NAMESPACE_URL, f"care-episodes:episode:{referral_command_id}")


@dataclass(frozen=True)
class ImportCommand:
    """One command of a history: a name of :data:`episodes.schemas.SCHEMAS`, its data as
    ``execute`` takes it (``episode_id`` may be left out), and who recorded it (``None``: the
    import's own actor)."""

    command: str
    data: Mapping[str, Any]
    actor: Actor | None = None


@dataclass(frozen=True)
class EpisodeHistory:
    """The ordered commands of one episode, the referral first; ``source`` says where it came
    from (``"line 12"``) for error messages."""

    commands: Sequence[ImportCommand]
    source: str | None = None

    def stream_id(self) -> UUID | None:
        """The episode's id, from its referral's command id (None without one)."""
        first = self.commands[0] if self.commands else None
        command_id = first.data.get("command_id") if first and first.command == "refer" else None
        if isinstance(command_id, str) and command_id.strip():
            return episode_id_for(command_id.strip())
        return None


class ImportRejected(EpisodesError):
    """A history of the input breaks a rule or is malformed; its batch was not written.

    ``source`` and ``episode_id`` name the episode, ``index`` the command (1-based, ``None``
    for the history as a whole), ``errors`` maps fields to messages, ``rule`` is the name of
    the rule's exception class (``"ClinicalDateError"``, ``"InvalidCommand"``, ...)."""

    def __init__(self, problem: str, *, source: str | None = None, episode_id: UUID | None = None,
                 index: int | None = None, command: str | None = None,
                 errors: Mapping[str, Any] | None = None, rule: str | None = None):
        self.problem = problem
        self.source = source
        self.episode_id = episode_id
        self.index = index
        self.command = command
        self.errors = dict(errors or {})
        self.rule = rule
        where = [source or "the input"]
        if episode_id is not None:
            where.append(f"episode {episode_id}")
        if index is not None:
            where.append(f"command {index} ({command})" if command else f"command {index}")
        super().__init__(f"{', '.join(where)}: {problem}")

    def __reduce__(self) -> Any:
        # Keyword-only arguments: rebuilt explicitly when unpickled (e.g. from another process).
        return _rebuild, (self.problem, {
            "source": self.source, "episode_id": self.episode_id, "index": self.index,
            "command": self.command, "errors": self.errors, "rule": self.rule})


def _rebuild(problem: str, details: dict[str, Any]) -> ImportRejected:
    return ImportRejected(problem, **details)


def read_json_lines(lines: Iterable[str]) -> Iterator[EpisodeHistory]:
    """Histories from JSON Lines: one episode a line (blank lines are skipped), each
    ``{"commands": [{"command": ..., "data": {...}, "actor": {"id": ..., "role": ...}}, ...]}``
    (``actor`` optional).  A malformed line raises :class:`ImportRejected` naming it."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        source = f"line {number}"
        try:
            record = json.loads(line)
        except ValueError as error:
            raise ImportRejected(f"not valid JSON: {error}", source=source, rule="InputFormat") from None
        yield history_from_json(record, source)


def history_from_json(record: Any, source: str | None = None) -> EpisodeHistory:
    """One history from its JSON form (see :func:`read_json_lines`)."""
    def bad(path: str, message: str, index: int | None = None) -> ImportRejected:
        return ImportRejected(f"{path}: {message}", source=source, index=index,
                              errors={path: [message]}, rule="InputFormat")

    if not isinstance(record, dict) or not isinstance(record.get("commands"), list):
        raise bad("commands", 'each line must be an object with a list of "commands"')
    if set(record) - {"commands"}:
        raise bad(sorted(set(record) - {"commands"})[0], "unknown field")
    commands = []
    for index, item in enumerate(record["commands"], 1):
        path = f"commands[{index}]"
        if not isinstance(item, dict):
            raise bad(path, "must be an object", index)
        unknown = set(item) - {"command", "data", "actor"}
        if unknown:
            raise bad(f"{path}.{sorted(unknown)[0]}", "unknown field", index)
        if not isinstance(item.get("command"), str):
            raise bad(f"{path}.command", "required: the command's name", index)
        if not isinstance(item.get("data", {}), dict):
            raise bad(f"{path}.data", "must be an object", index)
        commands.append(ImportCommand(item["command"], item.get("data", {}),
                                      _actor_from_json(item.get("actor"), path, bad, index)))
    return EpisodeHistory(tuple(commands), source)


def _actor_from_json(value: Any, path: str, bad: Callable[..., ImportRejected],
                     index: int) -> Actor | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("id"), str):
        raise bad(f"{path}.actor", 'must be {"id": ..., "role": ...}', index)
    try:
        return Actor(value["id"], ActorRole(value.get("role")))
    except ValueError:
        roles = ", ".join(r.value for r in ActorRole)
        raise bad(f"{path}.actor", f"needs a non-empty id and a role ({roles})", index) from None
