"""The verification page: reviewers and admins check the record and take checkpoints."""

from __future__ import annotations

import json
from datetime import date

import pytest
from sqlalchemy import text

from tests.panel import csrf_token, login
from tests.pathways import admitted_episode


@pytest.fixture
def recorded(panel, clinician):
    return admitted_episode(panel.extensions["care_episodes"].episodes, clinician, date(2026, 3, 2))


def verify_now(client):
    return client.post("/audit/verification/", data={"csrf_token": csrf_token(client, "/audit/verification/")})


@pytest.mark.parametrize("role", ["admin", "reviewer"])
def test_an_intact_record_verifies(client, recorded, role):
    login(client, role)
    response = verify_now(client)
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    # 1 program + referral, intake, admission = 4 events in 2 streams; the login is in the access log.
    assert "intact: 2 streams, 4 events, 1 access entries and 0 checkpoints verified" in page


def test_a_broken_record_is_named(client, panel, recorded):
    engine = panel.extensions["care_episodes"].episodes.recorder.datastore.engine
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM care_episodes_events WHERE originator_version = 2"))
    login(client, "reviewer")
    response = verify_now(client)
    assert response.status_code == 409
    assert f"BROKEN: stream {recorded} version 2: deleted" in response.get_data(as_text=True)


def test_clinicians_cannot_verify(client, recorded):
    login(client, "clinician")
    assert client.get("/audit/verification/").status_code == 403
    assert client.post("/audit/verification/checkpoint", data={"csrf_token": csrf_token(client, "/")}).status_code == 403


def test_take_and_download_a_checkpoint(client, panel, recorded):
    login(client, "reviewer")
    taken = client.post("/audit/verification/checkpoint",
                        data={"csrf_token": csrf_token(client, "/audit/verification/")})
    assert taken.status_code == 303
    download = client.get("/audit/verification/checkpoint.json")
    document = json.loads(download.get_data(as_text=True))
    assert (document["streams"], document["events"]) == (2, 4)
    assert download.headers["Content-Disposition"] == f"attachment; filename=checkpoint-{document['id']}.json"
    entries = list(panel.extensions["care_episodes"].access.entries(action="export"))
    assert [e.actor_id for e in entries] == ["reviewer"]
