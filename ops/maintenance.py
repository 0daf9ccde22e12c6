"""``inv maintenance.on`` / ``maintenance.off``: the site answers 503 + Retry-After by hand.

The same mechanism the database restore uses (``ops.traffic``): a small nginx container
takes the app's service name on each web host (the proxy keeps running, so the security
headers and the proxy's own logs stay), then the app containers stop gracefully. Off
starts the current release again behind its health check, puts it back behind nginx and
removes the maintenance container. Both run in the Operation envelope (lock, audit).

While it is on, ``inv deploy`` and ``inv rollback`` are refused (``refuse_during_maintenance``).

The state lives on the hosts (the maintenance container exists, the current release's
container is stopped), so ``off`` works from any operator's machine, any time later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ops import registry
from ops.deploy import switch
from ops.deploy.release import current_release_id
from ops.errors import ConfigError, OpsError
from ops.interrupts import shielded_from_ctrl_c
from ops.inventory import Host
from ops.layout import Layout
from ops.operation import Operation, Plan
from ops.remote import Gateway
from ops.traffic import (
    MESSAGE_RE,
    RETRY_AFTER,
    WebHost,
    enter_maintenance,
    leave_maintenance,
    maintenance_container,
    serving_containers,
)

Say = Callable[[str], None]
MANUAL_MESSAGE = "Down for maintenance. Back soon."


def _quiet(_: str) -> None:
    pass


def check_message(message: str | None) -> str:
    text = (message or MANUAL_MESSAGE).strip()
    if not MESSAGE_RE.match(text):
        raise ConfigError(f"--message {text!r} holds characters the maintenance page cannot carry",
                          hint="use letters, digits, spaces and .,:!?()'/@%+&_- (at most 200 characters)")
    return text


def is_on(gw: Gateway, host: Host) -> bool:
    # NOTE: docker prints a state for every container it has; no state is no container.
    return bool(switch.container_state(gw, host, maintenance_container(gw.env)))


def refuse_during_maintenance(gw: Gateway, hosts: list[Host], action: str) -> None:
    """A deploy or rollback while the maintenance page is on is refused (ConfigError: exit 2, nothing
    changed). NOTE: its switch would put the app behind nginx NEXT TO the page (half the requests
    503, half the app), and a failure would put the previous release back without the page:
    maintenance.off first is the one way that leaves the site in a state someone chose."""
    webs = [h for h in hosts if "web" in h.roles]
    results = gw.map(lambda h: is_on(gw, h), webs)
    results.raise_if_failed("checking for the maintenance page")
    on = [h.name for h in webs if results.ok.get(h.name)]
    if on:
        env = gw.env.name
        raise ConfigError(f"{action} refused: {', '.join(on)} {'is' if len(on) == 1 else 'are'} in maintenance "
                          f"({maintenance_container(gw.env)} answers 503); nothing was changed",
                          hint=f"inv maintenance.off --host {env} brings the current release back; "
                               f"then inv {action} --host {env} (RUNBOOK.md 'maintenance')")


@dataclass
class HostState:
    host: Host
    maintenance: bool
    serving: list[str]   # app containers running now
    current: str | None  # the current release's container


def survey(gw: Gateway, hosts: list[Host]) -> list[HostState]:
    layout = Layout(gw.env)

    def one(host: Host) -> HostState:
        rid = current_release_id(gw, host)
        return HostState(host, is_on(gw, host), serving_containers(gw, host),
                         layout.web_container(rid) if rid else None)

    results = gw.map(one, hosts)
    results.raise_if_failed("reading the web hosts")
    return [results.ok[h.name] for h in hosts]


def plan(gw: Gateway, hosts: list[Host], *, on: bool, message: str = "") -> tuple[Plan, list[HostState]]:
    webs = [h for h in hosts if "web" in h.roles]
    if not webs:
        raise ConfigError("no web host selected: maintenance is about the site",
                          hint=f"use --host {gw.env.name} or {gw.env.name}:<web host>")
    states = survey(gw, webs)
    action = "maintenance.on" if on else "maintenance.off"
    p = Plan(action, gw.env.name, f"{'take' if on else 'bring'} the site on {', '.join(h.name for h in webs)} "
             f"{'off (503 + Retry-After)' if on else 'back'}")
    for st in states:
        steps: list[str] = []
        if on:
            steps.append(f"start {maintenance_container(gw.env)} under the app's name: every request gets 503 "
                         f"\"{message}\" with Retry-After {RETRY_AFTER}" + (" (replacing the one on now)"
                                                                           if st.maintenance else ""))
            steps += [f"stop {c} (graceful) and take it from behind nginx" for c in st.serving]
        else:
            if st.current and st.current not in st.serving:
                steps.append(f"start {st.current}, wait for its health check, put it behind nginx")
            if st.maintenance:
                steps.append(f"remove {maintenance_container(gw.env)}")
            if not steps:
                steps.append("nothing: not in maintenance")
        p.steps[st.host.name] = steps
    return p, states


def turn_on(gw: Gateway, states: list[HostState], *, message: str, say: Say = _quiet, lock_wait: float = 0.0) -> None:
    image = registry.service_ref(gw.env, gw.env.proxy.image)
    webs = [WebHost(st.host, list(st.serving)) for st in states]
    by_name = {w.host.name: w for w in webs}
    with Operation(gw, "maintenance.on", list(gw.env.hosts.values()), say=say, lock_wait=lock_wait,
                   detail=message) as op:
        entered = gw.map(lambda h: enter_maintenance(gw, by_name[h.name], image, message=message),
                         [w.host for w in webs])
        if entered.failed:
            # Half on is worse than off: every host goes back to serving the app.
            with shielded_from_ctrl_c(say):
                back = gw.map(lambda h: leave_maintenance(gw, by_name[h.name], gw.env.health.timeout),
                              [w.host for w in webs])
            err = OpsError("maintenance.on failed; the site was brought back: " +
                           "; ".join(str(e) for e in entered.failed.values()))
            for e in back.failed.values():
                err.also(f"could not bring the app back: {e}")
            raise err
        op.outcome = f"maintenance on: {message}"


def turn_off(gw: Gateway, states: list[HostState], *, say: Say = _quiet, lock_wait: float = 0.0) -> None:
    webs = [WebHost(st.host, [], stopped=[st.current] if st.current and st.current not in st.serving else [],
                    maintenance=st.maintenance) for st in states]
    by_name = {w.host.name: w for w in webs}
    with Operation(gw, "maintenance.off", list(gw.env.hosts.values()), say=say, lock_wait=lock_wait) as op:
        back = gw.map(lambda h: leave_maintenance(gw, by_name[h.name], gw.env.health.timeout),
                      [w.host for w in webs])
        back.raise_if_failed("bringing the site back")
        op.outcome = "maintenance off"


__all__ = ["MANUAL_MESSAGE", "check_message", "is_on", "plan", "refuse_during_maintenance", "survey", "turn_off",
           "turn_on"]
