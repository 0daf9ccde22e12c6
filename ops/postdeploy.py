"""What follows a deploy or rollback that switched the fleet: the smoke check, a rollback when
the inventory asks for one (``smoke.on_failure: rollback``), then the notifications.

Order matters: people are told what serves once the smoke check has said whether it
works, so the one webhook payload of a deploy carries its smoke verdict (and a rollback
it caused is announced as a rollback of its own). Nothing here hides the deploy's own
result: a smoke failure is reported (``smoke_failed``, and its payload is coloured as a
failure), a notification problem is a warning. A deploy or rollback that stops before
switching the fleet is announced by ``announcing_failure`` (``deploy_failed``: the step, the
failing hosts, the outcome; no Sentry marker).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from ops import smoke
from ops.audit import actor
from ops.deploy.pipeline import DeployRequest, DeployResult
from ops.deploy.pipeline import rollback as rollback_release
from ops.errors import ConfigError, OpsError
from ops.inventory import Environment
from ops.masking import Masker
from ops.notify import Event, Notifier
from ops.remote import FleetError, Gateway

Say = Callable[[str], None]


@dataclass
class AfterRelease:
    smoke: smoke.SmokeReport | None = None
    rolled_back: DeployResult | None = None
    sent: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def smoke_failed(self) -> bool:
        return self.smoke is not None and not self.smoke.ok


def _event(env: Environment, kind: str, result: DeployResult, verdict: str) -> Event:
    what = "deployed" if kind == "deploy" else "rolled back to"
    return Event(kind, env.name, f"{what} {result.release.version} on {', '.join(result.hosts)}; smoke: {verdict}",
                 version=result.release.version, release=result.release.id, hosts=list(result.hosts),
                 actor=actor(), fields={"smoke": verdict},
                 # NOTE: the release serves (Sentry gets its marker), but people must not read it as fine.
                 color="danger" if verdict.startswith("FAILED") else None)


def _verdict(report: smoke.SmokeReport | None) -> str:
    if report is None:
        return "not run"
    if report.ok:
        return f"passed ({len(report.checks)} checks)"
    return f"FAILED ({len(report.failed)} of {len(report.checks)}: " + ", ".join(
        f"{c.target} {c.name}" for c in report.failed[:4]) + ")"


def run_smoke(env: Environment, hosts: list[str]) -> smoke.SmokeReport:
    with Gateway(env) as gw:
        return smoke.run(env, gw=gw, hosts=[env.hosts[h] for h in hosts if h in env.hosts])


def after_release(env: Environment, action: str, result: DeployResult, say: Say) -> AfterRelease:
    """``action``: "deploy" or "rollback" (what just switched ``result.hosts`` to ``result.release``)."""
    after = AfterRelease()
    notifier = Notifier(env)
    try:
        after.smoke = run_smoke(env, result.hosts)
    except OpsError as exc:
        after.warnings.append(f"smoke check could not run: {exc}")
    after.warnings += after.smoke.warnings if after.smoke else []
    if after.smoke is not None:
        say(after.smoke.summary())
    if after.smoke_failed and action == "deploy" and env.smoke.on_failure == "rollback":
        after.warnings += notifier.send(_event(env, "deploy", result, _verdict(after.smoke)))
        say(f"smoke check failed: rolling back (smoke.on_failure: rollback in {env.path.name})")
        after.rolled_back = rollback_release(env, DeployRequest(), None, say)
        after.warnings += after.rolled_back.warnings
        back = run_smoke(env, after.rolled_back.hosts)
        say(f"after the rollback: {back.summary()}")
        after.warnings += notifier.send(_event(env, "rollback", after.rolled_back, _verdict(back)))
    else:
        after.warnings += notifier.send(_event(env, action, result, _verdict(after.smoke)))
    after.sent = list(notifier.sent)
    return after


# -- a deploy or rollback that stopped --------------------------------------------------------
def failing_hosts(error: BaseException) -> list[str]:
    """The hosts an error (or the one it was raised from) names: a FleetError's failed hosts, else
    the host of an OpsError. A deploy's error wraps the step's (``raise ... from None`` keeps it
    as ``__context__``)."""
    seen: set[int] = set()
    exc: BaseException | None = error
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, FleetError) and exc.failed:
            return sorted(exc.failed)
        if isinstance(exc, OpsError) and exc.host:
            return [exc.host]
        exc = exc.__cause__ or exc.__context__
    return []


def failed_event(env: Environment, action: str, version: str, error: BaseException, masker: Masker) -> Event:
    """``action`` ("deploy" or "rollback") of ``version`` stopped with ``error``: where and why, masked."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()] or [type(error).__name__]
    step = masker(lines[0])[:300]
    hosts = failing_hosts(error)
    what = f"deploy of {version}" if action == "deploy" else f"rollback to {version}"
    # NOTE: the end of a deploy's error says what each host was put back on: keep the end.
    rest = masker(" ".join(lines[1:]))
    return Event("deploy_failed", env.name, f"{what} FAILED" + (f" on {', '.join(hosts)}" if hosts else "")
                 + f": {step}", version=version, hosts=hosts, actor=actor(),
                 fields={"action": action, "step": step,
                         "outcome": rest if len(rest) <= 400 else "..." + rest[-397:]})


@contextlib.contextmanager
def announcing_failure(env: Environment, action: str, version: str, masker: Masker, warn: Say):
    """Around applying a deploy or rollback: when it fails, one ``deploy_failed`` payload goes out (no
    Sentry marker: nothing new serves), then the error goes on. Not for Ctrl-C (the operator is
    there) nor a refusal of the request itself (ConfigError: nothing was attempted)."""
    try:
        yield
    except ConfigError:
        raise
    except Exception as exc:
        for warning in Notifier(env, masker).send(failed_event(env, action, version, exc, masker)):
            warn(warning)
        raise


__all__ = ["AfterRelease", "after_release", "announcing_failure", "failed_event", "failing_hosts", "run_smoke"]
