"""What follows a deploy or rollback that switched the fleet: the smoke check, a rollback when
the inventory asks for one (``smoke.on_failure: rollback``), then the notifications.

Order matters: people are told what serves once the smoke check has said whether it
works, so the one webhook payload of a deploy carries its smoke verdict (and a rollback
it caused is announced as a rollback of its own). Nothing here hides the deploy's own
result: a smoke failure is reported (``smoke_failed``), a notification problem is a
warning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ops import smoke
from ops.audit import actor
from ops.deploy.pipeline import DeployRequest, DeployResult
from ops.deploy.pipeline import rollback as rollback_release
from ops.errors import OpsError
from ops.inventory import Environment
from ops.notify import Event, Notifier
from ops.remote import Gateway

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
                 actor=actor(), fields={"smoke": verdict})


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


__all__ = ["AfterRelease", "after_release", "run_smoke"]
