"""Release identity and the per-host history of releases.

A release is one image (by tag and digest) plus one env file (by checksum), made at
one time by one actor. Each web host appends a line to ``history.jsonl`` whenever a
release becomes current there, fails there or is rolled back there; ``current``
holds the release id nginx points at.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime

from ops.audit import actor, iso, read_jsonl, utcnow
from ops.commands import shell
from ops.inventory import Host
from ops.layout import Layout
from ops.remote import Gateway

VERSION_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")


def release_id(version: str, when: datetime) -> str:
    return f"{when.strftime('%Y%m%dT%H%M%SZ')}-{version}"


def env_checksum(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@dataclass
class Release:
    id: str
    version: str
    image: str  # as the hosts pull it
    digest: str = ""  # registry digest (sha256:...) when known
    env_sha256: str = ""
    actor: str = field(default_factory=actor)
    time: str = field(default_factory=lambda: iso(utcnow()))
    # Newest Prisma migration applied when this release went out ("" = none; None = unknown).
    migration_head: str | None = None

    def record(self, outcome: str, **extra) -> str:
        data = {**asdict(self), "outcome": outcome, "at": iso(utcnow()), **extra}
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_record(cls, data: dict) -> Release:
        return cls(**{k: data[k] for k in ("id", "version", "image", "digest", "env_sha256", "actor", "time",
                                           "migration_head") if k in data})


def append_history(gw: Gateway, host: Host, release: Release, outcome: str, **extra) -> None:
    line = release.record(outcome, host=host.name, **extra)
    layout = Layout(gw.env)
    gw.run(host, shell("printf '%s\\n' {line} >> {p}", line=line, p=layout.history))


def read_history(gw: Gateway, host: Host) -> list[dict]:
    return read_jsonl(gw, host, Layout(gw.env).history)


def current_release_id(gw: Gateway, host: Host) -> str | None:
    res = gw.query(host, shell("cat {p} 2>/dev/null || true", p=Layout(gw.env).path("current")))
    return res.stdout.strip() or None


def set_current(gw: Gateway, host: Host, rid: str) -> None:
    path = Layout(gw.env).path("current")
    gw.run(host, shell("printf '%s\\n' {r} > {p}.tmp && mv {p}.tmp {p}", r=rid, p=path))


def releases_from_history(entries: list[dict]) -> list[dict]:
    """One row per release id, newest first, with its latest outcome on this host."""
    latest: dict[str, dict] = {}
    for entry in entries:
        if "id" in entry:
            latest[entry["id"]] = entry
    return sorted(latest.values(), key=lambda e: e["id"], reverse=True)


def previous_good(entries: list[dict], current: str | None, *, version: str | None = None) -> Release | None:
    """The release deployed before ``current`` (or the newest one with ``version``).

    Only releases that were once current count (a failed one never served). Ordered
    by release id (deploy time), like Capistrano: after rolling back from v2 to v1,
    the previous release is the one deployed before v1, not v2 again.
    """
    served = {}
    for entry in entries:
        if entry.get("outcome") == "current" and "id" in entry:
            served.setdefault(entry["id"], entry)
    ordered = sorted(served, reverse=True)
    if version is not None:
        candidates = [rid for rid in ordered if served[rid].get("version") == version and rid != current]
    elif current in served:
        candidates = ordered[ordered.index(current) + 1:]
    else:
        candidates = ordered
    return Release.from_record(served[candidates[0]]) if candidates else None


def current_release(gw: Gateway, host: Host) -> Release | None:
    rid = current_release_id(gw, host)
    if not rid:
        return None
    for entry in reversed(read_history(gw, host)):
        if entry.get("id") == rid:
            return Release.from_record(entry)
    return None
