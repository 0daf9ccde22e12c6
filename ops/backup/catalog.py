"""What backups exist: list the bucket, read manifests, pick one by time or id.

Only a backup with a readable manifest exists. Data objects with no manifest
object at all (an interrupted backup) are reported as ``orphans``; manifests that
cannot be read or do not parse, or that name a data object that is gone, are
skipped with one line each in ``warnings`` — never chosen for a restore, and their
data is not an orphan either (a transient read error must not make prune delete it).
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

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
    """One backup: its manifest (None for an orphan), data key and listing facts."""

    manifest: Manifest | None
    data_key: str
    last_modified: datetime | None = None
    size: int | None = None  # size of the data object in the listing

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


class Listing(list):
    """``list[Entry]`` of good backups, newest first, plus what was left out."""

    def __init__(self, entries: Iterable[Entry] = (), *, orphans: list[Entry] | None = None,
                 warnings: list[str] | None = None):
        super().__init__(entries)
        self.orphans: list[Entry] = orphans or []
        self.warnings: list[str] = warnings or []


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


def list_backups(env, client, kind: str | None = None) -> Listing:
    """Every good backup of ``env`` (optionally one kind), newest first (by finished_at)."""
    if kind is not None and kind not in KINDS:
        raise OpsError(f"unknown backup kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")
    bucket = env.s3.bucket
    prefix = backups_prefix(env, kind)
    objects: dict[str, tuple[int, datetime]] = {}
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                objects[obj["Key"]] = (obj["Size"], as_utc(obj["LastModified"]))
    except (ClientError, BotoCoreError) as exc:
        raise s3_error(exc, f"listing {prefix}", bucket) from None

    warnings: list[str] = []
    manifest_keys: list[str] = []
    data_keys: list[str] = []
    for key in sorted(objects):
        backup_id = id_from_key(key)
        if backup_id is None:
            warnings.append(f"ignored {key}: not a backup object")
        elif key.endswith(MANIFEST_SUFFIX):
            manifest_keys.append(key)
        else:
            data_keys.append(key)

    def read(key: str) -> Manifest | str:
        try:
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            return f"skipped {key}: {s3_error(exc, 'read', bucket).message}"
        try:
            return Manifest.from_json(body, source=key)
        except ManifestError as exc:
            return f"skipped {exc}"

    with ThreadPoolExecutor(max_workers=max(1, min(READ_WORKERS, len(manifest_keys)))) as pool:
        results = list(pool.map(read, manifest_keys))

    entries: list[Entry] = []
    claimed: set[str] = set()
    for key, result in zip(manifest_keys, results, strict=True):
        if isinstance(result, str):
            warnings.append(result)
            continue
        m = result
        if m.id != id_from_key(key):
            warnings.append(f"skipped {key}: it describes backup {m.id}")
            continue
        if m.env != env.name:
            warnings.append(f"skipped {key}: it belongs to environment {m.env}, not {env.name}")
            continue
        if m.object_key not in objects:
            warnings.append(f"skipped {m.id}: its data object {m.object_key} is missing")
            continue
        size, modified = objects[m.object_key]
        if size != m.size:
            warnings.append(f"{m.id}: object is {size} bytes but the manifest says {m.size} (damaged?)")
        claimed.add(m.object_key)
        entries.append(Entry(m, m.object_key, modified, size))

    # An orphan has NO manifest object at all. Data whose manifest exists but could
    # not be read (transient error, newer format) is not an orphan: prune must never
    # delete it.
    with_manifest = {id_from_key(key) for key in manifest_keys}
    orphans = [Entry(None, key, objects[key][1], objects[key][0]) for key in data_keys
               if key not in claimed and id_from_key(key) not in with_manifest]
    entries.sort(key=lambda e: (e.finished_at, e.started_at, e.id), reverse=True)
    orphans.sort(key=lambda e: (e.last_modified, e.data_key), reverse=True)
    return Listing(entries, orphans=orphans, warnings=warnings)


def _describe(entry: Entry) -> str:
    return f"{entry.id} (finished {format_utc(entry.finished_at)})"


def find_at(entries: Iterable[Entry], at: datetime, kind: str) -> Entry:
    """The newest good backup of ``kind`` that finished at or before ``at``."""
    if kind not in KINDS:
        raise OpsError(f"unknown backup kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")
    at = as_utc(at)
    candidates = [e for e in entries if e.good and e.kind == kind]
    if not candidates:
        raise BackupNotFound(f"no {kind} backups found",
                             hint=f"take one with `inv backup.{kind} --host ENV`; see `inv backup.list --host ENV`")
    eligible = [e for e in candidates if e.finished_at <= at]
    oldest = min(candidates, key=lambda e: (e.finished_at, e.id))
    newest = max(candidates, key=lambda e: (e.finished_at, e.id))
    if not eligible:
        raise BackupNotFound(
            f"no {kind} backup finished at or before {format_utc(at)}: oldest is {_describe(oldest)}, "
            f"newest is {_describe(newest)}",
            hint=f"pick a time at or after {format_utc(oldest.finished_at)}")
    return max(eligible, key=lambda e: (e.finished_at, e.id))


def newest(entries: Iterable[Entry], kind: str) -> Entry | None:
    """The newest good backup of ``kind``, or None."""
    candidates = [e for e in entries if e.good and e.kind == kind]
    return max(candidates, key=lambda e: (e.finished_at, e.id)) if candidates else None


def get(entries: Iterable[Entry], backup_id: str) -> Entry:
    """The good backup with exactly this id."""
    orphans = getattr(entries, "orphans", [])
    entries = list(entries)
    for entry in entries:
        if entry.good and entry.id == backup_id:
            return entry
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
