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
    # The database backup taken right before this release's destructive or locking migrations
    # (its id, for ``inv restore``); None when none was needed.
    restore_point: str | None = None

    def record(self, outcome: str, **extra) -> str:
        data = {**asdict(self), "outcome": outcome, "at": iso(utcnow()), **extra}
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_record(cls, data: dict) -> Release:
        return cls(**{k: data[k] for k in ("id", "version", "image", "digest", "env_sha256", "actor", "time",
                                           "migration_head", "restore_point") if k in data})


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


def served_sequence(entries: list[dict]) -> list[dict]:
    """The releases that served on this host, oldest first, as a rollback sees them.

    Read from the history of what was current (entries with outcome "current"): a
    deploy pushes its release; a rollback to a release still in the sequence pops
    back to it (what it rolled back from no longer counts as having served before
    it); a rollback to one that is not (``--to`` a release rolled back from earlier)
    pushes it like a deploy. So after A, B, rollback to A, B' (B's image again), the
    sequence is A, B' and the release before B' is A, never B.
    """
    stack: list[dict] = []
    for entry in entries:
        if entry.get("outcome") != "current" or "id" not in entry:
            continue
        ids = [e["id"] for e in stack]
        if entry.get("via") == "rollback" and entry["id"] in ids:
            del stack[len(ids) - ids[::-1].index(entry["id"]):]
            continue
        if ids and ids[-1] == entry["id"]:
            continue
        stack.append(entry)
    return stack


def previous_good(entries: list[dict], current: str | None, *, version: str | None = None) -> Release | None:
    """The release to roll back to from ``current`` (or the one of ``version`` to go to).

    Without ``version``: the release that served before ``current`` in
    ``served_sequence`` (when ``current`` is not in it, the newest there). With
    ``version``: of the releases of that version that ever served here, the one that
    served most recently, other than ``current``. A release that never became current
    (a failed deploy) is never a target.
    """
    if version is not None:
        latest: dict[str, dict] = {}
        for entry in entries:
            if (entry.get("outcome") == "current" and "id" in entry and entry.get("version") == version
                    and entry["id"] != current):
                latest.pop(entry["id"], None)
                latest[entry["id"]] = entry     # re-inserted: dict order = order last served
        return Release.from_record(list(latest.values())[-1]) if latest else None
    served = served_sequence(entries)
    ids = [e["id"] for e in served]
    if current in ids:
        served = served[: len(ids) - 1 - ids[::-1].index(current)]
    return Release.from_record(served[-1]) if served else None


def same_image(a: Release, b: Release) -> bool:
    """True when both releases run one image: by registry digest when both have one, else by image ref."""
    if a.digest and b.digest:
        return a.digest == b.digest
    return a.image == b.image


def no_change_reason(target: Release, now: Release | None) -> str | None:
    """Why switching from ``now`` to ``target`` would not change the code that serves; None when it would."""
    if now is None or not same_image(target, now):
        return None
    what = target.digest if target.digest and now.digest else target.image
    if target.env_sha256 and now.env_sha256 and target.env_sha256 != now.env_sha256:
        outcome = "only its env file differs, so rolling back to it would not change the code"
    else:
        outcome = "rolling back to it would change nothing"
    return f"release {target.id} runs the same image ({what}) as what serves now: {outcome}"


def current_release(gw: Gateway, host: Host) -> Release | None:
    rid = current_release_id(gw, host)
    if not rid:
        return None
    for entry in reversed(read_history(gw, host)):
        if entry.get("id") == rid:
            return Release.from_record(entry)
    return None
