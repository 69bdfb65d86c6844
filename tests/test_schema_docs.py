"""The README's wire tables are generated from the schema module and must agree with it."""

from pathlib import Path

from bridge.output.docs import render

ROOT = Path(__file__).resolve().parents[1]


def test_readme_tables_match_schema():
    for p in (ROOT / "README.md", ROOT / "touchdesigner" / "README.md"):
        text = p.read_text(encoding="utf-8")
        assert render(text) == text, f"{p} is out of date: run python -m bridge.output.docs"
