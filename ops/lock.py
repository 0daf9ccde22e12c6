"""One operation per environment at a time, held on the hosts themselves.

``mkdir`` is atomic on POSIX filesystems: the lock is the directory
``{app_dir}/lock`` on every host of the environment, taken in host-name order so
two operators racing for the same fleet cannot deadlock (the loser fails on the
first host both need). ``holder.json`` inside says who, when and what.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field

from ops.audit import actor, iso, utcnow
from ops.commands import shell
from ops.errors import HostError, OpsError
from ops.inventory import Host
from ops.layout import Layout
from ops.remote import Gateway


class LockHeld(OpsError):
    """Another operation holds the environment."""


@dataclass
class Holder:
    action: str
    version: str | None = None
    actor: str = field(default_factory=actor)
    since: str = field(default_factory=lambda: iso(utcnow()))
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    def json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def describe(self) -> str:
        what = f"{self.action} {self.version}" if self.version else self.action
        return f"{self.actor} since {self.since} ({what})"


def read_holder(gw: Gateway, host: Host) -> Holder | None:
    """The holder on ``host``, None when free. A lock without a readable holder is still held."""
    lock = Layout(gw.env).lock_dir
    res = gw.query(host, shell("if [ -d {d} ]; then cat {d}/holder.json 2>/dev/null || echo '{{}}'; fi", d=lock))
    text = res.stdout.strip()
    if not text:
        return None
    try:
        data = json.loads(text)
        return Holder(**{k: data[k] for k in ("action", "version", "actor", "since", "token") if k in data})
    except (json.JSONDecodeError, TypeError):
        return Holder(action="unknown", actor="unknown", since="unknown", token="")


class EnvironmentLock:
    """Context manager: hold the lock on ``hosts`` for the block, release on every exit path."""

    def __init__(self, gw: Gateway, hosts: list[Host], holder: Holder, *, wait: float = 0.0, poll: float = 2.0):
        self.gw = gw
        self.hosts = sorted(hosts, key=lambda h: h.name)
        self.holder = holder
        self.wait = wait
        self.poll = poll
        self.acquired: list[Host] = []

    def _try(self, host: Host) -> Holder | None:
        """Take the lock on one host; return the current holder when it is taken."""
        lock = Layout(self.gw.env).lock_dir
        cmd = shell("mkdir -p \"$(dirname {d})\" && mkdir {d} 2>/dev/null && printf '%s' {h} > {d}/holder.json",
                    d=lock, h=self.holder.json())
        res = self.gw.run(host, cmd, check=False)
        if res.ok:
            return None
        holder = read_holder(self.gw, host)
        if holder is None:
            # mkdir failed and there is no lock dir: not contention but a real problem.
            raise HostError(f"cannot create {lock}: {res.stderr.strip() or 'mkdir failed'}", host=host.name,
                            hint=f"create {self.gw.env.app_dir} owned by {host.user} on the host")
        return holder

    def acquire(self) -> None:
        deadline = time.monotonic() + self.wait
        for host in self.hosts:
            while True:
                other = self._try(host)
                if other is None:
                    self.acquired.append(host)
                    break
                if time.monotonic() >= deadline:
                    self.release()
                    raise LockHeld(
                        f"environment {self.gw.env.name} is locked by {other.describe()} on {host.name}",
                        hint=(f"wait with --lock-wait SECONDS, or if that operation is dead: "
                              f"inv lock.release --host {self.gw.env.name}"))
                time.sleep(min(self.poll, max(0.0, deadline - time.monotonic())))

    def release(self) -> None:
        lock = Layout(self.gw.env).lock_dir
        # Only remove a lock that is still ours (a force-release + new holder must survive).
        cmd = shell("if grep -q {t} {d}/holder.json 2>/dev/null; then rm -rf {d}; fi", t=self.holder.token, d=lock)
        errors = []
        for host in reversed(self.acquired):
            try:
                self.gw.run(host, cmd)
            except OpsError as exc:
                errors.append(str(exc))
        self.acquired = []
        if errors:
            raise HostError("lock not released on every host: " + "; ".join(errors),
                            hint=f"inv lock.release --host {self.gw.env.name}")

    def __enter__(self) -> EnvironmentLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def status(gw: Gateway, hosts: list[Host]) -> dict[str, Holder | None]:
    results = gw.map(lambda h: read_holder(gw, h), hosts)
    results.raise_if_failed("lock status")
    return {h.name: results.ok[h.name] for h in hosts}


def force_release(gw: Gateway, hosts: list[Host]) -> dict[str, Holder | None]:
    """Remove the lock whoever holds it (after checking that operation is really dead)."""
    before = status(gw, hosts)
    lock = Layout(gw.env).lock_dir
    gw.map(lambda h: gw.run(h, ("rm", "-rf", lock)), hosts).raise_if_failed("lock release")
    return before
