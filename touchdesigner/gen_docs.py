"""Regenerate the OSC/JSON tables in touchdesigner/README.md from bridge.output.schema.

    python touchdesigner/gen_docs.py           # rewrite the block between the markers
    python touchdesigner/gen_docs.py --check   # exit 1 if the README is out of date (CI)

The block between ``<!-- schema:begin -->`` and ``<!-- schema:end -->`` is exactly
``bridge.output.schema.markdown_tables()``; tests/test_touchdesigner.py checks it.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
BEGIN = "<!-- schema:begin -->"
END = "<!-- schema:end -->"

if str(HERE.parent) not in sys.path:  # run as a script from anywhere in the checkout
    sys.path.insert(0, str(HERE.parent))


def schema_block(text: str) -> str:
    """The text between the markers, without the newlines that frame it."""
    try:
        start = text.index(BEGIN) + len(BEGIN)
        end = text.index(END, start)
    except ValueError:
        raise ValueError(f"README lacks the {BEGIN} ... {END} markers") from None
    return text[start:end].strip("\n")


def render_td_readme(text: str) -> str:
    """``text`` with the block between the markers replaced by the current schema tables."""
    from bridge.output.schema import markdown_tables

    schema_block(text)  # raises if the markers are missing
    start = text.index(BEGIN) + len(BEGIN)
    end = text.index(END, start)
    return text[:start] + "\n" + markdown_tables() + "\n" + text[end:]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    old = README.read_text(encoding="utf-8")
    new = render_td_readme(old)
    if "--check" in argv:
        if new != old:
            print(f"{README} is out of date: run python touchdesigner/gen_docs.py", file=sys.stderr)
            return 1
        return 0
    if new != old:
        README.write_text(new, encoding="utf-8")
        print(f"updated {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
