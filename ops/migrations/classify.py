"""The tool's own verdict on a migration: destructive, locking or safe, and whether the
release serving now can keep running on the schema it leaves.

- **destructive**: data or a name the serving code uses goes away or may be refused
  (DROP TABLE/COLUMN, a type change, RENAME, SET NOT NULL or a NOT NULL column without
  a default on an existing table, a unique index/constraint on existing data, TRUNCATE,
  DELETE). Needs consent; a restore point is taken first.
- **locking**: correct, but holds a lock that stops writes (or reads) for as long as
  a big table takes: an index built without CONCURRENTLY, a table rewrite (volatile
  default, serial column), a constraint validated by a scan, an UPDATE of every row.
  "Big" = at least ``big_table_rows`` rows by the planner's estimate; a table whose
  size is unknown counts as big.
- **safe**: everything else (new tables, nullable columns, indexes on new tables...).

Tables created earlier in the same run (this migration or an earlier pending one) are
new: nothing on them is locking or destructive. The classifier reads statements with
regular expressions over the text ``ops.migrations.sql`` split; it knows the shapes
Prisma generates and the common hand-written ones, and says nothing about the rest
(squawk runs beside it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ops.migrations.sql import Statement, split, unquote_ident

SAFE, LOCKING, DESTRUCTIVE = "safe", "locking", "destructive"
RANK = {SAFE: 0, LOCKING: 1, DESTRUCTIVE: 2}
DEFAULT_BIG_TABLE_ROWS = 10_000

_ID = r'(?:"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_$]*)'
IDENT = rf"{_ID}(?:\s*\.\s*{_ID})?"
_I = re.IGNORECASE
_VOLATILE = re.compile(r"\b(gen_random_uuid|uuid_generate_v[14]\w*|random|clock_timestamp|timeofday|nextval)\s*\(", _I)
_SERIAL = re.compile(r"\b(small|big)?serial\b", _I)


@dataclass(frozen=True)
class Finding:
    level: str            # LOCKING or DESTRUCTIVE
    rule: str             # short name, e.g. drop-column
    line: int
    message: str
    # Why the release serving now breaks on the new schema; None when it does not.
    breaks_previous: str | None = None


@dataclass
class Verdict:
    name: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def level(self) -> str:
        return max((f.level for f in self.findings), key=RANK.__getitem__, default=SAFE)

    @property
    def previous_ok(self) -> bool:
        return not any(f.breaks_previous for f in self.findings)

    @property
    def previous_breaks(self) -> list[str]:
        return [f.breaks_previous for f in self.findings if f.breaks_previous]


@dataclass
class Tables:
    """What the classifier knows of the database the migrations will run on.

    ``rows``: planner estimates of existing tables (None: unknown, every existing table
    counts as big); ``new``: tables created earlier in this run (shared across migrations).
    """

    rows: dict[str, int] | None = None
    big_table_rows: int = DEFAULT_BIG_TABLE_ROWS
    new: set[str] = field(default_factory=set)

    def is_new(self, table: str) -> bool:
        return table in self.new

    def size(self, table: str) -> str:
        if self.rows is None or table not in self.rows:
            return "size unknown" if self.rows is None else "not in the database yet"
        return f"~{self.rows[table]:,} rows"

    def is_big(self, table: str) -> bool:
        if self.is_new(table):
            return False
        if self.rows is None:
            return True
        return self.rows.get(table, 0) >= self.big_table_rows


def top_level_split(text: str, sep: str = ",") -> list[str]:
    """``text`` split on ``sep`` outside parentheses, quotes and identifiers."""
    parts, depth, buf, quote = [], 0, [], ""
    for c in text:
        if quote:
            buf.append(c)
            if c == quote:
                quote = ""
            continue
        if c in "'\"":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == sep and depth == 0:
            parts.append("".join(buf).strip())
            buf = []
            continue
        buf.append(c)
    parts.append("".join(buf).strip())
    return [p for p in parts if p]


def classify(name: str, script: str, tables: Tables | None = None) -> Verdict:
    """The verdict on one migration; ``tables`` is updated with the tables it creates."""
    tables = tables if tables is not None else Tables()
    verdict = Verdict(name)
    statements = split(script)
    defaults = _defaults_set(statements)
    for st in statements:
        verdict.findings += _statement(st, tables, defaults)
    return verdict


def _defaults_set(statements: list[Statement]) -> set[tuple[str, str]]:
    """(table, column) pairs given a default in this migration: SET NOT NULL after one is no surprise."""
    found = set()
    for st in statements:
        m = re.match(rf"ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?({IDENT})\s+(.*)$", st.text, _I | re.S)
        if not m:
            continue
        for action in top_level_split(m.group(2)):
            a = re.match(rf"(?:ALTER\s+(?:COLUMN\s+)?({_ID})\s+SET\s+DEFAULT|ADD\s+(?:COLUMN\s+)?(?:IF\s+NOT\s+EXISTS\s+)?"
                         rf"({_ID})\s+.*\bDEFAULT\b)", action, _I | re.S)
            if a:
                found.add((unquote_ident(m.group(1)), unquote_ident(a.group(1) or a.group(2))))
    return found


def _statement(st: Statement, tables: Tables, defaults: set[tuple[str, str]]) -> list[Finding]:
    text, line = st.text, st.line
    if m := re.match(rf"CREATE\s+(?:UNLOGGED\s+|TEMP(?:ORARY)?\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?({IDENT})",
                     text, _I):
        tables.new.add(unquote_ident(m.group(1)))
        return []
    if m := re.match(r"DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?(.*?)(?:\s+(?:CASCADE|RESTRICT))?$", text, _I | re.S):
        out = []
        for raw in top_level_split(m.group(1)):
            table = unquote_ident(raw)
            if tables.is_new(table):
                continue
            out.append(Finding(DESTRUCTIVE, "drop-table", line, f"drops table {table} and every row in it",
                               f"it still reads and writes {table}"))
        return out
    if m := re.match(rf"ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?({IDENT})\s+(.*)$", text, _I | re.S):
        table = unquote_ident(m.group(1))
        out = []
        for action in top_level_split(m.group(2)):
            out += _alter_action(table, action, line, tables, defaults)
        return out
    if m := re.match(rf"CREATE\s+(UNIQUE\s+)?INDEX\s+(CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?(?:{IDENT}\s+)?"
                     rf"ON\s+(?:ONLY\s+)?({IDENT})", text, _I):
        table = unquote_ident(m.group(3))
        if tables.is_new(table):
            return []
        if m.group(1):
            return [Finding(DESTRUCTIVE, "unique-index-on-existing-data", line,
                            f"unique index on existing table {table} ({tables.size(table)}): fails if rows repeat "
                            "a value", f"its writes that repeat a value in {table} are now refused")]
        if not m.group(2) and tables.is_big(table):
            return [Finding(LOCKING, "index-not-concurrent", line,
                            f"index built without CONCURRENTLY on {table} ({tables.size(table)}): writes to it wait "
                            "until the build ends")]
        return []
    if m := re.match(rf"ALTER\s+TYPE\s+({IDENT})\s+(RENAME|DROP)\b", text, _I):
        return [Finding(DESTRUCTIVE, "alter-type", line, f"renames or drops part of type {unquote_ident(m.group(1))}",
                        f"it may still use the old name of {unquote_ident(m.group(1))} or its values")]
    if m := re.match(r"DROP\s+(SCHEMA|VIEW|MATERIALIZED\s+VIEW|SEQUENCE|FUNCTION|TYPE|DOMAIN)\s+(?:IF\s+EXISTS\s+)?"
                     rf"({IDENT})", text, _I):
        what = " ".join(m.group(1).lower().split())
        obj = unquote_ident(m.group(2))
        return [Finding(DESTRUCTIVE, f"drop-{what.replace(' ', '-')}", line, f"drops {what} {obj}",
                        f"it may still use {what} {obj}")]
    if m := re.match(r"TRUNCATE\s+(?:TABLE\s+)?(?:ONLY\s+)?(.*)$", text, _I | re.S):
        names = ", ".join(unquote_ident(t.split()[0]) for t in top_level_split(m.group(1)) if t.split())
        return [Finding(DESTRUCTIVE, "truncate", line, f"deletes every row of {names}")]
    if m := re.match(rf"DELETE\s+FROM\s+(?:ONLY\s+)?({IDENT})", text, _I):
        table = unquote_ident(m.group(1))
        return [] if tables.is_new(table) else [Finding(DESTRUCTIVE, "delete", line, f"deletes rows of {table}")]
    if m := re.match(rf"UPDATE\s+(?:ONLY\s+)?({IDENT})", text, _I):
        table = unquote_ident(m.group(1))
        if tables.is_big(table):
            return [Finding(LOCKING, "update-existing-rows", line,
                            f"updates rows of {table} ({tables.size(table)}) in the migration's transaction: "
                            "those rows stay locked until it commits")]
        return []
    if re.match(r"(VACUUM\s+(\(.*\)\s*)?FULL|CLUSTER|LOCK\s+TABLE|REINDEX\s+(?!.*CONCURRENTLY))", text, _I | re.S):
        return [Finding(LOCKING, "exclusive-lock", line, f"{' '.join(text.split()[:3])}: locks the table exclusively "
                        "while it runs")]
    return []


def _alter_action(table: str, action: str, line: int, tables: Tables,
                  defaults: set[tuple[str, str]]) -> list[Finding]:
    new = tables.is_new(table)
    if m := re.match(rf"DROP\s+(?:COLUMN\s+)?(?:IF\s+EXISTS\s+)?({_ID})", action, _I):
        column = unquote_ident(m.group(1))
        if column.upper() in ("CONSTRAINT", "NOT", "DEFAULT", "EXPRESSION", "IDENTITY") or new:
            return []
        return [Finding(DESTRUCTIVE, "drop-column", line, f"drops column {table}.{column} and its data",
                        f"it still reads or writes {table}.{column}")]
    if m := re.match(rf"RENAME\s+(?:COLUMN\s+|CONSTRAINT\s+)?({_ID})\s+TO\s+({_ID})", action, _I):
        if action.upper().startswith("RENAME CONSTRAINT") or new:
            return []
        old, to = unquote_ident(m.group(1)), unquote_ident(m.group(2))
        return [Finding(DESTRUCTIVE, "rename-column", line, f"renames column {table}.{old} to {to}",
                        f"it still uses {table}.{old}")]
    if m := re.match(rf"RENAME\s+TO\s+({_ID})", action, _I):
        if new:
            return []
        return [Finding(DESTRUCTIVE, "rename-table", line, f"renames table {table} to {unquote_ident(m.group(1))}",
                        f"it still uses table {table}")]
    if m := re.match(rf"ALTER\s+(?:COLUMN\s+)?({_ID})\s+(?:SET\s+DATA\s+)?TYPE\b", action, _I):
        if new:
            return []
        column = unquote_ident(m.group(1))
        return [Finding(DESTRUCTIVE, "change-column-type", line,
                        f"changes the type of {table}.{column}: existing values are converted (or refused) while "
                        f"the table is rewritten under an exclusive lock ({tables.size(table)})",
                        f"it may write values of the old type into {table}.{column}")]
    if m := re.match(rf"ALTER\s+(?:COLUMN\s+)?({_ID})\s+SET\s+NOT\s+NULL", action, _I):
        column = unquote_ident(m.group(1))
        if new:
            return []
        if (table, column) in defaults:
            return ([Finding(LOCKING, "set-not-null-scan", line, f"SET NOT NULL on {table}.{column} scans "
                             f"{table} ({tables.size(table)}) under an exclusive lock")] if tables.is_big(table) else [])
        return [Finding(DESTRUCTIVE, "set-not-null-without-default", line,
                        f"makes {table}.{column} NOT NULL without a default: fails if a row holds NULL",
                        f"its inserts into {table} that leave {column} out are now refused")]
    if m := re.match(rf"ADD\s+(?:COLUMN\s+)?(?:IF\s+NOT\s+EXISTS\s+)?({_ID})\s+(.*)$", action, _I | re.S):
        column, spec = unquote_ident(m.group(1)), m.group(2)
        if column.upper() in ("CONSTRAINT", "PRIMARY", "UNIQUE", "FOREIGN", "CHECK", "EXCLUDE"):
            return _add_constraint(table, action, line, tables)
        if new:
            return []
        has_default = re.search(r"\bDEFAULT\b", spec, _I) is not None
        if re.search(r"\bNOT\s+NULL\b", spec, _I) and not has_default and not _SERIAL.search(spec):
            return [Finding(DESTRUCTIVE, "add-required-column-without-default", line,
                            f"adds {table}.{column} NOT NULL without a default: fails unless {table} is empty",
                            f"its inserts into {table} do not set {column} and are refused")]
        if (_VOLATILE.search(spec) or _SERIAL.search(spec)) and tables.is_big(table):
            return [Finding(LOCKING, "table-rewrite", line,
                            f"adds {table}.{column} with a volatile default: rewrites {table} ({tables.size(table)}) "
                            "under an exclusive lock")]
        return []
    if re.match(r"ADD\s+(CONSTRAINT|PRIMARY|UNIQUE|FOREIGN|CHECK|EXCLUDE)\b", action, _I):
        return _add_constraint(table, action, line, tables)
    return []


def _add_constraint(table: str, action: str, line: int, tables: Tables) -> list[Finding]:
    if tables.is_new(table):
        return []
    if re.search(r"\b(UNIQUE|PRIMARY\s+KEY|EXCLUDE)\b", action, _I):
        return [Finding(DESTRUCTIVE, "unique-constraint-on-existing-data", line,
                        f"unique constraint on existing table {table} ({tables.size(table)}): fails if rows repeat "
                        "a value", f"its writes that repeat a value in {table} are now refused")]
    if re.search(r"\bNOT\s+VALID\b", action, _I):
        return []
    if re.search(r"\b(FOREIGN\s+KEY|CHECK)\b", action, _I) and tables.is_big(table):
        return [Finding(LOCKING, "constraint-validation-scan", line,
                        f"a new constraint on {table} ({tables.size(table)}) is validated by a full scan while "
                        "writes wait (add it NOT VALID, then VALIDATE CONSTRAINT)")]
    return []
