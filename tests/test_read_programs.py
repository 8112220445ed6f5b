"""Programs from the read models (rm_programs), as the panel lists them on most pages."""

from __future__ import annotations

from episodes import Actor, ActorRole
from episodes.demo import PROGRAMS
from projections import ReadModels


def test_the_read_models_list_the_programs_as_the_store_does(any_projected):
    admin = Actor("adm-1", ActorRole.ADMIN)
    reads = ReadModels(any_projected)
    assert reads.programs() == []
    for program in PROGRAMS:
        any_projected.define_program(admin, **program)
    # A revision is listed as its latest definition, as Episodes.programs lists it.
    any_projected.revise_program(admin, **{**PROGRAMS[0], "target_weeks": 7},
                                 reason="a week longer")
    listed = reads.programs()
    assert listed == any_projected.programs()
    assert [p.code for p in listed] == sorted(p["code"] for p in PROGRAMS)
    assert listed[0].target_weeks == 7 and listed[0].clinics == ("north", "south", "east", "west")
