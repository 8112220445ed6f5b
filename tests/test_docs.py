"""The documentation is checked like code.

``docs/events.md`` carries a part generated from the pathway and the event classes; the
python examples of ``docs/library.md``, ``docs/projections.md`` and ``README.md`` run, top to
bottom, as one script per document; every public name of ``episodes`` is documented somewhere;
and ``docs/projections.md`` lists exactly the read-model columns that hold personal data.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import episodes
from episodes import Episodes, catalogue
from episodes.events import ALL_EVENTS
from episodes.pathway import STEPS
from projections import tables

ROOT = Path(__file__).resolve().parent.parent
EVENTS_DOC = ROOT / "docs" / "events.md"
LIBRARY_DOC = ROOT / "docs" / "library.md"
PROJECTIONS_DOC = ROOT / "docs" / "projections.md"
COMPLIANCE_DOC = ROOT / "docs" / "compliance.md"
README = ROOT / "README.md"

# A fenced block: ```python (run) or ```python no-run (shown only), up to the closing fence.
FENCE = re.compile(r"^```python(?P<info>[^\n]*)\n(?P<code>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """The runnable python blocks of a markdown file, with the line each block's code starts on."""
    text = path.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        if "no-run" in match.group("info").split():
            continue
        first_line = text.count("\n", 0, match.start("code")) + 1
        blocks.append((first_line, match.group("code")))
    return blocks


def mentioned(name: str, text: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", text) is not None


# ---------------------------------------------------------------- the generated event catalogue


def test_the_generated_part_of_events_md_matches_the_code():
    text = EVENTS_DOC.read_text(encoding="utf-8")
    # Check the file holds exactly what the catalogue renders from the code today.
    assert catalogue.generated_part(text) == catalogue.render(), (
        "docs/events.md is out of date with the pathway or the event classes; "
        "run `python -m episodes.catalogue --write docs/events.md` and commit the result"
    )


def test_events_md_names_every_event_class_and_every_pathway_command():
    text = EVENTS_DOC.read_text(encoding="utf-8")
    missing_events = [cls.__name__ for cls in ALL_EVENTS if not mentioned(cls.__name__, text)]
    missing_commands = [step.command for step in STEPS if not mentioned(step.command, text)]
    # Check nothing the pathway can record or accept is left out of the catalogue.
    assert missing_events == []
    assert missing_commands == []
    # Check each event has a section of its own, in the order of ALL_EVENTS.
    headings = re.findall(r"^### (\w+)$", catalogue.generated_part(text), re.MULTILINE)
    event_headings = [h for h in headings if h in {cls.__name__ for cls in ALL_EVENTS}]
    assert event_headings == [cls.__name__ for cls in ALL_EVENTS]


def test_the_catalogue_lists_an_events_own_fields_and_leaves_the_common_ones_out():
    section = catalogue.render().split("### Discharged\n")[1].split("\n### ")[0]
    # Check the discharge lists its four own fields, the optional ones with their default.
    assert "| `discharge_type` | `DischargeType` | yes |" in section
    assert "| `follow_up_date` | `date \\| None` | no (default `None`) |" in section
    assert "`aftercare_plan`" in section and "`referred_to`" in section
    # Check the common and store fields are not repeated per event.
    for common in ("effective_date", "envelope", "originator_id", "timestamp"):
        assert f"| `{common}` |" not in section
    # Check the row of the transition table for the discharge.
    assert (
        "| `discharge` | `Discharged` | `active`, `onhold` | `finished` | yes |" in catalogue.render()
    )


def test_write_rewrites_only_the_generated_part(tmp_path):
    stale = tmp_path / "events.md"
    stale.write_text(
        "# Intro written by hand\n\n<!-- generated:begin -->\nold table\n<!-- generated:end -->\n"
        "Footer written by hand\n",
        encoding="utf-8",
    )
    completed = subprocess.run(
        [sys.executable, "-m", "episodes.catalogue", "--write", str(stale)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    text = stale.read_text(encoding="utf-8")
    # Check the hand-written text around the markers survives and the stale table is gone.
    assert text.startswith("# Intro written by hand\n\n<!-- generated:begin -->\n")
    assert text.endswith("<!-- generated:end -->\nFooter written by hand\n")
    assert "old table" not in text
    assert catalogue.generated_part(text) == catalogue.render()


def test_write_refuses_a_file_without_markers(tmp_path):
    plain = tmp_path / "plain.md"
    plain.write_text("# No markers here\n", encoding="utf-8")
    # Check the command fails and leaves the file alone.
    assert catalogue.main(["--write", str(plain)]) == 1
    assert plain.read_text(encoding="utf-8") == "# No markers here\n"


# ---------------------------------------------------------------- the examples run


@pytest.mark.parametrize(
    "document", [LIBRARY_DOC, PROJECTIONS_DOC, COMPLIANCE_DOC, README], ids=lambda p: p.name
)
def test_the_python_examples_run_as_one_script(document: Path, tmp_path, monkeypatch):
    blocks = python_blocks(document)
    if document == README and not blocks:
        pytest.skip("README.md has no python blocks")
    # Check the guide has examples at all (a broken fence would silently run nothing).
    assert blocks, f"{document.name} has no ```python blocks"
    # Relative SQLite paths in the examples land in the temporary directory.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CARE_EPISODES_DATABASE_URL", raising=False)
    namespace: dict[str, object] = {"__name__": "__main__"}
    try:
        for first_line, code in blocks:
            # Pad with blank lines so a traceback points at the line in the markdown file.
            compiled = compile("\n" * (first_line - 1) + code, str(document), "exec")
            exec(compiled, namespace)  # noqa: S102 - running our own documentation
    finally:
        for value in namespace.values():
            if isinstance(value, Episodes):
                value.close()
    # Check the examples wrote to the temporary directory, not the working tree.
    assert list(tmp_path.glob("*.db")), "the examples opened no SQLite file in the temp directory"


# ---------------------------------------------------------------- the public API is documented


def test_every_public_name_is_documented():
    text = LIBRARY_DOC.read_text(encoding="utf-8") + EVENTS_DOC.read_text(encoding="utf-8")
    undocumented = [name for name in episodes.__all__ if not mentioned(name, text)]
    # Check every name `from episodes import ...` offers appears in docs/library.md or docs/events.md.
    assert undocumented == [], f"not mentioned in docs/library.md or docs/events.md: {undocumented}"


# ---------------------------------------------------------------- personal data in the read models


def documented_personal_columns(text: str) -> set[tuple[str, str]]:
    """(table, column) of each row of the table under the "## Personal data" heading."""
    section = text.split("\n## Personal data\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| `(\w+)` \|", section, re.MULTILINE)
    return set(rows)


def test_projections_md_lists_exactly_the_columns_marked_personal():
    marked = {
        (table.name, column.name)
        for table in tables.metadata.sorted_tables
        for column in table.columns
        if column.info.get("personal")
    }
    documented = documented_personal_columns(PROJECTIONS_DOC.read_text(encoding="utf-8"))
    # Check the code marks some columns (a renamed marker would make this test pass vacuously).
    assert ("rm_episodes", "patient_ref") in marked
    # Check the table in the document and the markers in projections/tables.py agree, both ways.
    assert documented - marked == set(), f"listed but not marked personal: {documented - marked}"
    assert marked - documented == set(), f"marked personal but not listed: {marked - documented}"
