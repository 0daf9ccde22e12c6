"""Trusting host keys deliberately (``inv hosts.trust``), never on first use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import paramiko

from ops.inventory import Host, Target
from ops.known_hosts import KeyEntry, entries_for, host_pattern, replace_host
from ops.remote import fetch_host_keys


@dataclass
class TrustChange:
    host: Host
    pattern: str
    keys: list[KeyEntry]
    on_file: list[KeyEntry]

    @property
    def needs_write(self) -> bool:
        return {(e.key_type, e.key_b64) for e in self.keys} != {(e.key_type, e.key_b64) for e in self.on_file}

    @property
    def is_replacement(self) -> bool:
        """A key type we already trust now presents a different key."""
        known = {e.key_type: e.key_b64 for e in self.on_file}
        return any(e.key_type in known and known[e.key_type] != e.key_b64 for e in self.keys)

    def describe(self) -> str:
        state = ("CHANGED" if self.is_replacement else "new") if self.needs_write else "trusted"
        lines = [f"{self.host.name} ({self.pattern}): {state}"]
        lines += [f"  {e.key_type} {e.fingerprint}" for e in self.keys]
        return "\n".join(lines)


def plan_trust(target: Target, fetch=fetch_host_keys) -> list[TrustChange]:
    known_hosts = target.env.ssh.known_hosts
    changes = []
    for host in target.hosts:
        pattern = host_pattern(host.address, host.port)
        keys: list[paramiko.PKey] = fetch(host, timeout=target.env.ssh.connect_timeout)
        changes.append(TrustChange(host, pattern, [KeyEntry.from_key(pattern, k) for k in keys],
                                   entries_for(known_hosts, pattern)))
    return changes


def write_trust(known_hosts: Path, changes: list[TrustChange]) -> None:
    for change in changes:
        replace_host(known_hosts, change.pattern, change.keys)
