"""The project's known_hosts file: fingerprints, entries, safe updates.

OpenSSH's format, so ``ssh -o UserKnownHostsFile=...`` reads the same file.
A host on a non-standard port is written ``[address]:port``.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import paramiko


def host_pattern(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


def fingerprint(key: paramiko.PKey) -> str:
    """``SHA256:...`` exactly as ``ssh-keygen -lf`` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class KeyEntry:
    pattern: str
    key_type: str
    key_b64: str

    @property
    def line(self) -> str:
        return f"{self.pattern} {self.key_type} {self.key_b64}"

    @classmethod
    def from_key(cls, pattern: str, key: paramiko.PKey) -> KeyEntry:
        return cls(pattern, key.get_name(), key.get_base64())

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(base64.b64decode(self.key_b64)).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def read_entries(path: Path) -> list[KeyEntry]:
    if not path.exists():
        return []
    entries = []
    for raw in path.read_text().splitlines():
        parts = raw.split()
        if len(parts) >= 3 and not raw.lstrip().startswith("#"):
            for pattern in parts[0].split(","):
                entries.append(KeyEntry(pattern, parts[1], parts[2]))
    return entries


def entries_for(path: Path, pattern: str) -> list[KeyEntry]:
    return [e for e in read_entries(path) if e.pattern == pattern]


def replace_host(path: Path, pattern: str, new: list[KeyEntry]) -> None:
    """Drop every entry of ``pattern`` and append ``new``; other hosts untouched.

    Written to a temp file then renamed, so a crash never leaves a half file.
    """
    kept = [e for e in read_entries(path) if e.pattern != pattern]
    text = "".join(f"{e.line}\n" for e in kept + new)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
