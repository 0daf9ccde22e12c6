"""squawk (a PostgreSQL migration linter; the ``squawk-cli`` wheel ships its binary) over
the pending ``migration.sql`` files.

Its findings are shown beside the tool's own verdict, not instead of it: squawk judges
each file alone (it flags an index on a table created two lines above) and knows
nothing of table sizes. Rules that only restate style for Prisma's generated SQL
(timestamps without time zone, int columns, IF NOT EXISTS, per-statement timeouts) are
left out so the rest stays readable.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ops import local
from ops.errors import LocalToolError

EXCLUDED_RULES = ("prefer-robust-stmts", "require-lock-timeout", "require-statement-timeout", "prefer-timestamp-tz",
                  "prefer-bigint-over-int", "prefer-bigint-over-smallint", "prefer-identity", "prefer-text-field",
                  "transaction-nesting")
TIMEOUT = 60.0


@dataclass(frozen=True)
class SquawkFinding:
    rule: str
    line: int           # 1-based
    level: str          # Warning / Error
    message: str

    def __str__(self) -> str:
        return f"{self.rule} (line {self.line})"


def binary() -> str | None:
    """squawk on PATH, else next to this Python (the venv's bin/, where pip puts it)."""
    found = shutil.which("squawk")
    if found:
        return found
    beside = Path(sys.executable).parent / "squawk"
    return str(beside) if beside.is_file() else None


def parse(output: str, files: dict[str, Path]) -> dict[str, list[SquawkFinding]]:
    """squawk's ``--reporter json`` output -> findings per migration name (``files``: name -> path)."""
    by_path = {str(path): name for name, path in files.items()}
    found: dict[str, list[SquawkFinding]] = {name: [] for name in files}
    for item in json.loads(output or "[]"):
        name = by_path.get(str(item.get("file")))
        if name is None or item.get("rule_name") in EXCLUDED_RULES:
            continue
        found[name].append(SquawkFinding(str(item.get("rule_name")), int(item.get("line", 0)) + 1,
                                         str(item.get("level", "")), str(item.get("message", ""))))
    return found


def lint(files: dict[str, Path]) -> tuple[dict[str, list[SquawkFinding]], str | None]:
    """Run squawk over ``files`` (migration name -> migration.sql). Returns the findings and,
    when squawk could not run, why (the deploy goes on with the tool's own verdict)."""
    if not files:
        return {}, None
    exe = binary()
    if exe is None:
        return {name: [] for name in files}, "squawk is not installed (pip install squawk-cli): only the tool's own " \
                                             "classifier judged the migrations"
    argv = [exe, "--reporter", "json", *(f"--exclude={rule}" for rule in EXCLUDED_RULES), *map(str, files.values())]
    try:
        proc = local.run(argv, check=False, timeout=TIMEOUT)
    except LocalToolError as exc:
        return {name: [] for name in files}, f"squawk failed: {exc.message}"
    # NOTE: squawk exits 1 whenever it reports something; only an unreadable answer is a failure.
    try:
        return parse(proc.stdout.decode(errors="replace"), files), None
    except (ValueError, TypeError) as exc:
        return {name: [] for name in files}, (f"squawk's answer was not readable ({exc}; exit {proc.returncode}: "
                                              f"{local.tail(proc.stderr)})")
