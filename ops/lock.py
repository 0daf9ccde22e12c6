"""One operation per environment at a time, held on the hosts themselves.

``mkdir`` is atomic on POSIX filesystems: the lock is the directory
``{app_dir}/lock`` on every host of the environment, taken in host-name order so
two operators racing for the same fleet cannot deadlock (the loser fails on the
first host both need). ``holder.json`` inside says who, from which machine and
process, when and what; ``heartbeat`` is touched every ``HEARTBEAT_SECONDS`` by
the holder while it runs, so a lock whose operator died (``kill -9``, a laptop
closed, a lost network) shows as stale instead of blocking silently forever.

Taking the lock is all-or-nothing: a failure or Ctrl-C on a later host releases
the hosts already taken. Releasing removes only a lock that still carries our
token, so a force-release followed by someone else's lock is never undone.

Scopes (``Holder.scope``), so that a long backup never holds up an emergency deploy:

- ``environment`` (deploy, rollback, prune of releases, accessory reboot...): the directory
  ``lock``; one such operation at a time.
- ``backup`` (backup.db, backup.uploads, backup.prune): the directory ``lock-backup`` beside it;
  one backup at a time, and none while an ``exclusive`` operation holds ``lock``. A deploy
  or rollback runs beside it.
- ``exclusive`` (restore, restore.uploads): ``lock``, and only while no backup holds
  ``lock-backup``: a restore excludes everything.

Each side makes its directory, then looks at the other one, in one shell command; the
one that finds the other backs out (removes its own directory). Both write before they
look, so two racing can both back out (and retry with ``--lock-wait``), never both run.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field

from ops.audit import actor, iso, utcnow
from ops.commands import shell
from ops.errors import HostError, OpsError
from ops.interrupts import shielded_from_ctrl_c
from ops.inventory import Host
from ops.layout import Layout
from ops.remote import Gateway

HEARTBEAT_SECONDS = 15.0
SCOPES = ("environment", "backup", "exclusive")
# The exit status of the take-the-lock command when the other scope's lock forbids ours.
_CONFLICT = 3
# NOTE: several missed beats, not one: a slow SSH round trip must not make a live lock look dead.
STALE_AFTER_SECONDS = 90.0


class LockHeld(OpsError):
    """Another operation holds the environment."""


@dataclass
class Holder:
    action: str
    version: str | None = None
    actor: str = field(default_factory=actor)
    since: str = field(default_factory=lambda: iso(utcnow()))
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    machine: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    scope: str = "environment"

    def json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def describe(self) -> str:
        what = f"{self.action} {self.version}" if self.version else self.action
        proc = f", pid {self.pid} on {self.machine}" if self.pid else ""
        return f"{self.actor} since {self.since} ({what}{proc})"

    @classmethod
    def from_json(cls, text: str) -> Holder:
        try:
            data = json.loads(text)
            known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
            return cls(**{"machine": "", "pid": 0, **known})
        except (json.JSONDecodeError, TypeError):
            return cls(action="unknown", actor="unknown", since="unknown", token="", machine="", pid=0)


@dataclass
class LockState:
    """The lock as found on one host."""

    holder: Holder
    age: float | None  # seconds since the last heartbeat, by the host's clock
    stale: bool = False
    why: str = ""

    def describe(self) -> str:
        text = self.holder.describe()
        return f"STALE ({self.why}): {text}" if self.stale else text


def judge(holder: Holder, age: float | None, *, here: str | None = None) -> LockState:
    """Is the holder gone? Its process is dead on this machine, or its heartbeat stopped."""
    here = here or socket.gethostname()
    if holder.pid and holder.machine == here and not _alive(holder.pid):
        return LockState(holder, age, True, f"process {holder.pid} on {here} is gone")
    if age is not None and age > STALE_AFTER_SECONDS:
        return LockState(holder, age, True, f"no heartbeat for {int(age)}s")
    return LockState(holder, age)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def lock_dir(gw: Gateway, scope: str = "environment") -> str:
    """Where a lock of ``scope`` lives: ``lock``, or ``lock-backup`` beside it for backups."""
    if scope not in SCOPES:
        raise ValueError(f"unknown lock scope {scope!r}")
    main = Layout(gw.env).lock_dir
    return main + "-backup" if scope == "backup" else main


def _take_command(gw: Gateway, holder: Holder) -> str:
    """mkdir + holder + heartbeat; then, per scope, back out (exit 3) if the other lock forbids ours."""
    mine, main, backup = lock_dir(gw, holder.scope), lock_dir(gw), lock_dir(gw, "backup")
    take = ("mkdir -p \"$(dirname {d})\" && mkdir {d} 2>/dev/null && printf '%s' {h} > {d}/holder.json "
            "&& touch {d}/heartbeat")
    if holder.scope == "exclusive":
        # NOTE: our holder is written before we look: a backup looking after us sees it.
        return shell(take + " && if [ -d {b} ]; then rm -rf {d}; exit 3; fi", d=mine, h=holder.json(), b=backup)
    if holder.scope == "backup":
        # A restore (this tool's "exclusive", or an older tool's restore under the main lock) forbids it.
        return shell(take + " && if [ -d {m} ] && grep -qE {pattern} {m}/holder.json 2>/dev/null; then rm -rf {d}; "
                     "exit 3; fi", d=mine, h=holder.json(), m=main,
                     pattern='"scope": "exclusive"|"action": "restore')
    return shell(take, d=mine, h=holder.json())


def read_state(gw: Gateway, host: Host, scope: str = "environment") -> LockState | None:
    """The lock of ``scope`` on ``host``, None when free. A lock without a readable holder is still held."""
    lock = lock_dir(gw, scope)
    # Age by the host's own clock (no skew with the operator's): heartbeat, else the dir itself.
    res = gw.query(host, shell(
        "if [ -d {d} ]; then now=$(date +%s); "
        "hb=$(stat -c %Y {d}/heartbeat 2>/dev/null || stat -c %Y {d} 2>/dev/null || echo \"$now\"); "
        "echo $((now - hb)); cat {d}/holder.json 2>/dev/null || echo '{{}}'; fi", d=lock))
    text = res.stdout.strip()
    if not text:
        return None
    first, _, rest = text.partition("\n")
    try:
        age: float | None = float(first)
    except ValueError:
        age, rest = None, text
    return judge(Holder.from_json(rest.strip() or "{}"), age)


def release_hint(env_name: str) -> str:
    return f"inv lock.release --host {env_name}"


class EnvironmentLock:
    """Context manager: hold the lock on ``hosts`` for the block, release on every exit path."""

    def __init__(self, gw: Gateway, hosts: list[Host], holder: Holder, *, wait: float = 0.0, poll: float = 2.0,
                 heartbeat: float = HEARTBEAT_SECONDS):
        if holder.scope not in SCOPES:
            raise ValueError(f"unknown lock scope {holder.scope!r}")
        self.gw = gw
        self.dir = lock_dir(gw, holder.scope)
        self.hosts = sorted(hosts, key=lambda h: h.name)
        self.holder = holder
        self.wait = wait
        self.poll = poll
        self.heartbeat_every = heartbeat
        self.acquired: list[Host] = []
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def _try(self, host: Host) -> LockState | None:
        """Take the lock on one host; return the current holder's state when it is taken."""
        lock = self.dir
        res = self.gw.run(host, _take_command(self.gw, self.holder), check=False)
        if res.ok:
            return None
        if res.exit_code == _CONFLICT:
            other = "backup" if self.holder.scope == "exclusive" else "environment"
            state = read_state(self.gw, host, other)
            # Gone in between: say so as a (retryable) holder rather than reporting nothing.
            return state or LockState(Holder("an operation that just ended", actor="?", since="now", token="",
                                             machine="", pid=0, scope=other), None)
        state = read_state(self.gw, host, self.holder.scope)
        if state is None:
            # mkdir failed and there is no lock dir: not contention but a real problem.
            raise HostError(f"cannot create {lock}: {res.stderr.strip() or 'mkdir failed'}", host=host.name,
                            hint=f"create {self.gw.env.app_dir} owned by {host.user} on the host")
        return state

    def acquire(self) -> None:
        """All hosts or none: any failure or Ctrl-C here releases the hosts already taken."""
        deadline = time.monotonic() + self.wait
        try:
            for host in self.hosts:
                while True:
                    other = self._try(host)
                    if other is None:
                        self.acquired.append(host)
                        break
                    if time.monotonic() >= deadline:
                        raise self._held(host, other)
                    time.sleep(min(self.poll, max(0.0, deadline - time.monotonic())))
        except BaseException as exc:
            with shielded_from_ctrl_c(lambda line: None):
                try:
                    self.release()
                except OpsError as rel:
                    if isinstance(exc, OpsError):
                        exc.also(str(rel))
            raise
        self._start_heartbeat()

    def _held(self, host: Host, other: LockState) -> LockHeld:
        name = self.gw.env.name
        if other.holder.scope != self.holder.scope and not other.stale:
            why = ("a backup is running: a restore excludes everything, so it waits for the backup"
                   if self.holder.scope == "exclusive" else "a restore is running: backups wait for it")
            return LockHeld(f"environment {name}: {why} ({other.describe()} on {host.name})",
                            hint="wait with --lock-wait SECONDS (deploys and rollbacks are not blocked by backups)")
        if other.stale:
            return LockHeld(f"environment {name} is locked by {other.describe()} on {host.name}",
                            hint=f"that operation is gone; check nothing of it still runs, then: {release_hint(name)}")
        return LockHeld(f"environment {name} is locked by {other.describe()} on {host.name}",
                        hint=f"wait with --lock-wait SECONDS, or if that operation is dead: {release_hint(name)}")

    # -- heartbeat -------------------------------------------------------
    def _start_heartbeat(self) -> None:
        if self.gw.dry_run or not self.acquired or self.heartbeat_every <= 0:
            return
        self._stop.clear()
        self._beat = threading.Thread(target=self._beat_loop, daemon=True, name="ops-lock-heartbeat")
        self._beat.start()

    def _beat_loop(self) -> None:
        lock = self.dir
        # Touch only a lock that is still ours (never keep a force-released lock's successor alive).
        cmd = shell("grep -q {t} {d}/holder.json 2>/dev/null && touch {d}/heartbeat", t=self.holder.token, d=lock)
        while not self._stop.wait(self.heartbeat_every):
            for host in list(self.acquired):
                try:
                    self.gw.run(host, cmd, check=False, timeout=self.heartbeat_every)
                except OpsError:
                    pass  # a host that stopped answering: the operation itself will find out

    def _stop_heartbeat(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=self.heartbeat_every + 5)
            self._beat = None

    # -- release ---------------------------------------------------------
    def release(self) -> None:
        """Release every host taken; raise one HostError naming the hosts where that failed."""
        self._stop_heartbeat()
        lock = self.dir
        # Only remove a lock that is still ours (a force-release + new holder must survive).
        cmd = shell("if grep -q {t} {d}/holder.json 2>/dev/null; then rm -rf {d}; fi", t=self.holder.token, d=lock)
        errors = {}
        for host in reversed(self.acquired):
            try:
                self.gw.run(host, cmd)
            except OpsError as exc:
                errors[host.name] = exc.message
        self.acquired = []
        if errors:
            raise HostError(
                "lock not released on " + ", ".join(errors) + " (" + "; ".join(errors.values()) + "); it will show "
                "as stale there once our heartbeat stops", hint=f"once the host answers: {release_hint(self.gw.env.name)}")

    def __enter__(self) -> EnvironmentLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def survey(gw: Gateway, hosts: list[Host], scope: str = "environment"):
    """Per host: its lock state (None = free); unreachable hosts in ``.failed``, never hiding the rest."""
    return gw.map(lambda h: read_state(gw, h, scope), hosts)


def status(gw: Gateway, hosts: list[Host]) -> dict[str, Holder | None]:
    """Holder per host (None = free); raises when a host cannot be read."""
    results = survey(gw, hosts)
    results.raise_if_failed("lock status")
    return {h.name: (results.ok[h.name].holder if results.ok[h.name] else None) for h in hosts}


def release_shown(gw: Gateway, hosts: list[Host], shown: dict[str, LockState], scope: str = "environment"):
    """Remove, on each host, exactly the lock that was shown to the operator (same token); a lock
    taken since stays. Returns per host what happened."""
    lock = lock_dir(gw, scope)

    def one(host: Host) -> str:
        state = shown.get(host.name)
        if state is None:
            return "free"
        token = state.holder.token
        if token:
            cmd = shell("if grep -q {t} {d}/holder.json 2>/dev/null; then rm -rf {d} && echo released; "
                        "elif [ -d {d} ]; then echo changed; else echo free; fi", t=token, d=lock)
        else:  # no readable holder was shown: remove only if that is still so
            cmd = shell("if [ -d {d} ] && ! grep -q token {d}/holder.json 2>/dev/null; then rm -rf {d} && "
                        "echo released; elif [ -d {d} ]; then echo changed; else echo free; fi", d=lock)
        return gw.run(host, cmd).stdout.strip() or "free"

    return gw.map(one, hosts)
