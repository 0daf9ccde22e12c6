"""What backups exist: list the bucket, read manifests, pick one by time or id.

Only a backup with a readable manifest exists. Data objects with no manifest
object at all (an interrupted backup) are reported as ``orphans``; manifests that
cannot be read or do not parse (a field of the wrong type included: see
``manifest.FIELD_TYPES``), or that name a data object that is gone, are ``skipped``
with one line each in ``warnings`` — never chosen for a restore, and their data is
not an orphan either (a transient read error must not make prune delete it).
Every function below works from the good entries only, so one bad manifest never
stops `backup.list`, check, prune, verify or a restore.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from botocore.exceptions import BotoCoreError, ClientError

from ops.backup.manifest import (
    KINDS,
    MANIFEST_SUFFIX,
    Manifest,
    ManifestError,
    backups_prefix,
    id_from_key,
    manifest_key,
    parse_backup_id,
)
from ops.backup.timeparse import as_utc, format_utc
from ops.errors import OpsError

# Manifests are small; reading them in parallel keeps `backup.list` of a year of
# backups (1,500+ objects on real S3) to a couple of seconds.
READ_WORKERS = 16


class BackupNotFound(OpsError):
    """No backup matches the requested time, id or kind."""


@dataclass(frozen=True)
class Entry:
    """One backup: its manifest (None for an orphan), data key and listing facts.

    ``etag`` is the data object's, ``manifest_etag``/``manifest_sha256`` describe the manifest
    bytes as they were read: prune compares them again right before deleting.
    """

    manifest: Manifest | None
    data_key: str
    last_modified: datetime | None = None
    size: int | None = None  # size of the data object in the listing
    etag: str | None = None
    manifest_etag: str | None = None
    manifest_sha256: str | None = None

    @property
    def good(self) -> bool:
        return self.manifest is not None

    @property
    def manifest_key(self) -> str:
        return manifest_key(self.data_key)

    @property
    def id(self) -> str:
        return self.manifest.id if self.manifest else (id_from_key(self.data_key) or self.data_key)

    @property
    def kind(self) -> str | None:
        if self.manifest:
            return self.manifest.kind
        try:
            return parse_backup_id(self.id)[0]
        except ValueError:
            return None

    @property
    def started_at(self) -> datetime | None:
        if self.manifest:
            return self.manifest.started_at
        try:
            return parse_backup_id(self.id)[1]
        except ValueError:
            return None

    @property
    def finished_at(self) -> datetime | None:
        return self.manifest.finished_at if self.manifest else None


@dataclass(frozen=True)
class Skipped:
    """A manifest object that exists but was not used. Its data, if any, is KEPT: it is not an
    orphan (a transient read error or a hand-edited manifest must never make prune delete it)."""

    manifest_key: str
    reason: str
    data_keys: tuple[str, ...] = ()

    @property
    def id(self) -> str | None:
        return id_from_key(self.manifest_key)

    @property
    def warning(self) -> str:
        return f"manifest {self.manifest_key}: {self.reason} — skipped"


class Listing(list):
    """``list[Entry]`` of good backups, newest first, plus what was left out."""

    def __init__(self, entries: Iterable[Entry] = (), *, orphans: list[Entry] | None = None,
                 warnings: list[str] | None = None, skipped: list[Skipped] | None = None):
        super().__init__(entries)
        self.orphans: list[Entry] = orphans or []
        self.warnings: list[str] = warnings or []
        self.skipped: list[Skipped] = skipped or []


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    last_modified: datetime
    etag: str | None = None


@dataclass(frozen=True)
class ManifestRead:
    """One manifest object as read now: the manifest, or why there is none."""

    key: str
    manifest: Manifest | None = None
    etag: str | None = None
    sha256: str | None = None  # of the stored bytes
    problem: str | None = None
    missing: bool = False  # the object does not exist (any more)


def s3_error(exc: Exception, action: str, bucket: str) -> OpsError:
    """A one-line OpsError for a boto3 failure (never includes credentials)."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "?")
        text = exc.response.get("Error", {}).get("Message", "") or code
        hints = {
            "NoSuchBucket": f"create bucket {bucket} or fix s3.bucket in the inventory",
            "AccessDenied": "check the AWS credentials (ops env file or boto3 chain) and the bucket policy",
            "InvalidAccessKeyId": "check AWS_ACCESS_KEY_ID in the ops env file",
            "SignatureDoesNotMatch": "check AWS_SECRET_ACCESS_KEY in the ops env file",
        }
        return OpsError(f"S3 {action} in bucket {bucket} failed: {code}: {text}",
                        hint=hints.get(code, "check s3 settings in the inventory and the credentials"))
    return OpsError(f"S3 {action} in bucket {bucket} failed: {exc}",
                    hint="check s3.endpoint_url / region and the network")


def _is_missing(exc: Exception) -> bool:
    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404")


def read_manifest(client, bucket: str, key: str) -> ManifestRead:
    """Read and parse one manifest; never raises for a bad or missing manifest."""
    try:
        response = client.get_object(Bucket=bucket, Key=key)
        body = response["Body"].read()
    except (ClientError, BotoCoreError) as exc:
        if _is_missing(exc):
            return ManifestRead(key, problem="it is gone", missing=True)
        return ManifestRead(key, problem=s3_error(exc, "read", bucket).message)
    etag, digest = response.get("ETag"), hashlib.sha256(body).hexdigest()
    try:
        manifest = Manifest.from_json(body, source=key)
    except ManifestError as exc:
        problem = f"{exc.problem} ({exc.hint})" if exc.hint else exc.problem
        return ManifestRead(key, etag=etag, sha256=digest, problem=problem)
    return ManifestRead(key, manifest, etag, digest)


def _list_objects(client, bucket: str, prefix: str) -> dict[str, ObjectInfo]:
    objects: dict[str, ObjectInfo] = {}
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                objects[obj["Key"]] = ObjectInfo(obj["Size"], as_utc(obj["LastModified"]), obj.get("ETag"))
    except (ClientError, BotoCoreError) as exc:
        raise s3_error(exc, f"listing {prefix}", bucket) from None
    return objects


def _read_all(client, bucket: str, keys: list[str]) -> list[ManifestRead]:
    with ThreadPoolExecutor(max_workers=max(1, min(READ_WORKERS, len(keys)))) as pool:
        return list(pool.map(lambda key: read_manifest(client, bucket, key), keys))


def _use(env, read: ManifestRead, objects: dict[str, ObjectInfo], data_keys: list[str]) -> Entry | Skipped:
    """The Entry a manifest read gives, or why it is skipped (with the data it keeps)."""
    backup_id = id_from_key(read.key)
    mine = tuple(k for k in data_keys if id_from_key(k) == backup_id)
    m = read.manifest
    if m is None:
        return Skipped(read.key, read.problem or "unreadable", mine)
    if m.id != backup_id:
        return Skipped(read.key, f"it describes backup {m.id}", mine)
    if m.env != env.name:
        return Skipped(read.key, f"it belongs to environment {m.env}, not {env.name}", mine)
    if m.object_key not in objects:
        return Skipped(read.key, f"its data object {m.object_key} is missing", mine)
    info = objects[m.object_key]
    return Entry(m, m.object_key, info.last_modified, info.size, info.etag, read.etag, read.sha256)


def list_backups(env, client, kind: str | None = None) -> Listing:
    """Every good backup of ``env`` (optionally one kind), newest first (by finished_at)."""
    if kind is not None and kind not in KINDS:
        raise OpsError(f"unknown backup kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")
    bucket = env.s3.bucket
    objects = _list_objects(client, bucket, backups_prefix(env, kind))

    warnings: list[str] = []
    manifest_keys: list[str] = []
    data_keys: list[str] = []
    for key in sorted(objects):
        if id_from_key(key) is None:
            warnings.append(f"ignored {key}: not a backup object")
        elif key.endswith(MANIFEST_SUFFIX):
            manifest_keys.append(key)
        else:
            data_keys.append(key)

    entries: list[Entry] = []
    skipped: list[Skipped] = []
    for read in _read_all(client, bucket, manifest_keys):
        used = _use(env, read, objects, data_keys)
        if isinstance(used, Skipped):
            skipped.append(used)
            warnings.append(used.warning)
            continue
        if used.size != used.manifest.size:
            warnings.append(f"{used.id}: object is {used.size} bytes but the manifest says "
                            f"{used.manifest.size} (damaged?)")
        entries.append(used)

    # NOTE: an orphan has NO manifest object at all (an interrupted backup). Data whose
    # manifest exists but was skipped is not an orphan: prune must never delete it.
    claimed = {e.data_key for e in entries}
    with_manifest = {id_from_key(key) for key in manifest_keys}
    orphans = [Entry(None, key, objects[key].last_modified, objects[key].size, objects[key].etag)
               for key in data_keys if key not in claimed and id_from_key(key) not in with_manifest]
    entries.sort(key=lambda e: (e.finished_at, e.started_at, e.id), reverse=True)
    orphans.sort(key=lambda e: (e.last_modified, e.data_key), reverse=True)
    return Listing(entries, orphans=orphans, warnings=warnings, skipped=skipped)


def _describe(entry: Entry) -> str:
    return f"{entry.id} (data as of {format_utc(restore_point(entry))})"


def restore_point(entry: Entry) -> datetime:
    """The moment a backup's data is from (its snapshot; older manifests: its start)."""
    return entry.manifest.restore_point


def paste_time(entry: Entry) -> str:
    """``restore_point`` rounded UP to the second, as ``--at`` takes it: pasting it picks this backup."""
    point = as_utc(restore_point(entry))
    whole = point.replace(microsecond=0)
    return format_utc(whole if whole == point else whole + timedelta(seconds=1))


def find_at(entries: Iterable[Entry], at: datetime, kind: str) -> Entry:
    """The newest good backup of ``kind`` whose data is from at or before ``at``.

    NOTE: by snapshot (start) time, not finish time: a dump that finished by ``at`` holds the data
    of when it started, and one that started before ``at`` but finished after it is the closest."""
    if kind not in KINDS:
        raise OpsError(f"unknown backup kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")
    at = as_utc(at)
    candidates = [e for e in entries if e.good and e.kind == kind]
    if not candidates:
        raise BackupNotFound(f"no {kind} backups found",
                             hint=f"take one with `inv backup.{kind} --host ENV`; see `inv backup.list --host ENV`")
    eligible = [e for e in candidates if restore_point(e) <= at]
    oldest = min(candidates, key=lambda e: (restore_point(e), e.id))
    newest_ = max(candidates, key=lambda e: (restore_point(e), e.id))
    if not eligible:
        raise BackupNotFound(
            f"no {kind} backup holds data from at or before {format_utc(at)}: oldest is {_describe(oldest)}, "
            f"newest is {_describe(newest_)}",
            hint=f"pick a time at or after {paste_time(oldest)}")
    return max(eligible, key=lambda e: (restore_point(e), e.id))


def newest(entries: Iterable[Entry], kind: str) -> Entry | None:
    """The newest good backup of ``kind``, or None."""
    candidates = [e for e in entries if e.good and e.kind == kind]
    return max(candidates, key=lambda e: (e.finished_at, e.id)) if candidates else None


def get(entries: Iterable[Entry], backup_id: str) -> Entry:
    """The good backup with exactly this id."""
    orphans = getattr(entries, "orphans", [])
    skipped = getattr(entries, "skipped", [])
    entries = list(entries)
    for entry in entries:
        if entry.good and entry.id == backup_id:
            return entry
    for s in skipped:
        if s.id == backup_id:
            raise BackupNotFound(f"backup {backup_id} cannot be used: its {s.warning}",
                                 hint="pick another id from `inv backup.list --host ENV`")
    if any(o.id == backup_id for o in orphans):
        raise BackupNotFound(f"backup {backup_id} is incomplete (its data has no manifest): it was interrupted",
                             hint="pick another id from `inv backup.list --host ENV`")
    good = [e for e in entries if e.good]
    if not good:
        raise BackupNotFound(f"no backup {backup_id}: there are no backups", hint="see `inv backup.list --host ENV`")
    try:
        same_kind = [e for e in good if e.kind == parse_backup_id(backup_id)[0]] or good
    except ValueError:
        same_kind = good
    latest = max(same_kind, key=lambda e: (e.finished_at, e.id))
    raise BackupNotFound(f"no backup {backup_id} (newest is {latest.id})",
                         hint="copy an id from `inv backup.list --host ENV`")
