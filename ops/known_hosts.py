"""The project's known_hosts file: fingerprints, entries, safe updates.

OpenSSH's format, so ``ssh -o UserKnownHostsFile=...`` reads the same file.
A host on a non-standard port is written ``[address]:port``. Lines this module does
not manage (comments, ``@revoked``/``@cert-authority`` markers) are kept verbatim.
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


def _sha256_fingerprint(blob: bytes) -> str:
    """``SHA256:...`` exactly as ``ssh-keygen -lf`` prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def fingerprint(key: paramiko.PKey) -> str:
    return _sha256_fingerprint(key.asbytes())


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
        return _sha256_fingerprint(base64.b64decode(self.key_b64))


def _is_plain_entry(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith(("#", "@")) and len(stripped.split()) >= 3


def read_entries(path: Path) -> list[KeyEntry]:
    """Plain host key entries; marker and comment lines are not host entries."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        if _is_plain_entry(line):
            hosts, key_type, key_b64 = line.split()[:3]
            entries.extend(KeyEntry(pattern, key_type, key_b64) for pattern in hosts.split(","))
    return entries


def entries_for(path: Path, pattern: str) -> list[KeyEntry]:
    return [e for e in read_entries(path) if e.pattern == pattern]


def replace_host(path: Path, pattern: str, new: list[KeyEntry]) -> None:
    """Drop ``pattern`` from every plain entry, append ``new``; every other line kept as is.

    Written to a temp file then renamed, so a crash never leaves a half file.
    """
    kept: list[str] = []
    for line in path.read_text().splitlines() if path.exists() else []:
        if _is_plain_entry(line):
            hosts, rest = line.split(None, 1)
            others = [h for h in hosts.split(",") if h != pattern]
            if not others:
                continue
            line = f"{','.join(others)} {rest}"
        kept.append(line)
    text = "".join(f"{line}\n" for line in kept + [e.line for e in new])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
