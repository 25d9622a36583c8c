"""`python -m shoprank.inputs [docs/features.md]`: rewrite the docs' table of model inputs."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from shoprank.inputs.declare import markdown

BLOCK = re.compile(r"(<!-- inputs:begin -->\n).*?(<!-- inputs:end -->)", re.S)


def main(path: str = "docs/features.md") -> None:
    doc = Path(path)
    text = doc.read_text()
    if not BLOCK.search(text):
        sys.exit(f"{doc} has no <!-- inputs:begin --> ... <!-- inputs:end --> block")
    doc.write_text(BLOCK.sub(lambda m: m.group(1) + markdown() + m.group(2), text))
    print(f"wrote the inputs table of {doc}")


if __name__ == "__main__":
    main(*sys.argv[1:])
