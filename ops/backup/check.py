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
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from ops.backup import catalog, retention
from ops.backup.catalog import Entry, Skipped
from ops.backup.manifest import KINDS, backups_prefix
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
    return entry.good and not entry.manifest.verification_failed


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
    verified = [e for e in good if e.manifest.verified_ok]
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
#
# Plan, then apply: `plan_prune` reads the bucket once and decides (reasons included);
# the operator sees `plan.lines()`; `apply_prune` deletes exactly `plan.doomed`, checking
# each one again right before deleting it, so what goes is what was confirmed.

# An object without a manifest this old is an interrupted backup, not one in progress
# (the data object only appears when its upload completes, the manifest right after).
ORPHAN_AGE = timedelta(days=1)


@dataclass(frozen=True)
class Doomed:
    """One thing the plan deletes, as the plan saw it: a backup (manifest + data) or an orphan."""

    entry: Entry
    reason: str

    @property
    def orphan(self) -> bool:
        return not self.entry.good

    @property
    def label(self) -> str:
        """The backup id, or the data key of an orphan (what PruneReport.deleted lists)."""
        return self.entry.data_key if self.orphan else self.entry.id


@dataclass(frozen=True)
class StaleUpload:
    """A multipart upload a killed backup left behind (S3 bills its parts until aborted)."""

    key: str
    upload_id: str
    initiated: datetime


@dataclass(frozen=True)
class PrunePlan:
    env: str
    bucket: str
    now: datetime
    policy: retention.Policy
    decisions: list[retention.Decision]  # every backup with a readable manifest, newest first
    orphans: list[Entry]  # data without any manifest, older than orphan_age: deleted
    kept_unreadable: list[Skipped]  # manifests that could not be used: their data is KEPT
    stale_uploads: list[StaleUpload]  # aborted by apply
    doomed: tuple[Doomed, ...]  # exactly what apply_prune deletes, in order
    warnings: list[str]

    def lines(self) -> list[str]:
        """The plan for a human: one line per backup, orphan, kept unreadable object and upload."""
        lines = [f"{'keep' if d.keep else 'DELETE'}  {d.entry.id}  finished {_when(d.entry.finished_at)}  "
                 f"{', '.join(d.reasons)}" for d in self.decisions]
        lines += [f"DELETE  {o.data_key}  (no manifest, uploaded {_when(o.last_modified)})  orphan"
                  for o in self.orphans]
        lines += [f"keep  {key}  its manifest could not be used ({s.reason})"
                  for s in self.kept_unreadable for key in s.data_keys]
        lines += [f"ABORT  multipart upload of {u.key} (started {_when(u.initiated)})" for u in self.stale_uploads]
        lines.append(self.summary())
        return lines

    def summary(self) -> str:
        backups = sum(1 for d in self.doomed if not d.orphan)
        return (f"delete {backups} of {len(self.decisions)} backup(s) and {len(self.doomed) - backups} orphan(s), "
                f"abort {len(self.stale_uploads)} stale upload(s) (policy: {self.policy.describe()})")


@dataclass
class PruneReport:
    decisions: list
    orphans: list[Entry]
    stale_uploads: list[str]
    deleted: list[str]
    warnings: list[str]
    skipped: list[str] = field(default_factory=list)  # doomed but left alone: changed since the plan


def _when(t: datetime | None) -> str:
    return format_utc(t)[:19] + "Z" if t is not None else "?"


def delete_backup(client, bucket: str, entry: Entry) -> None:
    """Manifest first, then data: a crash in between leaves an orphan (cleaned later), never a
    manifest pointing at nothing."""
    client.delete_object(Bucket=bucket, Key=entry.manifest_key)
    client.delete_object(Bucket=bucket, Key=entry.data_key)


def list_stale_uploads(client, bucket: str, prefix: str, *, cutoff: datetime) -> list[StaleUpload]:
    stale = []
    try:
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
            for upload in page.get("Uploads", []):
                if as_utc(upload["Initiated"]) < cutoff:
                    stale.append(StaleUpload(upload["Key"], upload["UploadId"], as_utc(upload["Initiated"])))
    except (ClientError, BotoCoreError) as exc:
        raise catalog.s3_error(exc, f"listing multipart uploads under {prefix}", bucket) from None
    return stale


def plan_prune(env, client, *, now: datetime, orphan_age: timedelta = ORPHAN_AGE,
               policy: retention.Policy | None = None) -> PrunePlan:
    """Decide what prune deletes (retention per kind, old orphans, stale multipart uploads); delete nothing."""
    policy = policy or retention.Policy.from_settings(env.backup)
    listing = catalog.list_backups(env, client)
    decisions = retention.plan(listing, now, policy)
    _refuse_to_delete_protected(decisions, listing)
    cutoff = as_utc(now) - orphan_age
    orphans = [o for o in listing.orphans if o.last_modified is not None and o.last_modified < cutoff]
    kept = [s for s in listing.skipped if s.data_keys]
    warnings = list(listing.warnings)
    # NOTE: data whose manifest exists but is unreadable is not an orphan: keep it, and say so.
    warnings += [f"kept {key}: its manifest {s.manifest_key} could not be used; fix or remove it by hand"
                 for s in kept for key in s.data_keys]
    doomed = tuple([Doomed(d.entry, ", ".join(d.reasons)) for d in decisions if not d.keep]
                   + [Doomed(o, f"orphan: no manifest, older than {format_age(orphan_age)}") for o in orphans])
    stale = list_stale_uploads(client, env.s3.bucket, backups_prefix(env), cutoff=cutoff)
    return PrunePlan(env.name, env.s3.bucket, as_utc(now), policy, decisions, orphans, kept, stale, doomed,
                     warnings)


def _refuse_to_delete_protected(decisions: list[retention.Decision], entries: list[Entry]) -> None:
    always = retention.protected(entries)
    for d in decisions:
        if not d.keep and d.entry.id in always:
            raise ConfigError(f"retention would delete the {always[d.entry.id][0]} {d.entry.kind} backup "
                              f"{d.entry.id}; refusing",
                              hint="this is a bug in the retention plan: nothing was deleted")


def apply_prune(env, client, plan: PrunePlan) -> PruneReport:
    """Delete exactly ``plan.doomed`` (manifest before data), then abort the plan's stale uploads.

    Each one is checked right before it goes: a backup whose manifest changed or vanished since
    the plan, an orphan that got a manifest, or anything that became the newest good backup of
    its kind is left alone with a warning (someone else touched the bucket; plan again)."""
    bucket = plan.bucket
    report = PruneReport(list(plan.decisions), list(plan.orphans), [], [], list(plan.warnings))
    now_protected = retention.protected(catalog.list_backups(env, client)) if plan.doomed else {}
    for doomed in plan.doomed:
        problem = _changed_since_plan(client, bucket, doomed.entry)
        if problem is None and doomed.entry.id in now_protected:
            problem = f"it is now the {now_protected[doomed.entry.id][0]} {doomed.entry.kind} backup"
        if problem is not None:
            report.skipped.append(doomed.label)
            report.warnings.append(f"not deleted {doomed.label}: {problem}")
            continue
        # NOTE: S3 has no delete-if-unchanged; the window between this check and the delete is
        # one request long, against minutes between the plan and the confirmation.
        if doomed.orphan:
            client.delete_object(Bucket=bucket, Key=doomed.entry.data_key)
        else:
            delete_backup(client, bucket, doomed.entry)
        report.deleted.append(doomed.label)
    for upload in plan.stale_uploads:
        _abort(client, bucket, upload, report)
    return report


def _changed_since_plan(client, bucket: str, entry: Entry) -> str | None:
    """Why ``entry`` must not be deleted now, or None when it is as the plan saw it."""
    if not entry.good:
        return _orphan_changed(client, bucket, entry)
    if entry.manifest_etag is None or entry.manifest_sha256 is None:
        return "the plan did not record its manifest's ETag (plan it with plan_prune)"
    now = catalog.read_manifest(client, bucket, entry.manifest_key)
    if now.missing:
        return "its manifest vanished since the plan"
    if now.sha256 is None:
        return f"its manifest could not be re-read ({now.problem})"
    if now.etag != entry.manifest_etag or now.sha256 != entry.manifest_sha256:
        return "its manifest changed since the plan"
    return None


def _orphan_changed(client, bucket: str, entry: Entry) -> str | None:
    manifest_head = _head(client, bucket, entry.manifest_key)
    if manifest_head is not None:
        return "it has a manifest now"
    data_head = _head(client, bucket, entry.data_key)
    if data_head is None:
        return "it vanished since the plan"
    if entry.etag is not None and data_head.get("ETag") != entry.etag:
        return "it changed since the plan"
    return None


def _head(client, bucket: str, key: str) -> dict | None:
    """head_object, or None when the object does not exist (other errors propagate as OpsError)."""
    try:
        return client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise catalog.s3_error(exc, f"reading {key}", bucket) from None
    except BotoCoreError as exc:
        raise catalog.s3_error(exc, f"reading {key}", bucket) from None


def _abort(client, bucket: str, upload: StaleUpload, report: PruneReport) -> None:
    try:
        client.abort_multipart_upload(Bucket=bucket, Key=upload.key, UploadId=upload.upload_id)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchUpload":
            report.warnings.append(f"multipart upload of {upload.key} was already gone")
            return
        raise catalog.s3_error(exc, f"aborting the multipart upload of {upload.key}", bucket) from None
    report.stale_uploads.append(upload.key)


def prune(env, client, *, now: datetime, dry_run: bool, orphan_age: timedelta = ORPHAN_AGE) -> PruneReport:
    """``plan_prune`` then, unless ``dry_run``, ``apply_prune`` of that same plan, in one call.

    NOTE: for callers that confirm nothing (tests, scripts). ``inv backup.prune`` shows the
    plan, confirms, and applies exactly the plan it showed."""
    plan = plan_prune(env, client, now=now, orphan_age=orphan_age)
    if dry_run:
        return PruneReport(plan.decisions, plan.orphans, [], [], plan.warnings)
    return apply_prune(env, client, plan)


# ---------------------------------------------------------------- the second copy (s3.copy)


@dataclass(frozen=True)
class CopyCheck:
    """Whether the second copy holds what the primary holds: ``problems`` one line each (empty: in step)."""

    problems: list[str]
    per_kind: dict[str, int]  # kind -> backups in only one target, or differing
    reachable: bool

    @property
    def ok(self) -> bool:
        return self.reachable and not self.problems


def copy_check(located, *, reachable: bool, unreachable_reason: str = "", kinds=tuple(KINDS)) -> CopyCheck:
    """From ``second_copy.locate``: every backup missing from one target or differing is a problem."""
    diverging = [loc for loc in located if loc.diverges]
    per_kind = {kind: sum(1 for loc in diverging if loc.entry.kind == kind) for kind in kinds}
    problems = [loc.line() for loc in diverging]
    if not reachable:
        problems.insert(0, unreachable_reason or "the second copy could not be listed")
    return CopyCheck(problems, per_kind, reachable)


COPY_METRICS = (
    ("ops_backup_copy_reachable", "1 when the second copy (s3.copy) could be listed, else 0."),
    ("ops_backup_copy_diverging", "Backups present in only one of primary and copy, or differing between them."),
)


def copy_prometheus_text(env: str, result: CopyCheck) -> str:
    lines = [f"# HELP {COPY_METRICS[0][0]} {COPY_METRICS[0][1]}", f"# TYPE {COPY_METRICS[0][0]} gauge",
             f'{COPY_METRICS[0][0]}{{env="{env}"}} {1 if result.reachable else 0}',
             f"# HELP {COPY_METRICS[1][0]} {COPY_METRICS[1][1]}", f"# TYPE {COPY_METRICS[1][0]} gauge"]
    lines += [f"{COPY_METRICS[1][0]}{_labels(env, kind)} {count}" for kind, count in result.per_kind.items()]
    return "\n".join(lines) + "\n"
