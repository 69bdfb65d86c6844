"""Keep the Markdown schema tables in README.md (and touchdesigner/README.md) equal to the schema module.

    python -m bridge.output.docs          # rewrite the blocks between <!-- schema:begin --> and <!-- schema:end -->
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from bridge.output.schema import markdown_tables

BEGIN, END = "<!-- schema:begin -->", "<!-- schema:end -->"


def render(text: str) -> str:
    pat = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    return pat.sub(lambda _m: f"{BEGIN}\n{markdown_tables()}\n{END}", text)


def main(paths: list[str]) -> None:
    for p in paths or ["README.md", "touchdesigner/README.md"]:
        path = Path(p)
        new = render(path.read_text(encoding="utf-8"))
        path.write_text(new, encoding="utf-8")
        print(f"updated {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
