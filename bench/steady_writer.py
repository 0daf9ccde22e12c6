"""A steady writer and an archive watcher for the RPO and archive-lag figures.

The writer commits one row every ``interval`` seconds into ``TABLE`` (its own connection,
autocommit) and keeps, per row, the server's ``clock_timestamp()`` inside the statement, the WAL
file that statement wrote into, and the operator's clock when the commit was acknowledged. The
fleet's containers share this machine's kernel clock, so the two clocks are comparable.

The watcher reads ``pg_stat_archiver`` every second. Two lag figures come out of it:
- *newest archived WAL age*: ``now() - last_archived_time`` (how stale the archive's newest segment is);
- *oldest unarchived commit*: the age of the oldest acknowledged row whose WAL file is not archived yet:
  what a lost server would lose at that moment (the RPO exposure).

Bounded: both loops stop at ``stop()``, at their deadline, or after ``max_rows`` rows.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg

TABLE = "bench_rpo_rows"


@dataclass(frozen=True)
class Row:
    id: int
    at: datetime        # clock_timestamp() inside the INSERT (the commit is a little later)
    wal: str            # the WAL file the INSERT wrote into
    acked: datetime     # the operator's clock when the commit returned


@dataclass(frozen=True)
class Sample:
    now: datetime
    last_archived_wal: str | None
    last_archived_at: datetime | None


def wal_after(a: str, b: str | None) -> bool:
    """WAL file ``a`` comes after ``b`` (same timeline; names sort by position)."""
    return b is None or a[8:] > b[8:]


@dataclass
class RpoCount:
    before: int      # acknowledged before T: must all be restored
    after: int       # the statement began after T: none may be restored
    straddling: int  # began at or before T, acknowledged after it: either is correct
    before_present: int = 0
    after_present: int = 0

    @property
    def lost(self) -> int:
        return self.before - self.before_present


def classify(rows: list[Row], at: datetime) -> tuple[list[int], list[int], list[int]]:
    """Ids of the rows committed before ``at``, begun after it, and straddling it."""
    before = [r.id for r in rows if r.acked < at]
    after = [r.id for r in rows if r.at > at]
    straddling = [r.id for r in rows if r.at <= at <= r.acked]
    return before, after, straddling


def archive_lag(rows: list[Row], samples: list[Sample]) -> tuple[float, float]:
    """(max newest-archived-WAL age, max oldest-unarchived-commit age) over the samples, seconds."""
    newest_age = oldest_unarchived = 0.0
    for s in samples:
        if s.last_archived_at is not None:
            newest_age = max(newest_age, (s.now - s.last_archived_at).total_seconds())
        waiting = [r.acked for r in rows if r.acked <= s.now and wal_after(r.wal, s.last_archived_wal)]
        if waiting:
            oldest_unarchived = max(oldest_unarchived, (s.now - min(waiting)).total_seconds())
    return newest_age, oldest_unarchived


@dataclass
class SteadyWriter:
    conninfo: dict
    interval: float = 0.25
    deadline_s: float = 600.0
    max_rows: int = 20_000
    rows: list[Row] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._guard, args=(self._write,), daemon=True, name="writer"),
                         threading.Thread(target=self._guard, args=(self._watch,), daemon=True, name="watcher")]

    def connect(self):
        return psycopg.connect(**self.conninfo, autocommit=True, connect_timeout=5)

    def create_table(self) -> None:
        with self.connect() as conn:
            conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
            conn.execute(f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, at timestamptz NOT NULL)")

    def start(self) -> SteadyWriter:
        self._end = time.monotonic() + self.deadline_s
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def _running(self) -> bool:
        return not self._stop.is_set() and time.monotonic() < self._end

    def _guard(self, loop) -> None:
        try:
            loop()
        except Exception as exc:  # noqa: BLE001 - reported with the figures
            self.errors.append(f"{threading.current_thread().name}: {type(exc).__name__}: {exc}")

    def _write(self) -> None:
        with self.connect() as conn:
            n = 0
            while self._running() and n < self.max_rows:
                n += 1
                at, wal = conn.execute(f"INSERT INTO {TABLE} (id, at) VALUES (%s, clock_timestamp()) "
                                       "RETURNING at, pg_walfile_name(pg_current_wal_insert_lsn())", (n,)).fetchone()
                self.rows.append(Row(n, at.astimezone(UTC), wal, datetime.now(UTC)))
                self._stop.wait(self.interval)

    def _watch(self) -> None:
        with self.connect() as conn:
            while self._running():
                now, wal, at = conn.execute("SELECT now(), last_archived_wal, last_archived_time "
                                            "FROM pg_stat_archiver").fetchone()
                self.samples.append(Sample(now.astimezone(UTC), wal, at.astimezone(UTC) if at else None))
                self._stop.wait(1.0)


def count_restored(conninfo: dict, rows: list[Row], at: datetime) -> RpoCount:
    """After the restore: how many of the rows committed before ``at`` / begun after it are there."""
    before, after, straddling = classify(rows, at)
    with psycopg.connect(**conninfo, autocommit=True, connect_timeout=5) as conn:
        present = {r[0] for r in conn.execute(f"SELECT id FROM {TABLE}").fetchall()}
    return RpoCount(len(before), len(after), len(straddling), sum(i in present for i in before),
                    sum(i in present for i in after))
