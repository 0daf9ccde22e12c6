"""Backup ids, object keys and the manifest written next to every backup.

Layout in the bucket::

    <prefix>backups/<env>/<kind>/<YYYY>/<MM>/<DD>/<backup_id>.<ext>          the data
    <prefix>backups/<env>/<kind>/<YYYY>/<MM>/<DD>/<backup_id>.manifest.json  its manifest

``backup_id`` is ``<kind>-<YYYYMMDDTHHMMSSZ>-<6 hex>`` from the UTC start time, so
ids sort by time and two backups started in the same second never collide. The
manifest is written LAST: a data object without one is an interrupted backup.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import ops
from ops.backup.timeparse import as_utc, format_utc, parse_utc
from ops.errors import OpsError

# kind -> extension of its data object (before any ".enc").
KINDS: dict[str, str] = {"db": "dump", "uploads": "tar.gz"}
ENCRYPTED_EXT = "enc"
MANIFEST_SUFFIX = ".manifest.json"
FORMAT = 1

_ID = re.compile(r"(?P<kind>[a-z]+)-(?P<ts>\d{8}T\d{6}Z)-(?P<rand>[0-9a-f]{6})")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ManifestError(OpsError):
    """A manifest is missing a field, has a wrong type, or is not JSON."""


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown backup kind {kind!r} (expected one of {', '.join(KINDS)})")


def extension(kind: str, *, encrypted: bool = False) -> str:
    """``dump``, ``tar.gz``, or with client-side encryption ``dump.enc``, ``tar.gz.enc``."""
    _check_kind(kind)
    return KINDS[kind] + (f".{ENCRYPTED_EXT}" if encrypted else "")


def new_backup_id(kind: str, started: datetime) -> str:
    """``db-20261124T030000Z-a1b2c3`` from the (aware) start time."""
    _check_kind(kind)
    return f"{kind}-{as_utc(started):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def parse_backup_id(backup_id: str) -> tuple[str, datetime]:
    """(kind, start time to the second, UTC); ValueError when it is not an id."""
    m = _ID.fullmatch(backup_id or "")
    if not m or m["kind"] not in KINDS:
        raise ValueError(f"{backup_id!r} is not a backup id (like db-20261124T030000Z-a1b2c3)")
    started = datetime.strptime(m["ts"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return m["kind"], started


def backups_prefix(env, kind: str | None = None) -> str:
    """``<prefix>backups/<env>/`` or ``<prefix>backups/<env>/<kind>/`` (for listing)."""
    from ops import s3

    if kind is not None:
        _check_kind(kind)
        return s3.key(env, "backups", env.name, kind) + "/"
    return s3.key(env, "backups", env.name) + "/"


def data_key(env, kind: str, backup_id: str, started: datetime, ext: str) -> str:
    """Key of the data object; the date directories come from ``started`` (UTC)."""
    _check_kind(kind)
    id_kind, _ = parse_backup_id(backup_id)
    if id_kind != kind:
        raise ValueError(f"backup id {backup_id} is not of kind {kind}")
    ext = ext.lstrip(".")
    if not ext or "/" in ext:
        raise ValueError(f"bad extension {ext!r}")
    started = as_utc(started)
    return f"{backups_prefix(env, kind)}{started:%Y/%m/%d}/{backup_id}.{ext}"


def manifest_key(data_key: str) -> str:
    """The manifest key next to a data key (``.../<id>.dump.enc`` -> ``.../<id>.manifest.json``)."""
    directory, _, name = data_key.rpartition("/")
    backup_id = name.split(".", 1)[0]
    if not backup_id or name.endswith(MANIFEST_SUFFIX):
        raise ValueError(f"{data_key!r} is not a backup data key")
    return f"{directory}/{backup_id}{MANIFEST_SUFFIX}" if directory else f"{backup_id}{MANIFEST_SUFFIX}"


def id_from_key(key: str) -> str | None:
    """The backup id a data or manifest key belongs to, or None for unrelated keys."""
    name = key.rpartition("/")[2]
    candidate = name.split(".", 1)[0]
    try:
        parse_backup_id(candidate)
    except ValueError:
        return None
    return candidate


@dataclass
class Manifest:
    id: str
    kind: str  # "db" | "uploads"
    env: str
    object_key: str
    size: int  # bytes stored (after compression/encryption)
    sha256: str  # hex SHA-256 of the bytes stored
    started_at: datetime  # aware UTC (ISO strings are accepted and converted)
    finished_at: datetime
    tool_version: str = ops.__version__
    encryption: dict[str, Any] | None = None  # None | {"scheme": ..., ...}
    # db only
    database: str | None = None
    server_version: str | None = None
    newest_migration: str | None = None
    app_release: str | None = None
    table_counts: dict[str, int] = field(default_factory=dict)
    table_checksums: dict[str, str] = field(default_factory=dict)
    # uploads only
    file_count: int | None = None
    source_bytes: int | None = None
    # None | {"at": iso, "ok": bool, "detail": str}
    verified: dict[str, Any] | None = None
    # Keys written by a newer tool: kept and written back unchanged.
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("started_at", "finished_at"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = parse_utc(value)
            if not isinstance(value, datetime):
                raise ManifestError(f"manifest {self.id}: {name} must be a datetime, got {type(value).__name__}")
            if value.tzinfo is None:
                raise ManifestError(f"manifest {self.id}: {name} is a naive datetime", hint="use aware UTC datetimes")
            setattr(self, name, as_utc(value))

    @property
    def encrypted(self) -> bool:
        return self.encryption is not None

    def mark_verified(self, ok: bool, detail: str, at: datetime) -> Manifest:
        """Record a restore drill's outcome (in place; returns self)."""
        self.verified = {"at": format_utc(at), "ok": bool(ok), "detail": str(detail)}
        return self

    def validate(self) -> None:
        """Raise ManifestError naming the first field that is wrong."""

        def bad(what: str) -> ManifestError:
            return ManifestError(f"manifest {self.id or '?'}: {what}")

        try:
            kind, _ = parse_backup_id(self.id)
        except ValueError as exc:
            raise bad(str(exc)) from None
        if self.kind not in KINDS:
            raise bad(f"kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if kind != self.kind:
            raise bad(f"id is of kind {kind} but kind is {self.kind}")
        for name in ("env", "object_key", "tool_version"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise bad(f"{name} must be a non-empty string")
        if id_from_key(self.object_key) != self.id or self.object_key.endswith(MANIFEST_SUFFIX):
            raise bad(f"object_key {self.object_key!r} does not name this backup's data")
        if not _is_int(self.size) or self.size < 0:
            raise bad(f"size must be a non-negative integer, got {self.size!r}")
        if not isinstance(self.sha256, str) or not _SHA256.fullmatch(self.sha256):
            raise bad("sha256 must be 64 lowercase hex digits")
        if self.finished_at < self.started_at:
            raise bad(f"finished_at {format_utc(self.finished_at)} is before started_at {format_utc(self.started_at)}")
        if self.encryption is not None and not (isinstance(self.encryption, dict)
                                                and isinstance(self.encryption.get("scheme"), str)):
            raise bad("encryption must be null or an object with a 'scheme'")
        if not isinstance(self.table_counts, dict) or not all(
                isinstance(k, str) and _is_int(v) for k, v in self.table_counts.items()):
            raise bad("table_counts must map 'schema.table' to integers")
        if not isinstance(self.table_checksums, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.table_checksums.items()):
            raise bad("table_checksums must map 'schema.table' to strings")
        for name in ("file_count", "source_bytes"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 0):
                raise bad(f"{name} must be null or a non-negative integer")
        if self.verified is not None:
            v = self.verified
            if not (isinstance(v, dict) and isinstance(v.get("ok"), bool) and isinstance(v.get("at"), str)):
                raise bad("verified must be null or {at, ok, detail}")
            try:
                parse_utc(v["at"])
            except ValueError as exc:
                raise bad(f"verified.at: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(self.extra)
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            data[f.name] = format_utc(value) if isinstance(value, datetime) else value
        data["format"] = FORMAT
        return data

    def to_json(self) -> bytes:
        self.validate()
        return (json.dumps(self.to_dict(), sort_keys=True, indent=2) + "\n").encode()

    @classmethod
    def from_dict(cls, data: Any, *, source: str | None = None) -> Manifest:
        where = source or "manifest"
        if not isinstance(data, dict):
            raise ManifestError(f"{where}: not a JSON object")
        fmt = data.get("format", FORMAT)
        if not _is_int(fmt) or fmt > FORMAT:
            raise ManifestError(f"{where}: manifest format {fmt!r} is newer than this tool understands ({FORMAT})",
                                hint="upgrade the ops tool")
        known = {f.name for f in fields(cls)} - {"extra"}
        required = ("id", "kind", "env", "object_key", "size", "sha256", "started_at", "finished_at")
        missing = [name for name in required if name not in data]
        if missing:
            raise ManifestError(f"{where}: missing {', '.join(missing)}")
        kwargs = {k: v for k, v in data.items() if k in known and not (v is None and k in _NOT_NULL)}
        extra = {k: v for k, v in data.items() if k not in known and k != "format"}
        try:
            manifest = cls(**kwargs, extra=extra)
        except ValueError as exc:  # a timestamp that does not parse
            raise ManifestError(f"{where}: {exc}") from None
        except ManifestError as exc:
            raise ManifestError(f"{where}: {exc.message}") from None
        try:
            manifest.validate()
        except ManifestError as exc:
            raise ManifestError(f"{where}: {exc.message}") from None
        return manifest

    @classmethod
    def from_json(cls, data: bytes | str, *, source: str | None = None) -> Manifest:
        """Parse and validate; ``source`` (the object key) is named in errors."""
        try:
            parsed = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ManifestError(f"{source or 'manifest'}: not valid JSON ({exc})") from None
        return cls.from_dict(parsed, source=source)


# Fields with a non-null default: a stored null means "absent".
_NOT_NULL = {"tool_version", "table_counts", "table_checksums"}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
