"""``inv backup.check`` (is the newest good backup fresh enough? Prometheus metrics) and
``inv backup.prune`` (retention applied to the bucket).

"Good" = it has a manifest and no failed verification. The age is measured from
the backup's ``finished_at`` to now. Only S3 is read: this runs from a monitoring
box that has the bucket credentials and nothing else.

The Prometheus textfile (node_exporter's textfile collector) is written atomically
(temp file in the same directory, then rename), so a scrape never reads half a file.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from ops.backup import catalog, retention
from ops.backup.catalog import Entry
from ops.backup.manifest import KINDS, backups_prefix
from ops.backup.stream_upload import abort_stale_uploads
from ops.backup.timeparse import as_utc, format_utc
from ops.errors import ConfigError

_AGE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "": 3600}


def parse_max_age(text: str | float | int) -> timedelta:
    """``26h``, ``90m``, ``2d``, ``1w``, ``3600s``; a bare number is hours."""
    m = _AGE_RE.match(str(text))
    if not m or float(m.group(1)) <= 0:
        raise ConfigError(f"--max-age {text!r} is not a positive duration", hint="write e.g. 26h, 90m, 2d or 3600s")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


def format_age(age: timedelta) -> str:
    seconds = int(age.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days}d{hours:02d}h{minutes:02d}m"
    if hours:
        return f"{sign}{hours}h{minutes:02d}m"
    return f"{sign}{minutes}m{secs:02d}s"


def is_good(entry: Entry) -> bool:
    verified = entry.manifest.verified if entry.manifest else None
    return entry.good and not (verified and verified.get("ok") is False)


@dataclass
class Freshness:
    kind: str
    newest: Entry | None
    age: timedelta | None
    max_age: timedelta
    count: int = 0
    last_verified: Entry | None = None

    @property
    def ok(self) -> bool:
        return self.age is not None and self.age <= self.max_age

    def line(self, env: str) -> str:
        if self.newest is None:
            return f"{env} {self.kind}: NO good backup at all (max age {format_age(self.max_age)})"
        state = "ok" if self.ok else "STALE"
        return (f"{env} {self.kind}: {state}: newest good backup {self.newest.id} finished "
                f"{format_utc(self.newest.finished_at)[:19]}Z, {format_age(self.age)} ago (max {format_age(self.max_age)})")


def freshness(entries: list[Entry], kind: str, *, now: datetime, max_age: timedelta) -> Freshness:
    good = [e for e in entries if e.kind == kind and is_good(e)]
    newest = max(good, key=lambda e: (e.finished_at, e.id), default=None)
    verified = [e for e in good if (e.manifest.verified or {}).get("ok") is True]
    last_verified = max(verified, key=lambda e: (e.finished_at, e.id), default=None)
    age = as_utc(now) - newest.finished_at if newest else None
    return Freshness(kind, newest, age, max_age, len(good), last_verified)


def _labels(env: str, kind: str) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{{env="{esc(env)}",kind="{esc(kind)}"}}'


METRICS = (
    ("ops_backup_last_success_timestamp_seconds", "Unix time the newest good backup finished (0: none)."),
    ("ops_backup_age_seconds", "Seconds since the newest good backup finished (-1: none)."),
    ("ops_backup_max_age_seconds", "Age above which backup.check fails."),
    ("ops_backup_fresh", "1 when the newest good backup is younger than the max age, else 0."),
    ("ops_backup_last_size_bytes", "Stored size of the newest good backup (0: none)."),
    ("ops_backup_count", "Number of good backups in the bucket."),
    ("ops_backup_last_verified_timestamp_seconds",
     "Unix time the newest backup that passed a restore drill finished (0: none)."),
)


def prometheus_text(env: str, results: list[Freshness], *, now: datetime) -> str:
    values: dict[str, list[tuple[str, float]]] = {name: [] for name, _ in METRICS}
    for r in results:
        labels = _labels(env, r.kind)
        values["ops_backup_last_success_timestamp_seconds"].append(
            (labels, r.newest.finished_at.timestamp() if r.newest else 0))
        values["ops_backup_age_seconds"].append((labels, r.age.total_seconds() if r.age is not None else -1))
        values["ops_backup_max_age_seconds"].append((labels, r.max_age.total_seconds()))
        values["ops_backup_fresh"].append((labels, 1 if r.ok else 0))
        values["ops_backup_last_size_bytes"].append((labels, r.newest.manifest.size if r.newest else 0))
        values["ops_backup_count"].append((labels, r.count))
        values["ops_backup_last_verified_timestamp_seconds"].append(
            (labels, r.last_verified.finished_at.timestamp() if r.last_verified else 0))
    lines = []
    for name, help_text in METRICS:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        lines += [f"{name}{labels} {_num(v)}" for labels, v in values[name]]
    lines.append(f'ops_backup_check_timestamp_seconds{{env="{env}"}} {_num(as_utc(now).timestamp())}')
    return "\n".join(lines) + "\n"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


def write_textfile(path: str | Path, text: str) -> None:
    """Atomically replace ``path`` with ``text`` (mode 0644, for node_exporter)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ConfigError(f"--prometheus-file {path}: directory {path.parent} does not exist",
                          hint="point it at node_exporter's --collector.textfile.directory")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check(entries: list[Entry], *, now: datetime, max_age: timedelta, kinds=tuple(KINDS)) -> list[Freshness]:
    return [freshness(entries, kind, now=now, max_age=max_age) for kind in kinds]


# ---------------------------------------------------------------- prune (rotation upkeep)

# An object without a manifest this old is an interrupted backup, not one in progress
# (the data object only appears when its upload completes, the manifest right after).
ORPHAN_AGE = timedelta(days=1)


@dataclass
class PruneReport:
    decisions: list
    orphans: list[Entry]
    stale_uploads: list[str]
    deleted: list[str]
    warnings: list[str]


def delete_backup(client, bucket: str, entry: Entry) -> None:
    """Manifest first, then data: a crash in between leaves an orphan (cleaned later), never a
    manifest pointing at nothing."""
    client.delete_object(Bucket=bucket, Key=entry.manifest_key)
    client.delete_object(Bucket=bucket, Key=entry.data_key)


def prune(env, client, *, now: datetime, dry_run: bool, orphan_age: timedelta = ORPHAN_AGE) -> PruneReport:
    """Apply the retention policy (``ops.backup.retention``) to every kind; remove old orphans and
    multipart uploads left by killed backups. ``dry_run``: decide, delete nothing."""
    listing = catalog.list_backups(env, client)
    decisions = retention.plan(listing, now, retention.Policy.from_settings(env.backup))
    newest = {kind: catalog.newest(listing, kind) for kind in KINDS}
    for d in decisions:
        if not d.keep and newest.get(d.entry.kind) is not None and d.entry.id == newest[d.entry.kind].id:
            raise ConfigError(f"retention would delete the newest {d.entry.kind} backup {d.entry.id}; refusing",
                              hint="this is a bug in the retention plan: nothing was deleted")
    cutoff = as_utc(now) - orphan_age
    orphans = [o for o in listing.orphans if o.last_modified is not None and o.last_modified < cutoff]
    report = PruneReport(decisions, orphans, [], [], list(listing.warnings))
    if dry_run:
        return report
    bucket = env.s3.bucket
    for d in decisions:
        if not d.keep:
            delete_backup(client, bucket, d.entry)
            report.deleted.append(d.entry.id)
    for o in orphans:
        client.delete_object(Bucket=bucket, Key=o.data_key)
        report.deleted.append(o.data_key)
    report.stale_uploads = abort_stale_uploads(client, bucket, backups_prefix(env), older_than=orphan_age, now=now)
    return report
