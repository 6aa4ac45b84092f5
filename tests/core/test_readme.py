"""The README's lake reference is the schemas' own description, so it cannot drift from the code."""

from pathlib import Path

from triage.lake.schemas import reference_markdown

README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- lake-reference:start -->", "<!-- lake-reference:end -->"


def test_readme_lake_reference_matches_the_schemas():
    text = README.read_text(encoding="utf-8")
    documented = text[text.index(START) + len(START) : text.index(END)].strip()
    assert documented == reference_markdown().strip(), (
        "README.md's lake reference is stale: regenerate it with "
        "`python -c 'from triage.lake.schemas import reference_markdown; print(reference_markdown())'`"
    )


def _section(text: str, heading: str) -> str:
    """From ``heading`` to the next heading of any level."""
    start = text.index(heading) + len(heading)
    return text[start:].split("\n#", 1)[0]


def test_readme_configuration_tables_name_every_setting():
    from adapters.freshdesk.config import FreshdeskConfig
    from triage.settings import FieldRule, ModelSettings, PipelineSettings

    text = README.read_text(encoding="utf-8")
    tables = {
        "### `ticket_system`": FreshdeskConfig,
        "### `fields.<name>`": FieldRule,
        "### `model`": ModelSettings,
        "### `pipeline`": PipelineSettings,
    }
    for heading, model in tables.items():
        section = _section(text, heading)
        missing = [key for key in model.model_fields if f"`{key}`" not in section]
        assert not missing, f"README.md's {heading} table lacks {missing}"
