"""docs/bad-input.md: the table of bad input → message that the tests produce.

Each bad-input test checks its row with :func:`check_row`: the row must equal the committed
one; with ``RS_SEG_WRITE_BAD_INPUT=1`` (``make bad-input-table``, which starts from an empty
table) each test writes its row instead.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, Tuple

TABLE = Path(__file__).resolve().parents[2] / "docs" / "bad-input.md"
WRITE = os.environ.get("RS_SEG_WRITE_BAD_INPUT") == "1"
HEADER = """# Bad input → message

Every row is a test (`tests/engine/test_bad_input.py`, `tests/engine/test_cli_interrupt.py`):
the command ends with the exit status shown, this one sentence on stderr, no traceback, no input
overwritten and no file left behind.  `DIR` is the test's folder, `PID` a process id.
Regenerate with `make bad-input-table`; a test fails when this file differs from what the tests
produce.

| case | command | exit | message |
|---|---|---|---|
"""
Row = Tuple[str, str, str]


def normalise(text: str, folder: Path) -> str:
    """``text`` with the test folder as DIR and process ids as PID, on one line."""
    text = text.replace(str(folder), "DIR")
    text = re.sub(r"process \d+", "process PID", text)
    return " ".join(text.split())


def committed() -> Dict[str, Row]:
    """The rows of the committed table, by case."""
    rows: Dict[str, Row] = {}
    if not TABLE.exists():
        return rows
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| ") or line.startswith("| case "):
            continue
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        case, command, code, message = cells
        rows[case] = (command.strip("`"), code, message)
    return rows


def check_row(case: str, command: str, code: int, message: str) -> None:
    """Check one row of the table against the committed one (``WRITE``: write it there)."""
    row = (command, str(code), message)
    if WRITE:
        _write({**committed(), case: row})
        return
    assert committed().get(case) == row, f"docs/bad-input.md is stale for {case}: " \
                                         f"run make bad-input-table"


def _write(rows: Dict[str, Row]) -> None:
    lines = [HEADER]
    for case, row in rows.items():
        command, code, message = (c.replace("|", "\\|") for c in row)
        lines.append(f"| {case} | `{command}` | {code} | {message} |\n")
    TABLE.write_text("".join(lines), encoding="utf-8")
