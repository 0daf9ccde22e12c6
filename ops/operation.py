"""The one envelope every mutating task runs in.

    plan -> (dry-run: print it, stop) -> confirm -> lock -> audit started -> apply
         -> audit ok/failed -> unlock

``Operation`` is the lock + audit + cleanup part, written once:

- the lock is taken all-or-nothing (``ops.lock``) and released on every path, a
  heartbeat keeping it visibly alive meanwhile;
- the audit says ``started`` once and ``ok`` or ``failed`` once, on the hosts and in S3;
- cleanup (the audit line, the unlock, whatever the caller shields) runs to its end
  even through a second Ctrl-C;
- a cleanup failure is added to the original error (``OpsError.also``), never
  replaces it; on success it becomes a warning.

``Plan`` is what a mutating task computes first: ``--dry-run`` prints exactly it,
the confirmation shows it, and apply executes it (not a recomputed one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ops import audit
from ops.errors import OpsError
from ops.interrupts import shielded_from_ctrl_c
from ops.inventory import Host
from ops.lock import EnvironmentLock, Holder
from ops.remote import Gateway

Say = Callable[[str], None]

__all__ = ["Operation", "Plan", "first_line"]


def _quiet(_: str) -> None:
    pass


def first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass
class Plan:
    """What a mutating task will do, computed before anything changes.

    ``lines`` are for people (dry-run, confirmation); ``steps`` per host say what
    changes there, in order. Wording is conditional ("would"), never "done".
    """

    action: str
    env: str
    summary: str
    lines: list[str] = field(default_factory=list)
    steps: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def render(self) -> list[str]:
        out = [f"plan: {self.summary}"]
        out += [f"  {line}" for line in self.lines]
        for host, steps in self.steps.items():
            out.append(f"  {host}:")
            out += [f"    {i}. {step}" for i, step in enumerate(steps, 1)]
        out += [f"  warning: {w}" for w in self.warnings]
        return out

    def to_dict(self) -> dict:
        return {"action": self.action, "env": self.env, "summary": self.summary, "lines": self.lines,
                "steps": self.steps, "warnings": self.warnings}


class Operation:
    """Lock, audit and shielded cleanup around one mutating operation on ``hosts``.

        with Operation(gw, "deploy", hosts, version=tag, say=say) as op:
            ...            # apply the plan
            op.outcome = f"release {rid}"   # what the "ok" audit line says
    """

    def __init__(self, gw: Gateway, action: str, hosts: list[Host], *, say: Say = _quiet,
                 version: str | None = None, lock_wait: float = 0.0, detail: str = "", lock: bool = True,
                 scope: str = "environment"):
        """``scope``: which lock (``ops.lock``): ``environment`` (deploys...), ``backup`` (does not
        block deploys), ``exclusive`` (restores: excludes backups too)."""
        self.gw = gw
        self.action = action
        self.hosts = list(hosts)
        self.say = say
        self.version = version
        self.detail = detail
        self.outcome = ""
        self.warnings: list[str] = []
        self._lock = (EnvironmentLock(gw, self.hosts, Holder(action, version, scope=scope), wait=lock_wait)
                      if lock else None)

    def audit(self, outcome: str, detail: str = "") -> None:
        event = audit.AuditEvent(env=self.gw.env.name, action=self.action, outcome=outcome, version=self.version,
                                 detail=self.gw.mask(detail), hosts=[h.name for h in self.hosts])
        self.warnings += audit.record(self.gw, event, self.hosts, central=audit.central_copy(self.gw.env))

    def __enter__(self) -> Operation:
        if self._lock is not None:
            self._lock.acquire()
        try:
            self.audit("started", self.detail)
        except BaseException:
            self._release(None)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        with shielded_from_ctrl_c(self.say):
            try:
                if exc is None:
                    self.audit("ok", self.outcome or self.detail)
                else:
                    why = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else first_line(exc)
                    self.audit("failed", why)
            except Exception as audit_exc:  # noqa: BLE001 - the audit must never hide the outcome
                self._problem(exc, f"audit line not written: {audit_exc}")
            self._release(exc)

    def _release(self, exc: BaseException | None) -> None:
        if self._lock is None:
            return
        try:
            self._lock.release()
        except OpsError as rel:
            self._problem(exc, str(rel))

    def _problem(self, exc: BaseException | None, text: str) -> None:
        """A cleanup problem: attached to the error being raised, or a warning after success."""
        if isinstance(exc, OpsError):
            exc.also(text)
        elif exc is not None:
            self.say(f"also: {text}")
        else:
            self.warnings.append(text)
