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
