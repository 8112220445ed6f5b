"""The schema fields' shortcuts (``episodes.fields``) give exactly what marshmallow's own path
gives: the same typed values, or the same error messages, for every command's schema, on the
demo's commands with some of their fields replaced by generated values of every kind."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any
from unittest import mock
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import Schema, ValidationError, fields

from benchmarks.workload import histories
from episodes import fields as shortcut_fields
from episodes.schemas import SCHEMAS, DefineProgramSchema, DiagnosisSchema
from episodes.values import CareTeamMember, Diagnosis
from episodes.vocabulary import DiagnosisCategory, LevelOfCare, ServiceFormat, SessionKind


@contextmanager
def marshmallows_own_path() -> Iterator[None]:
    """Every shortcut declines: each field goes through marshmallow's ``Field.deserialize``."""
    shortcut = shortcut_fields.Shortcut

    def stock(self, value, attr=None, data=None, **kwargs):
        return super(shortcut, self).deserialize(value, attr, data, **kwargs)

    with mock.patch.object(shortcut, "deserialize", stock), \
            mock.patch.object(shortcut, "checked", lambda self, value, kwargs: shortcut_fields.STOCK):
        yield


def outcome(schema: Schema, data: Any, **kwargs: Any) -> tuple[str, Any]:
    try:
        loaded = schema.load(data, **kwargs)
    except ValidationError as invalid:
        return "invalid", invalid.messages
    except Exception as error:  # noqa: BLE001 - whatever it is, both paths must raise it
        return "raised", (type(error), str(error))
    return "loaded", {name: (type(value), value) for name, value in loaded.items()}


def both_ways(schema: Schema, data: Any, **kwargs: Any) -> tuple[tuple[str, Any], tuple[str, Any]]:
    fast = outcome(schema, data, **kwargs)
    with marshmallows_own_path():
        stock = outcome(schema, data, **kwargs)
    return fast, stock


DEMO_COMMANDS = [(c.command, dict(c.data)) for h in histories(40, seed=3) for c in h.commands]
SCHEMA_FOR = {command: schema_class() for command, schema_class in SCHEMAS.items()}


def about_an_episode(command: str, data: dict[str, Any]) -> dict[str, Any]:
    """The command's input as the application's callers give it (with its episode's id)."""
    return dict(data, episode_id=UUID(int=7)) if "episode_id" in SCHEMA_FOR[command].fields else dict(data)


texts = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", " ", "  group  ", "x" * 201, "x" * 2001, "F33.1", "clin-1", "2.1", " 2.5 ",
                     "asam-3:2.1", "in-person", "group", "mental-health", "60", " 60 ", "-1", "1.5",
                     "2026-05-01", "2026-13-01", "ea6d2d6e-7f51-4a58-9a3c-2f1e4f0b9c11", "1", "7"]),
)
scalars = st.one_of(
    texts, st.integers(-3, 2000), st.booleans(), st.floats(allow_nan=False), st.none(),
    st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 1, 1)),
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)),
    st.uuids(), st.sampled_from([SessionKind.GROUP, ServiceFormat.VIRTUAL, DiagnosisCategory.SUBSTANCE_USE,
                                 LevelOfCare("2.1"), LevelOfCare("2.5")]),
)
diagnosis_items = st.one_of(
    st.fixed_dictionaries({"code": texts, "category": st.sampled_from(["mental-health", "substance-use", "x"])},
                          optional={"display": texts, "system": texts, "extra": scalars}),
    st.builds(Diagnosis, code=st.sampled_from(["F33.1", "F10.20"]),
              category=st.sampled_from(list(DiagnosisCategory))),
    scalars,
)
ratings = st.dictionaries(st.one_of(st.sampled_from(["1", "2", "3", "4", "5", "6"]), scalars),
                          st.one_of(st.integers(-1, 5), scalars), max_size=7)
values = st.one_of(
    scalars,
    st.lists(diagnosis_items, max_size=3),
    st.tuples(diagnosis_items),
    ratings,
    st.lists(st.fixed_dictionaries({"id": texts, "role": texts}), max_size=2),
    st.lists(st.builds(CareTeamMember, id=st.just("clin-1"), role=st.just("therapist")), max_size=2),
    st.lists(texts, max_size=3),
)


@st.composite
def commands(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A demo command with some of its fields (or others of its schema) given other values."""
    command, data = draw(st.sampled_from(DEMO_COMMANDS))
    data = about_an_episode(command, data)
    names = sorted(set(SCHEMA_FOR[command].fields) | {"unknown_field"})
    for name in draw(st.lists(st.sampled_from(names), max_size=3, unique=True)):
        if draw(st.booleans()) and name in data:
            del data[name]
        else:
            data[name] = draw(values)
    return command, data


@settings(max_examples=400, deadline=None)
@given(commands())
def test_every_command_loads_as_marshmallows_own_path_loads_it(command_and_data):
    command, data = command_and_data
    fast, stock = both_ways(SCHEMA_FOR[command], data)
    assert fast == stock


@settings(max_examples=150, deadline=None)
@given(commands())
def test_partial_loads_as_an_amendment_validates_its_changes(command_and_data):
    command, data = command_and_data
    data.pop("episode_id", None)
    fast, stock = both_ways(SCHEMA_FOR[command], data, partial=True)
    assert fast == stock


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(DefineProgramSchema().fields)), values, max_size=5),
       st.sampled_from(["iop-x", "Bad Code", ""]))
def test_a_program_definition_loads_as_marshmallows_own_path_loads_it(data, code):
    data.setdefault("code", code)
    data.setdefault("name", "An IOP")
    fast, stock = both_ways(DefineProgramSchema(), data)
    assert fast == stock


def test_every_demo_command_loads_through_the_shortcuts_alone():
    """A demo command, loaded a second time, never reaches marshmallow's ``Field.deserialize``
    for a field of this module (the first load of a diagnosis goes through its nested schema)."""
    reached: list[str] = []
    stock_deserialize = fields.Field.deserialize

    def counted(self, value, attr=None, data=None, **kwargs):
        if isinstance(self, shortcut_fields.Shortcut):
            reached.append(f"{type(self).__name__} {attr}={value!r}")
        return stock_deserialize(self, value, attr, data, **kwargs)

    for command, data in DEMO_COMMANDS:
        SCHEMA_FOR[command].load(about_an_episode(command, data))
    with mock.patch.object(fields.Field, "deserialize", counted):
        for command, data in DEMO_COMMANDS:
            assert outcome(SCHEMA_FOR[command], about_an_episode(command, data))[0] == "loaded"
    assert reached == []


def test_a_remembered_diagnosis_is_given_back_as_loaded_and_an_invalid_one_is_refused_as_ever():
    schema = SCHEMA_FOR["complete_intake"]
    intake = next(about_an_episode(command, data) for command, data in DEMO_COMMANDS
                  if command == "complete_intake")
    first = schema.load(intake)["diagnoses"]
    again = schema.load(dict(intake, diagnoses=[dict(d) for d in intake["diagnoses"]]))["diagnoses"]
    assert again == first and all(type(d) is Diagnosis for d in again)
    coded = [Diagnosis(d.code, d.category, display="Major depressive disorder") for d in first]
    as_objects = schema.load(dict(intake, diagnoses=coded))["diagnoses"]
    assert as_objects == tuple(coded)
    bad = dict(intake, diagnoses=[intake["diagnoses"][0], {"code": "F33.1", "category": "neither"}])
    fast, stock = both_ways(schema, bad)
    assert fast == stock and fast[0] == "invalid" and "1" in str(fast[1]["diagnoses"])


def test_memories_stop_growing_at_their_bound(monkeypatch):
    monkeypatch.setattr(shortcut_fields, "MEMO_ENTRIES", 3)
    schema = DiagnosisSchema()
    assert schema.load({"code": "F33.1", "category": "mental-health"})["code"] == "F33.1"
    field = shortcut_fields.ObjectList(DiagnosisSchema, Diagnosis)  # the schemas' own share one memory
    for n in range(10):
        loaded = field.deserialize([{"code": f"F3{n}", "category": "mental-health"}])
        assert loaded[0].code == f"F3{n}"
    assert len(field.loaded) == 3
    level = shortcut_fields.LevelOfCareField()
    for text in ["2.1", " 2.1", "2.1 ", "2.5", "asam-3:2.1"]:
        assert level.deserialize(text).code == text.strip().rpartition(":")[2]
    assert len(level.known) == 3


@pytest.mark.parametrize("value", ["2.1", " 2.1 ", "asam-3:2.5", LevelOfCare("3.1"), "9.9", "", 2.1, None])
def test_a_level_of_care_loads_as_marshmallows_own_path_loads_it(value):
    schema = SCHEMA_FOR["refer"]
    data = {"patient_ref": "Patient/1", "effective_date": "2026-05-01", "source": "gp",
            "direction": "step-up", "requested_level": value}
    fast, stock = both_ways(schema, data)
    assert fast == stock


TRICKY = [
    "", "   ", " group ", "group", "GROUP", "in-person", " virtual", "mental-health", "x" * 65, "x" * 201,
    " 60 ", "60", "0", "-1", "1.0", "2.1", "asam-3:2.1", "9.9", "2026-05-01", " 2026-05-01", "2026-02-30",
    "ea6d2d6e-7f51-4a58-9a3c-2f1e4f0b9c11", "not-a-uuid", 0, 1, 4, 5, 60, 721, -1, True, False, 1.0, 2.5,
    None, date(2026, 5, 1), datetime(2026, 5, 1, 9, 30), UUID(int=9), SessionKind.GROUP, LevelOfCare("2.5"),
    [], [{"code": "F33.1", "category": "mental-health"}], [{"code": " F33.1 ", "category": "mental-health"}],
    [{"code": "F33.1", "category": "mental"}], [{"code": "F33.1"}], ["F33.1"], ({"code": "F1", "category": "substance-use"},),
    [{"id": "clin-1", "role": "therapist"}], [{"id": "", "role": "therapist"}],
    {str(d): 2 for d in range(1, 7)}, {**{str(d): 2 for d in range(1, 6)}, "7": 2},
    {**{str(d): 2 for d in range(1, 6)}, 6: 2}, {**{str(d): 2 for d in range(1, 6)}, "6": 5},
    {**{str(d): 2 for d in range(1, 6)}, "6": "3"}, {**{str(d): 2 for d in range(1, 6)}, "6": True},
    {str(d): 2 for d in range(1, 6)}, {"field": "value"},
]


@pytest.mark.parametrize("command", sorted(SCHEMA_FOR))
def test_every_field_of_every_command_takes_tricky_values_as_marshmallows_own_path_does(command):
    data = next(about_an_episode(c, d) for c, d in DEMO_COMMANDS + [(command, {})] if c == command)
    compared = 0
    for name in SCHEMA_FOR[command].fields:
        for value in TRICKY:
            given = dict(data, **{name: value})
            fast, stock = both_ways(SCHEMA_FOR[command], given)
            assert fast == stock, (name, value)
            compared += 1
    assert compared == len(SCHEMA_FOR[command].fields) * len(TRICKY)


@pytest.mark.parametrize("narrowed", [
    {"exclude": ("diagnoses.display",)},
    {"only": ("effective_date", "episode_id", "clinician", "asam_ratings", "recommended_level",
              "diagnoses.code", "diagnoses.category")},
    {"dump_only": ("diagnoses.display",)},
])
def test_a_remembered_diagnosis_is_not_given_to_a_schema_that_loads_other_fields(narrowed):
    """The memory is shared by every instance of the schema: an instance whose nested schema
    loads other fields gets marshmallow's own answer, not the one remembered for the plain one."""
    intake = next(about_an_episode(command, data) for command, data in DEMO_COMMANDS
                  if command == "complete_intake")
    intake["diagnoses"] = [{"code": "F33.1", "category": "mental-health", "display": "Major depression"}]
    plain = SCHEMAS["complete_intake"]()
    assert outcome(plain, intake)[0] == "loaded"  # remembered
    narrow = SCHEMAS["complete_intake"](**narrowed)
    fast, stock = both_ways(narrow, intake)
    assert fast == stock and fast[0] == "invalid"
    assert fast[1]["diagnoses"] == {0: {"display": ["Unknown field."]}}
    assert outcome(plain, intake)[0] == "loaded"  # and the plain one still loads it
