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
from collections.abc import Callable, Mapping
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
# ``extra["reason"]`` of the backup a restore takes just before it replaces the database.
# NOTE: defined here (not in ops/restore) so retention can tell one apart without importing
# the restore code; ops/restore uses the same value (a unit test keeps the two equal).
SAFETY_REASON = "pre-restore safety backup"

_ID = re.compile(r"(?P<kind>[a-z]+)-(?P<ts>\d{8}T\d{6}Z)-(?P<rand>[0-9a-f]{6})")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ManifestError(OpsError):
    """A manifest is missing a field, has a wrong type, or is not JSON.

    ``problem`` is the reason alone and ``source`` the manifest it was found in (its
    S3 key), so the catalog can word one warning line around them.
    """

    def __init__(self, problem: str, *, source: str | None = None, hint: str | None = None):
        super().__init__(f"{source}: {problem}" if source else problem, hint=hint)
        self.problem = problem
        self.source = source

    def at(self, source: str) -> ManifestError:
        """The same problem, named after ``source`` instead."""
        return ManifestError(self.problem, source=source, hint=self.hint)


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


# ---------------------------------------------------------------- field types
#
# NOTE: this table is the ONE place that knows what each manifest field may hold.
# Manifests come from the bucket, where anything can be written (an older tool, a
# hand edit, a bit flip): every field is checked against it BEFORE any code
# compares, hashes or sorts by it, so one odd manifest is a one-line ManifestError,
# never a TypeError in the middle of `backup.list`, prune or a restore.


@dataclass(frozen=True)
class FieldType:
    """What one manifest field may hold; ``expected`` is worded for the operator."""

    expected: str
    accepts: Callable[[Any], bool]
    nullable: bool = False


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _count(value: Any) -> bool:
    return _is_int(value) and value >= 0


def _backup_id(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parse_backup_id(value)
    except ValueError:
        return False
    return True


def _time(value: Any) -> bool:
    """An aware datetime (built in Python) or an ISO 8601 string with Z or an offset (read from JSON)."""
    if isinstance(value, datetime):
        return value.tzinfo is not None
    if not isinstance(value, str):
        return False
    try:
        parse_utc(value)
    except ValueError:
        return False
    return True


def _mapping(value_ok: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, dict) and all(
        isinstance(k, str) and value_ok(v) for k, v in value.items())


def _encryption(value: Any) -> bool:
    return isinstance(value, dict) and _text(value.get("scheme"))


def _auth(value: Any) -> bool:
    return (isinstance(value, dict) and _text(value.get("scheme")) and isinstance(value.get("mac"), str)
            and bool(re.fullmatch(r"[0-9a-f]{64}", value["mac"])))


def _verified(value: Any) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("ok"), bool)
            and isinstance(value.get("at"), str) and _time(value["at"])
            and isinstance(value.get("detail", ""), str))


_TIME = FieldType("an ISO 8601 time with Z or an offset (like 2026-11-24T03:00:00Z)", _time)
_OPTIONAL_TEXT = FieldType("null or a string", lambda v: isinstance(v, str), nullable=True)
_OPTIONAL_COUNT = FieldType("null or a non-negative integer", _count, nullable=True)

FIELD_TYPES: dict[str, FieldType] = {
    "id": FieldType("a backup id like db-20261124T030000Z-a1b2c3", _backup_id),
    "kind": FieldType(f"one of {', '.join(KINDS)}", lambda v: isinstance(v, str) and v in KINDS),
    "env": FieldType("a non-empty string", _text),
    "object_key": FieldType("a non-empty string (the data object's key)", _text),
    "size": FieldType("a non-negative integer (bytes)", _count),
    "sha256": FieldType("64 lowercase hex digits", lambda v: isinstance(v, str) and bool(_SHA256.fullmatch(v))),
    "started_at": _TIME,
    "finished_at": _TIME,
    "tool_version": FieldType("a non-empty string", _text),
    "encryption": FieldType("null or an object with a 'scheme' string", _encryption, nullable=True),
    "database": _OPTIONAL_TEXT,
    "server_version": _OPTIONAL_TEXT,
    "newest_migration": _OPTIONAL_TEXT,
    "app_release": _OPTIONAL_TEXT,
    "table_counts": FieldType("an object mapping 'schema.table' to integers", _mapping(_is_int)),
    "table_checksums": FieldType("an object mapping 'schema.table' to strings", _mapping(lambda v: isinstance(v, str))),
    "file_count": _OPTIONAL_COUNT,
    "source_bytes": _OPTIONAL_COUNT,
    "verified": FieldType("null or an object {at: ISO 8601 time, ok: true or false, detail: string}", _verified,
                          nullable=True),
    "snapshot_at": FieldType("null or " + _TIME.expected, _time, nullable=True),
    "auth": FieldType("null or an object {scheme: string, mac: 64 lowercase hex digits}", _auth, nullable=True),
}
REQUIRED = ("id", "kind", "env", "object_key", "size", "sha256", "started_at", "finished_at")
# Fields with a non-null default: a stored null means "absent" (older tools wrote that).
_DEFAULTED = {name for name, spec in FIELD_TYPES.items() if not spec.nullable and name not in REQUIRED}


def describe_value(value: Any) -> str:
    """``a list``, ``a number (5)``, ``the string 'x'``: what a wrong value is, in one short phrase."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"the string {value if len(value) <= 40 else value[:37] + '...'!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def check_types(data: Mapping[str, Any]) -> None:
    """Raise ManifestError naming the first field of ``data`` whose value does not fit FIELD_TYPES.

    Fields absent from ``data`` are not checked (``from_dict`` reports missing required ones)."""
    for name, spec in FIELD_TYPES.items():
        if name not in data:
            continue
        value = data[name]
        if value is None and spec.nullable:
            continue
        if not spec.accepts(value):
            raise ManifestError(f"field {name!r} is {describe_value(value)}, expected {spec.expected}")


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
    # When the data was read (db: the moment the dump's snapshot was taken, by the server's
    # clock); what a restore to a point in time chooses by. None in older manifests.
    snapshot_at: datetime | None = None
    # None | {"scheme": ..., "mac": hex}: see ops/backup/authenticity.py (written last, over the rest).
    auth: dict[str, Any] | None = None
    # Keys written by a newer tool: kept and written back unchanged.
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("started_at", "finished_at", "snapshot_at"):
            value = getattr(self, name)
            if value is None and name == "snapshot_at":
                continue
            if isinstance(value, str):
                value = parse_utc(value)
            if not isinstance(value, datetime):
                raise ManifestError(f"field {name!r} is {describe_value(value)}, expected {_TIME.expected}",
                                    source=self._where())
            if value.tzinfo is None:
                raise ManifestError(f"field {name!r} is a naive datetime", source=self._where(),
                                    hint="use aware UTC datetimes")
            setattr(self, name, as_utc(value))

    def _where(self) -> str:
        return f"manifest {self.id}" if isinstance(self.id, str) and self.id else "manifest ?"

    @property
    def restore_point(self) -> datetime:
        """The moment whose data this backup holds: its snapshot, else (older manifests) its start,
        the earliest the snapshot can have been taken."""
        return self.snapshot_at or self.started_at

    @property
    def encrypted(self) -> bool:
        return self.encryption is not None

    @property
    def verification_failed(self) -> bool:
        """A restore drill ran and failed: this backup must not be relied on."""
        return self.verified is not None and self.verified.get("ok") is False

    @property
    def verified_ok(self) -> bool:
        return self.verified is not None and self.verified.get("ok") is True

    @property
    def is_safety(self) -> bool:
        """Taken by a restore just before it replaced the database (see SAFETY_REASON)."""
        return self.extra.get("reason") == SAFETY_REASON

    def mark_verified(self, ok: bool, detail: str, at: datetime) -> Manifest:
        """Record a restore drill's outcome (in place; returns self)."""
        self.verified = {"at": format_utc(at), "ok": bool(ok), "detail": str(detail)}
        return self

    def validate(self) -> None:
        """Raise ManifestError naming the first field that is wrong: its type (FIELD_TYPES), then how
        fields agree with each other."""
        try:
            check_types({f.name: getattr(self, f.name) for f in fields(self) if f.name in FIELD_TYPES})
            self._check_consistency()
        except ManifestError as exc:
            raise exc.at(self._where()) from None

    def _check_consistency(self) -> None:
        # NOTE: every field already has the right type here (check_types ran first).
        kind, _ = parse_backup_id(self.id)
        if kind != self.kind:
            raise ManifestError(f"id is of kind {kind} but kind is {self.kind}")
        if id_from_key(self.object_key) != self.id or self.object_key.endswith(MANIFEST_SUFFIX):
            raise ManifestError(f"object_key {self.object_key!r} does not name this backup's data")
        if self.finished_at < self.started_at:
            raise ManifestError(f"finished_at {format_utc(self.finished_at)} is before started_at "
                                f"{format_utc(self.started_at)}")
        if not isinstance(self.extra, dict):
            raise ManifestError(f"extra is {describe_value(self.extra)}, expected an object")

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
        """Check and build; every problem is a ManifestError naming ``source`` and the field."""
        where = source or "manifest"
        try:
            return cls._from_dict(data)
        except ManifestError as exc:
            raise exc.at(where) from None
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            # NOTE: FIELD_TYPES should make this unreachable; if a check is ever missing, one odd
            # manifest must still be a skipped backup with a warning, not a crashed listing.
            raise ManifestError(f"unreadable ({type(exc).__name__}: {exc})", source=where) from None

    @classmethod
    def _from_dict(cls, data: Any) -> Manifest:
        if not isinstance(data, dict):
            raise ManifestError(f"not a JSON object (it is {describe_value(data)})")
        fmt = data.get("format", FORMAT)
        if not _is_int(fmt):
            raise ManifestError(f"field 'format' is {describe_value(fmt)}, expected an integer")
        if fmt > FORMAT:
            raise ManifestError(f"manifest format {fmt!r} is newer than this tool understands ({FORMAT})",
                                hint="upgrade the ops tool")
        missing = [name for name in REQUIRED if name not in data]
        if missing:
            raise ManifestError(f"missing {', '.join(missing)}")
        data = {k: v for k, v in data.items() if not (v is None and k in _DEFAULTED)}
        check_types(data)
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known and k != "format"}
        manifest = cls(**kwargs, extra=extra)
        manifest.validate()
        return manifest

    @classmethod
    def from_json(cls, data: bytes | str, *, source: str | None = None) -> Manifest:
        """Parse and validate; ``source`` (the object key) is named in errors."""
        try:
            parsed = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ManifestError(f"not valid JSON ({exc})", source=source or "manifest") from None
        return cls.from_dict(parsed, source=source)
