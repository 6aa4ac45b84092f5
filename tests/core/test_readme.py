"""The docs' lake reference is the schemas' own description, so it cannot drift from the code, and the
configuration reference names every setting."""

from pathlib import Path

from triage.lake.schemas import reference_markdown

DOCS = Path(__file__).resolve().parents[2] / "docs"
LAKE, OPERATORS = DOCS / "lake.md", DOCS / "operators.md"
START, END = "<!-- lake-reference:start -->", "<!-- lake-reference:end -->"


def test_docs_lake_reference_matches_the_schemas():
    text = LAKE.read_text(encoding="utf-8")
    documented = text[text.index(START) + len(START) : text.index(END)].strip()
    assert documented == reference_markdown().strip(), (
        "docs/lake.md's lake reference is stale: replace the lines between its markers with the output of "
        "`python -c 'from triage.lake.schemas import reference_markdown; print(reference_markdown())'`"
    )


def _section(text: str, heading: str) -> str:
    """From ``heading`` to the next heading of any level."""
    start = text.index(heading) + len(heading)
    return text[start:].split("\n#", 1)[0]


def test_docs_configuration_tables_name_every_setting():
    from triage.adapters.freshdesk.config import FreshdeskConfig
    from triage.settings import FieldRule, ModelSettings, PipelineSettings

    text = OPERATORS.read_text(encoding="utf-8")
    tables = {
        "### `ticket_system`": FreshdeskConfig,
        "### `fields.<name>`": FieldRule,
        "### `model`": ModelSettings,
        "### `pipeline`": PipelineSettings,
    }
    for heading, model in tables.items():
        section = _section(text, heading)
        missing = [key for key in model.model_fields if f"`{key}`" not in section]
        assert not missing, f"docs/operators.md's {heading} table lacks {missing}"
