"""The pending migrations of a deploy, each with its verdict, as the plan shows them; and
the consent a destructive or locking one needs.

Pending = in the release (image or build context) and not applied in
``_prisma_migrations``. Each is judged by the tool's classifier (with the planner's
table sizes) and linted by squawk. The deploy needs ``--allow-destructive`` (or
``migrate.policy: allow``) when any is destructive or locking, and then takes a
restore point (``backup.db``) right before migrating.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ops.errors import ConfigError
from ops.migrations import squawk
from ops.migrations.classify import RANK, SAFE, Tables, Verdict, classify
from ops.migrations.source import Migration
from ops.migrations.squawk import SquawkFinding
from ops.migrations.state import DbState

POLICIES = ("ask", "allow")


class ConsentRequired(ConfigError):
    """A destructive or locking migration is pending and the operator did not allow it."""


@dataclass
class Reviewed:
    migration: Migration
    verdict: Verdict
    squawk: list[SquawkFinding] = field(default_factory=list)

    def to_dict(self) -> dict:
        v = self.verdict
        return {"name": self.migration.name, "checksum": self.migration.checksum, "verdict": v.level,
                "previous_release_ok": v.previous_ok,
                "findings": [{"level": f.level, "rule": f.rule, "line": f.line, "message": f.message,
                              "breaks_previous": f.breaks_previous} for f in v.findings],
                "squawk": [{"rule": s.rule, "line": s.line, "message": s.message} for s in self.squawk]}


@dataclass
class MigrationReview:
    source: str                                  # where the migrations were read
    pending: list[Reviewed] = field(default_factory=list)
    applied: int = 0                             # already applied (in the release and the database)
    notes: list[str] = field(default_factory=list)

    @property
    def level(self) -> str:
        return max((r.verdict.level for r in self.pending), key=RANK.__getitem__, default=SAFE)

    @property
    def needs_consent(self) -> bool:
        return self.level != SAFE

    @property
    def previous_ok(self) -> bool:
        return all(r.verdict.previous_ok for r in self.pending)

    @property
    def fingerprint(self) -> tuple[tuple[str, str], ...]:
        return tuple((r.migration.name, r.migration.checksum) for r in self.pending)

    def lines(self) -> list[str]:
        if not self.pending:
            return [f"migrations: none pending ({self.applied} in {self.source} already applied)"]
        out = [f"migrations: {len(self.pending)} pending in {self.source} — overall {self.level.upper()}; "
               + ("the previous release can run on the new schema" if self.previous_ok
                  else "the previous release CANNOT run on the new schema (a rollback then needs a restore)")]
        for r in self.pending:
            v = r.verdict
            out.append(f"  {r.migration.name}: {v.level.upper()}"
                       + ("" if v.previous_ok else " — previous release breaks: " + "; ".join(v.previous_breaks)))
            out += [f"    {f.level}: {f.message} (line {f.line})" for f in v.findings]
            if r.squawk:
                out.append("    squawk: " + ", ".join(str(s) for s in r.squawk))
        return out

    def to_dict(self) -> dict:
        return {"source": self.source, "pending": [r.to_dict() for r in self.pending], "applied": self.applied,
                "verdict": self.level, "previous_release_ok": self.previous_ok, "needs_consent": self.needs_consent,
                "notes": self.notes}


def review(migrations: list[Migration], source: str, state: DbState | None, *,
           big_table_rows: int) -> MigrationReview:
    """Classify and lint the migrations ``state`` has not applied (all of them when ``state`` is None)."""
    applied = state.applied if state is not None else set()
    pending = [m for m in migrations if m.name not in applied]
    result = MigrationReview(source, applied=len(migrations) - len(pending))
    if state is None:
        result.notes.append("the database could not be read: every migration in the release is listed as pending "
                            "and table sizes are unknown")
    tables = Tables(rows=dict(state.table_rows) if state is not None else None, big_table_rows=big_table_rows)
    linted, why_not = squawk.lint({m.name: m.path for m in pending})
    if why_not:
        result.notes.append(why_not)
    for m in pending:
        result.pending.append(Reviewed(m, classify(m.name, m.sql, tables), linted.get(m.name, [])))
    return result


def check_consent(result: MigrationReview, *, allowed: bool, policy: str, env_name: str) -> None:
    """Refuse a destructive or locking migration without ``--allow-destructive`` or ``migrate.policy: allow``."""
    if not result.needs_consent or allowed or policy == "allow":
        return
    risky = [f"{r.migration.name} ({r.verdict.level}: {r.verdict.findings[0].message})"
             for r in result.pending if r.verdict.level != SAFE]
    raise ConsentRequired(
        f"{len(risky)} pending migration(s) need consent: {'; '.join(risky)}; nothing was done",
        hint=f"read the plan (inv deploy --host {env_name} --dry-run); to go on: --allow-destructive "
             "(a database backup is taken right before migrating), or migrate.policy: allow in the inventory")
