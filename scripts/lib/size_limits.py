"""Given the three packages, print every module over 500 lines and function over 60; exit 1 if any.

The limits are the project's (docs/DESIGN.md, "Guardrails"): one concept per module, short
functions. Counted as the file's lines and a function's lines from `def` to its last line.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGES = ("permastore", "gateway", "inference")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def oversized(root: Path) -> list[str]:
    """Return a line per module or function over its limit under the packages in root."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            text = path.read_text()
            name = path.relative_to(root)
            lines = text.count("\n") + (not text.endswith("\n") and bool(text))
            if lines > MAX_MODULE_LINES:
                found.append(f"{name}: {lines} lines (at most {MAX_MODULE_LINES})")
            for node in ast.walk(ast.parse(text, str(name))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    length = (node.end_lineno or node.lineno) - node.lineno + 1
                    if length > MAX_FUNCTION_LINES:
                        found.append(f"{name}:{node.lineno} {node.name}: {length} lines (at most {MAX_FUNCTION_LINES})")
    return found


def main() -> int:
    found = oversized(Path(__file__).resolve().parents[2])
    for line in found:
        print("too long: " + line, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
