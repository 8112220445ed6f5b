"""Encryption at rest of event payloads: AES-GCM, with a key from ``$CARE_EPISODES_CIPHER_KEY``.

With a key, every event's payload (its fields and envelope, as JSON) is encrypted by
eventsourcing's ``AESCipher`` (the ``cryptography`` package, AES in GCM mode, a fresh 96-bit
nonce per event) before it reaches the database.  Stream ids, versions, topics and the order
of events stay in clear: see docs/compliance.md (encryption at rest).

A database read without its key, or with another key, fails with :class:`EncryptionKeyError`
saying so, never with a JSON error or with garbage:

* :class:`KeyCheckingMapper` turns a failed decoding into that error (when the key is the cause);
* :func:`check_readable` tries the oldest and the newest stored event when an application
  opens, so a wrong key is noticed before anything is written beside the unreadable events;
* :func:`plaintext` gives the exact bytes the transcoder produced (for the hash chain), or
  the same error.
"""

from __future__ import annotations

import binascii
import json
import os
from base64 import b64decode
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    ApplicationRecorder,
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
)

from episodes.errors import EncryptionKeyError

KEY_VARIABLE = "CARE_EPISODES_CIPHER_KEY"
CIPHER_TOPIC = "eventsourcing.cryptography:AESCipher"  # AES-GCM from the `cryptography` package
KEY_SIZES = (16, 24, 32)  # bytes: AES-128, AES-192, AES-256
GENERATE_HINT = (
    'generate one with: python -c "from episodes.encryption import create_key; '
    'print(create_key())"'
)


def create_key(num_bytes: int = 32) -> str:
    """A new random AES key, base64-encoded (32 bytes: AES-256)."""
    from eventsourcing.cryptography import AESCipher

    return AESCipher.create_key(num_bytes)


def check_key(key: str) -> str:
    """The key without surrounding whitespace, if it is base64 of 16, 24 or 32 bytes."""
    key = key.strip()
    try:
        size = len(b64decode(key, validate=True))
    except (binascii.Error, ValueError):
        raise EncryptionKeyError(
            f"the cipher key (${KEY_VARIABLE}) is not valid base64; {GENERATE_HINT}"
        ) from None
    if size not in KEY_SIZES:
        raise EncryptionKeyError(
            f"the cipher key (${KEY_VARIABLE}) is {size} bytes long; an AES key is 16, 24 or "
            f"32 bytes, base64-encoded; {GENERATE_HINT}"
        )
    return key


def cipher_environment(key: str) -> dict[str, str]:
    """The event store settings that encrypt with ``key``: ``Episodes(url, env=...)``.

    eventsourcing looks up ``CARE_EPISODES_CIPHER_KEY`` before ``CIPHER_KEY`` (it prefixes
    every setting with the application's name), so both are set: an explicit key then wins
    over the process's variable.
    """
    key = check_key(key)
    return {"CIPHER_TOPIC": CIPHER_TOPIC, "CIPHER_KEY": key, KEY_VARIABLE: key}


def environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The cipher settings from ``$CARE_EPISODES_CIPHER_KEY``: none when it is unset or empty."""
    key = (os.environ if environ is None else environ).get(KEY_VARIABLE, "")
    return cipher_environment(key) if key.strip() else {}


# ---------------------------------------------------------------- reading it back


class KeyCheckingMapper(Mapper[UUID]):
    """A mapper whose failure to decode a stored event, when the key is to blame, is an
    :class:`EncryptionKeyError` (a JSON error or a failed tag check otherwise)."""

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        try:
            return super().to_domain_event(stored_event)
        except MapperDeserialisationError as error:
            problem = diagnose(self, stored_event)
            if problem is None:
                raise  # the key is fine: a transcoding or upcasting problem, say it as it is
            raise key_error(stored_event, problem) from error


def plaintext(mapper: Mapper[Any], stored: StoredEvent) -> bytes:
    """The exact bytes the transcoder produced: decrypted and decompressed if need be."""
    state = stored.state
    try:
        if mapper.cipher:
            state = mapper.cipher.decrypt(state)
        if mapper.compressor:
            state = mapper.compressor.decompress(state)
    except Exception as error:
        raise key_error(stored, diagnose(mapper, stored) or str(error)) from error
    if not _is_json_object(state, thorough=False):
        raise key_error(stored, diagnose(mapper, stored) or "it is not a JSON object")
    return state


def check_readable(recorder: ApplicationRecorder, mapper: Mapper[Any]) -> None:
    """Raise :class:`EncryptionKeyError` when the oldest or the newest stored event cannot be
    read with ``mapper``'s key (or lack of one).  Two rows: cheap enough for every start."""
    newest = recorder.max_notification_id()
    if newest is None:
        return  # an empty store: anything goes
    oldest = recorder.select_notifications(start=None, limit=1)
    latest = recorder.select_notifications(start=newest, limit=1)
    for stored in (*oldest, *latest):
        problem = diagnose(mapper, stored)
        if problem is not None:
            raise key_error(stored, problem)


def diagnose(mapper: Mapper[Any], stored: StoredEvent) -> str | None:
    """Why the key (or its absence) cannot read this stored event; None when it can."""
    state = stored.state
    if mapper.cipher is not None:
        try:
            mapper.cipher.decrypt(state)
        except Exception:  # noqa: BLE001 - whatever the cipher raises, this key cannot read it
            if _is_json_object(state, thorough=True):
                return (
                    "it was stored unencrypted, and a key is configured: the database was "
                    f"written without a key (unset ${KEY_VARIABLE} to read it)"
                )
            return (
                "the configured key is not the key it was encrypted with (or the stored bytes "
                "are damaged)"
            )
        return None
    try:
        if mapper.compressor:
            state = mapper.compressor.decompress(state)
    except Exception:  # noqa: BLE001 - not a compressed payload: an encrypted one
        return "it is not readable without a key: it looks encrypted, and no key is configured"
    if not _is_json_object(state, thorough=True):
        return "it is not readable JSON: it looks encrypted, and no key is configured"
    return None


def key_error(stored: StoredEvent, problem: str) -> EncryptionKeyError:
    return EncryptionKeyError(
        f"cannot decrypt the stored events: event {stored.originator_version} of stream "
        f"{stored.originator_id} ({stored.topic}) cannot be read: {problem}. "
        f"Check ${KEY_VARIABLE}: it must hold the key the database was written with."
    )


def _is_json_object(data: bytes, *, thorough: bool) -> bool:
    """Every stored payload is a JSON object; ciphertext begins with a random nonce instead.
    The quick check (first byte, UTF-8) is for every read; the thorough one for diagnosis."""
    if not data.startswith(b"{"):
        return False
    try:
        text = data.decode("utf-8")
        if thorough:
            json.loads(text)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return False
    return True
