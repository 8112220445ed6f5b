"""The audit history read model: who recorded what, when, to which record, and why.

One story runs through most tests: an admin defines and revises a program; a clinician refers
Patient/1001, assesses, admits, records two sessions and a PHQ-9, then amends the first session;
the admin voids the PHQ-9; a second referral (Patient/1002) is marked entered in error.  The clock
moves ten minutes before each command, so every row has its own recorded time.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from uuid import UUID, uuid4

import pytest
from sqlalchemy import event, insert

from episodes import Actor, FixedClock
from projections import ReadModels, tables
from projections.queries.audit import AuditEntry, audit_log
from tests.pathways import admit, attend, complete_intake, define_standard_program, refer


def at(hh: int, mm: int) -> datetime:
    return datetime(2026, 6, 1, hh, mm, tzinfo=timezone.utc)


@dataclass
class Story:
    program_id: UUID
    first: UUID  # Patient/1001's episode
    second: UUID  # Patient/1002's episode, entered in error


def record_story(app, clock: FixedClock, clinician: Actor, admin: Actor) -> Story:
    """Twelve events, recorded at 12:00, 12:10, ... 13:50 UTC on 2026-06-01 (positions 1-12)."""
    def tick() -> None:
        clock.advance(timedelta(minutes=10))

    define_standard_program(app, admin)  # 12:00  pos 1   program v1
    tick()
    app.revise_program(admin, code="iop-adult", name="Adult IOP", target_weeks=10,
                       days_per_week=3, clinics=["north", "south"],
                       reason="Target shortened to 10 weeks")  # 12:10  pos 2   program v2
    tick()
    first = refer(app, clinician, date(2026, 3, 2))  # 12:20  pos 3   episode v1
    tick()
    complete_intake(app, first, clinician, date(2026, 3, 3))  # 12:30  pos 4   v2
    tick()
    admit(app, first, clinician, date(2026, 3, 4))  # 12:40  pos 5   v3
    tick()
    attend(app, first, clinician, date(2026, 3, 5))  # 12:50  pos 6   v4
    tick()
    app.record_outcome(first, clinician, effective_date=date(2026, 3, 9), instrument="PHQ-9",
                       score=14)  # 13:00  pos 7   v5
    tick()
    attend(app, first, clinician, date(2026, 3, 9))  # 13:10  pos 8   v6
    tick()
    app.amend_event(first, clinician, target_version=4, changes={"minutes": 120},
                    reason="Session ended early")  # 13:20  pos 9   v7
    tick()
    app.void_event(first, admin, target_version=5,
                   reason="Score belongs to another patient")  # 13:30  pos 10  v8
    tick()
    second = refer(app, clinician, date(2026, 3, 20), patient_ref="Patient/1002",
                   command_id="ref-1002", correlation_id="import-7")  # 13:40  pos 11  v1
    tick()
    app.mark_entered_in_error(second, admin, reason="Duplicate referral")  # 13:50  pos 12  v2
    program_id = next(iter(ReadModels(app).audit(limit=1))).aggregate_id
    return Story(program_id=program_id, first=first, second=second)


@pytest.fixture
def story(projected, clock, clinician, admin_actor) -> Story:
    return record_story(projected, clock, clinician, admin_actor)


@pytest.fixture
def audit_reads(projected) -> ReadModels:
    return ReadModels(projected)


def positions(rows) -> list[int]:
    return [r.position for r in rows]


# ---------------------------------------------------------------- the rows


def test_every_event_leaves_one_row_in_log_order(audit_reads, story):
    rows = list(audit_reads.audit())
    # Check the twelve commands left twelve rows, in the order they were recorded.
    assert positions(rows) == list(range(1, 13))
    assert [r.event_type for r in rows] == [
        "Defined", "Revised", "ReferralReceived", "IntakeCompleted", "Admitted", "SessionAttended",
        "OutcomeMeasured", "SessionAttended", "EventAmended", "EventVoided", "ReferralReceived",
        "MarkedEnteredInError",
    ]
    assert [r.action for r in rows] == [
        "create", "update", "create", "create", "create", "create", "create", "create", "correct",
        "void", "create", "void",
    ]
    # Check each row carries its own recorded time: 12:00 + 10 min per command, in UTC.
    ten_minutes = timedelta(minutes=10)
    assert [r.recorded_at for r in rows] == [at(12, 0) + ten_minutes * i for i in range(12)]
    assert all(r.recorded_at.utcoffset() == timedelta(0) for r in rows)


def test_a_session_row_says_who_when_what_and_which_clinical_day(audit_reads, story):
    session = list(audit_reads.audit())[5]
    # Check the whole row of the first session (position 6, episode version 4).
    assert session == AuditEntry(
        position=6, recorded_at=at(12, 50), effective_date=date(2026, 3, 5),
        actor_id="clin-ana", actor_role="clinician", action="create", event_type="SessionAttended",
        aggregate="episode", aggregate_id=story.first, version=4, patient_ref="Patient/1001",
        data_category="encounter", reason=None, correlation_id=session.command_id,
        command_id=session.command_id, prior_version=3,
    )
    # Check it is a late entry: 2026-03-05 -> 2026-06-01 is 26 + 30 + 31 + 1 = 88 days.
    assert (session.recorded_at.date() - session.effective_date).days == 88


def test_corrections_point_at_their_target_and_take_its_category(audit_reads, story):
    amended, voided = list(audit_reads.audit(action=["correct", "void"], episode_id=story.first))
    # Check the amendment (v7) points at the session it corrects (v4), not at v6 before it.
    assert (amended.version, amended.prior_version) == (7, 4)
    assert amended.data_category == "encounter"  # the category of the SessionAttended it corrects
    assert amended.reason == "Session ended early"
    # Check the void (v8, by the admin) points at the PHQ-9 (v5), an observation.
    assert (voided.version, voided.prior_version) == (8, 5)
    assert voided.data_category == "observation"
    assert (voided.actor_id, voided.actor_role) == ("adm-bo", "admin")
    # Check a correction is dated the day it was made (its own clinical date defaults to today).
    assert amended.effective_date == date(2026, 6, 1)


def test_other_rows_point_at_the_version_before(audit_reads, story):
    rows = list(audit_reads.audit())
    by_position = {r.position: r for r in rows}
    # Check creations have no prior version and every other non-correction follows version - 1.
    assert by_position[1].prior_version is None  # program defined
    assert by_position[3].prior_version is None  # referral opens the episode
    assert by_position[2].prior_version == 1  # revision v2 follows v1
    assert by_position[8].prior_version == 5  # session v6 follows v5
    # Check entered-in-error (v2 of the second episode) is a void of the whole episode after v1.
    marked = by_position[12]
    assert (marked.action, marked.version, marked.prior_version) == ("void", 2, 1)
    assert marked.data_category == "episode-status"
    assert marked.reason == "Duplicate referral"


def test_patient_ref_is_on_episode_rows_and_absent_on_program_rows(audit_reads, story):
    rows = list(audit_reads.audit())
    # Check the two program rows name no patient and carry no clinical date.
    program_rows = [r for r in rows if r.aggregate == "program"]
    assert [(r.patient_ref, r.effective_date, r.data_category) for r in program_rows] == [
        (None, None, "program"), (None, None, "program"),
    ]
    assert {r.aggregate_id for r in program_rows} == {story.program_id}
    # Check every episode row names its patient: positions 3-10 and 11-12.
    assert [r.patient_ref for r in rows if r.aggregate == "episode"] == ["Patient/1001"] * 8 + [
        "Patient/1002"] * 2


def test_command_and_correlation_ids_are_kept(audit_reads, story):
    referral = next(audit_reads.audit(episode_id=story.second, event_type="ReferralReceived"))
    # Check the client's own ids come back as given.
    assert (referral.command_id, referral.correlation_id) == ("ref-1002", "import-7")


# ---------------------------------------------------------------- filters


def test_filter_by_episode(audit_reads, story):
    # Check the first episode holds positions 3-10 (8 events), the second 11-12.
    assert positions(audit_reads.audit(episode_id=story.first)) == [3, 4, 5, 6, 7, 8, 9, 10]
    assert positions(audit_reads.audit(episode_id=story.second)) == [11, 12]
    assert positions(audit_reads.audit(episode_id=uuid4())) == []


def test_filter_by_actor(audit_reads, story):
    # Check the admin defined and revised the program, voided the PHQ-9, marked the duplicate.
    assert positions(audit_reads.audit(actor_id="adm-bo")) == [1, 2, 10, 12]
    # Check the clinician did the rest: 12 - 4 = 8 rows.
    assert positions(audit_reads.audit(actor_id="clin-ana")) == [3, 4, 5, 6, 7, 8, 9, 11]


def test_filter_by_action(audit_reads, story):
    # Check each action on its own, and "void" covers both a void and entered-in-error.
    assert positions(audit_reads.audit(action="update")) == [2]
    assert positions(audit_reads.audit(action="correct")) == [9]
    assert positions(audit_reads.audit(action="void")) == [10, 12]
    assert positions(audit_reads.audit(action=("correct", "void"))) == [9, 10, 12]
    assert len(list(audit_reads.audit(action="create"))) == 12 - 4  # all but 2, 9, 10, 12


def test_filter_by_event_type_and_patient(audit_reads, story):
    # Check the two sessions, then every referral.
    assert positions(audit_reads.audit(event_type="SessionAttended")) == [6, 8]
    assert positions(audit_reads.audit(event_type=["ReferralReceived", "Revised"])) == [2, 3, 11]
    # Check a patient's rows: all of Patient/1002's.
    assert positions(audit_reads.audit(patient_ref="Patient/1002")) == [11, 12]
    # Check each patient's rows are exactly the rows naming the patient (they are found through
    # the patient's episodes), alone and with another filter; an unknown patient has none.
    everything = list(audit_reads.audit())
    for patient in ("Patient/1001", "Patient/1002"):
        assert positions(audit_reads.audit(patient_ref=patient)) == [
            row.position for row in everything if row.patient_ref == patient]
    assert positions(audit_reads.audit(patient_ref="Patient/1001", action="correct")) == [9]
    assert list(audit_reads.audit(patient_ref="Patient/9999")) == []


def test_time_range_includes_its_start_and_excludes_its_end(audit_reads, story):
    # Check [12:50, 13:20) holds 12:50, 13:00 and 13:10: positions 6, 7, 8 (13:20 is pos 9, out).
    rows = audit_reads.audit(recorded_from=at(12, 50), recorded_to=at(13, 20))
    assert positions(rows) == [6, 7, 8]
    # Check a bound given in another time zone means the same instant: 08:50 EDT = 12:50 UTC.
    edt = timezone(timedelta(hours=-4))
    assert positions(audit_reads.audit(recorded_from=datetime(2026, 6, 1, 8, 50, tzinfo=edt),
                                       recorded_to=at(13, 0))) == [6]
    # Check a date bound is midnight UTC: all twelve rows were recorded on 2026-06-01.
    that_day = audit_reads.audit(recorded_from=date(2026, 6, 1), recorded_to=date(2026, 6, 2))
    assert len(list(that_day)) == 12
    assert positions(audit_reads.audit(recorded_to=date(2026, 6, 1))) == []
    # Check a naive time is refused rather than guessed.
    with pytest.raises(ValueError, match="timezone-aware"):
        audit_reads.audit(recorded_from=datetime(2026, 6, 1, 12, 0))


def test_filters_combine(audit_reads, story, clinician):
    # Check clinician + first episode + from 13:00: the PHQ-9, the second session, the amendment.
    rows = audit_reads.audit(actor_id=clinician.id, episode_id=story.first, recorded_from=at(13, 0))
    assert positions(rows) == [7, 8, 9]


# ---------------------------------------------------------------- paging


def test_pages_follow_the_log_by_position(audit_reads, story):
    # Check 12 rows in pages of 5: 1-5, 6-10, then 11-12 and no next page.
    first = audit_reads.audit_page(limit=5)
    assert (positions(first.rows), first.next_after) == ([1, 2, 3, 4, 5], 5)
    second = audit_reads.audit_page(after_position=first.next_after, limit=5)
    assert (positions(second.rows), second.next_after) == ([6, 7, 8, 9, 10], 10)
    third = audit_reads.audit_page(after_position=second.next_after, limit=5)
    assert (positions(third.rows), third.next_after) == ([11, 12], None)
    # Check a page that ends exactly on the last row says there is nothing after it: 6 + 6 = 12.
    exact = audit_reads.audit_page(after_position=6, limit=6)
    assert (positions(exact.rows), exact.next_after) == ([7, 8, 9, 10, 11, 12], None)


def test_pages_with_a_filter(audit_reads, story):
    # Check the first episode's 8 rows in pages of 3: 3-5, 6-8, 9-10.
    one = audit_reads.audit_page(episode_id=story.first, limit=3)
    two = audit_reads.audit_page(episode_id=story.first, after_position=one.next_after, limit=3)
    three = audit_reads.audit_page(episode_id=story.first, after_position=two.next_after, limit=3)
    assert [positions(p.rows) for p in (one, two, three)] == [[3, 4, 5], [6, 7, 8], [9, 10]]
    assert [p.next_after for p in (one, two, three)] == [5, 8, None]
    with pytest.raises(ValueError):
        audit_reads.audit_page(limit=0)


# ---------------------------------------------------------------- exports


def as_text(entry: AuditEntry) -> dict[str, str]:
    """What a CSV cell should hold, written out here so the test does not trust the exporter."""
    cells = {}
    for name, value in vars(entry).items():
        if value is None:
            cells[name] = ""
        elif isinstance(value, (datetime, date)):
            cells[name] = value.isoformat()
        else:
            cells[name] = str(value)
    return cells


def test_csv_export_reads_back_as_the_rows(audit_reads, story):
    buffer = io.StringIO(newline="")
    written = audit_reads.export_audit(buffer, format="csv")
    parsed = list(csv.DictReader(io.StringIO(buffer.getvalue(), newline="")))
    # Check 12 rows written, a header naming the 16 columns, and each line equal to its row.
    assert written == 12
    assert list(parsed[0]) == [
        "position", "recorded_at", "effective_date", "actor_id", "actor_role", "action",
        "event_type", "aggregate", "aggregate_id", "version", "patient_ref", "data_category",
        "reason", "correlation_id", "command_id", "prior_version",
    ]
    assert parsed == [as_text(r) for r in audit_reads.audit()]
    # Check the void's line by hand: UTC time with its offset, an ISO date, the pointer to v5.
    void = parsed[9]
    assert (void["position"], void["recorded_at"], void["effective_date"]) == (
        "10", "2026-06-01T13:30:00+00:00", "2026-06-01")
    assert (void["action"], void["prior_version"], void["data_category"]) == (
        "void", "5", "observation")
    assert (void["aggregate_id"], void["reason"]) == (
        str(story.first), "Score belongs to another patient")
    # Check the program's first row leaves patient, clinical date, reason and prior version empty.
    empty = ("patient_ref", "effective_date", "reason", "prior_version")
    assert [parsed[0][k] for k in empty] == [""] * 4


def test_jsonl_export_reads_back_one_object_per_line(audit_reads, story):
    buffer = io.StringIO()
    # Check the filters pass through: the first episode's corrections are positions 9 and 10.
    written = audit_reads.export_audit(buffer, format="jsonl", episode_id=story.first,
                                       action=["correct", "void"])
    lines = buffer.getvalue().splitlines()
    assert written == len(lines) == 2
    amended, voided = (json.loads(line) for line in lines)
    assert amended == {
        "position": 9, "recorded_at": "2026-06-01T13:20:00+00:00", "effective_date": "2026-06-01",
        "actor_id": "clin-ana", "actor_role": "clinician", "action": "correct",
        "event_type": "EventAmended", "aggregate": "episode", "aggregate_id": str(story.first),
        "version": 7, "patient_ref": "Patient/1001", "data_category": "encounter",
        "reason": "Session ended early", "correlation_id": amended["command_id"],
        "command_id": amended["command_id"], "prior_version": 4,
    }
    assert (voided["position"], voided["prior_version"], voided["actor_id"]) == (10, 5, "adm-bo")
    # Check an unknown format is refused before anything is written.
    with pytest.raises(ValueError, match="unknown export format"):
        audit_reads.export_audit(io.StringIO(), format="xml")


def test_exports_on_each_backend_give_utc_times(any_projected, clock, clinician, admin_actor):
    story = record_story(any_projected, clock, clinician, admin_actor)
    reads = ReadModels(any_projected)
    csv_buffer, jsonl_buffer = io.StringIO(newline=""), io.StringIO()
    # Check both formats write all 12 rows, and CSV reads back as the rows.
    assert reads.export_audit(csv_buffer, format="csv") == 12
    assert reads.export_audit(jsonl_buffer, format="jsonl", episode_id=story.second) == 2
    parsed = list(csv.DictReader(io.StringIO(csv_buffer.getvalue(), newline="")))
    assert parsed == [as_text(r) for r in reads.audit()]
    assert [p["recorded_at"] for p in parsed[:2]] == [
        "2026-06-01T12:00:00+00:00", "2026-06-01T12:10:00+00:00"]
    second = [json.loads(line) for line in jsonl_buffer.getvalue().splitlines()]
    assert [(r["position"], r["patient_ref"], r["action"]) for r in second] == [
        (11, "Patient/1002", "create"), (12, "Patient/1002", "void")]
    # Check a session in another time zone still gets UTC back (PostgreSQL answers in its zone).
    with reads.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SET TIME ZONE 'America/New_York'")
        rows = list(audit_log(connection, recorded_from=at(13, 40)))
    assert [(r.position, r.recorded_at) for r in rows] == [(11, at(13, 40)), (12, at(13, 50))]
    assert all(r.recorded_at.utcoffset() == timedelta(0) for r in rows)


# ---------------------------------------------------------------- streaming


class CountingStream(io.StringIO):
    """A text stream that counts its writes, to show an export is written as it is read."""

    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def audit_rows(count: int) -> list[dict]:
    """Rows as the projector writes them, for volume: one episode's sessions, a minute apart."""
    episode_id, start = uuid4(), at(0, 0)
    return [{
        "position": n, "recorded_at": start + timedelta(minutes=n),
        "effective_date": date(2026, 3, 2),
        "actor_id": "clin-ana", "actor_role": "clinician", "action": "create",
        "event_type": "SessionAttended", "aggregate": "episode", "aggregate_id": episode_id,
        "version": n, "patient_ref": "Patient/1001", "data_category": "encounter", "reason": None,
        "correlation_id": f"c{n}", "command_id": f"c{n}", "prior_version": n - 1 or None,
    } for n in range(1, count + 1)]


def test_an_export_streams_its_rows(projected, audit_reads, monkeypatch):
    with projected.recorder.datastore.engine.begin() as connection:
        connection.execute(insert(tables.audit), audit_rows(2_000))
    # Loading the whole result at once is what streaming avoids: make it fail here.
    from sqlalchemy.engine import Result

    def loading_everything(self, *args, **kwargs):
        raise AssertionError("the export loaded every row at once")

    monkeypatch.setattr(Result, "all", loading_everything)
    monkeypatch.setattr(Result, "fetchall", loading_everything)
    # And note how each read of rm_audit asks the driver to fetch (yield_per: rows per fetch).
    fetch_sizes = []

    def note_fetch_size(conn, cursor, statement, parameters, context, executemany):
        if "FROM rm_audit" in statement:
            fetch_sizes.append(context.execution_options.get("yield_per"))

    event.listen(projected.recorder.datastore.engine, "before_cursor_execute", note_fetch_size)
    rows = audit_reads.audit(yield_per=7)
    # Check the rows come lazily from an iterator, the first one first.
    assert not isinstance(rows, (list, tuple))
    assert next(rows).position == 1
    rows.close()
    for fmt, extra_lines in (("csv", 1), ("jsonl", 0)):  # CSV has a header line
        stream = CountingStream()
        written = audit_reads.export_audit(stream, format=fmt, yield_per=7)
        lines = stream.getvalue().splitlines()
        # Check 2,000 rows written, one write per line (the file grows as rows arrive).
        assert written == 2_000
        assert len(lines) == stream.writes == 2_000 + extra_lines
        # Check the first and last positions: 1 and 2,000, in log order.
        first, last = lines[extra_lines], lines[-1]
        if fmt == "csv":
            assert (first.split(",")[0], last.split(",")[0]) == ("1", "2000")
        else:
            assert (json.loads(first)["position"], json.loads(last)["position"]) == (1, 2_000)
    # Check every read streamed 7 rows at a time (the iterator, then the two exports).
    assert fetch_sizes == [7, 7, 7]
    # Check a time window over the bulk: minutes 1000-1099 after midnight are positions 1000-1099.
    window = list(audit_reads.audit(recorded_from=at(0, 0) + timedelta(minutes=1_000),
                                    recorded_to=at(0, 0) + timedelta(minutes=1_100)))
    assert (len(window), window[0].position, window[-1].position) == (100, 1_000, 1_099)
