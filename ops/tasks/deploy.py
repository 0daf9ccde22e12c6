"""``inv deploy``, ``inv rollback``, ``inv releases``, ``inv audit``."""

from __future__ import annotations

import contextlib
import sys

from ops import postdeploy
from ops.audit import read_log
from ops.cli import CheckFailed, host_list, number
from ops.deploy import pipeline
from ops.deploy.pipeline import DeployRequest
from ops.deploy.release import current_release_id, read_history, releases_from_history
from ops.errors import ConfigError
from ops.inventory import Target, resolve_target
from ops.progress import EXCLUDED, OK, WARNING
from ops.remote import Gateway
from ops.render import marks_for, showing_progress
from ops.table import format_table
from ops.tasks import ops_task, out, print_json, say, warn

HOST_HELP = "environment to act on (prod); deploys and rollbacks take the whole environment"


def _whole_environment(spec: str) -> Target:
    target = resolve_target(spec)
    if len(target.hosts) != len(target.env.hosts):
        raise ConfigError(f"--host {spec!r} names one host: deploys and rollbacks take a whole environment",
                          hint=f"use --host {target.env.name} (the fleet never stays on mixed versions)")
    return target


EXCLUDE_HELP = ("host(s) to leave out, comma-separated (a dead host); recorded in the audit, the rest proceeds "
                "(e.g. --exclude web2)")


@ops_task(mutating=True, help={
    "host": HOST_HELP,
    "version": "deploy this image tag from the registry instead of building the app's checkout",
    "batch": "web hosts switched at a time (default: deploy.batch_size)",
    "dry_run": "print the plan per host and change nothing",
    "allow_dirty": "build even with uncommitted changes (tag gets a -dirty suffix)",
    "allow_destructive": "run destructive or locking migrations (the plan lists them); a database backup is taken "
                         "right before migrating",
    "lock_wait": "seconds to wait for another deploy to finish (default: refuse at once)",
    "health_timeout": "seconds a new container has to pass its health check (default: health.timeout)",
    "exclude": EXCLUDE_HELP,
    "json": "print the plan (with --dry-run) or the result as JSON",
})
def deploy(c, host="", version="", batch=0, dry_run=False, allow_dirty=False, allow_destructive=False, lock_wait=0.0,
           health_timeout=0.0, exclude="", json=False):
    """Build, push, migrate and roll the app out to every web host with zero downtime."""
    target = _whole_environment(host)
    req = DeployRequest(version=version or None, batch=int(number(batch, "--batch", integer=True)) or None,
                        allow_dirty=allow_dirty, allow_destructive=allow_destructive,
                        lock_wait=float(number(lock_wait, "--lock-wait")),
                        health_timeout=float(number(health_timeout, "--health-timeout")) or None,
                        exclude=tuple(host_list(exclude)))
    # Per-host steps and pull/push byte counts: live on a terminal, plain lines otherwise (stderr).
    with showing_progress(json=json) as progress:
        run, plan = pipeline.plan(target.env, req, say, progress=progress)
        with contextlib.closing(run):
            if _shown(plan, dry_run):
                return
            _excluded(progress, req.exclude)
            with postdeploy.announcing_failure(target.env, "deploy", plan.tag, run.masker, warn):
                result = run.deploy(plan)
    for warning in result.warnings:
        warn(warning)
    print_json({"release": vars(result.release), "hosts": result.hosts, "applied_migrations": result.migrations.applied})
    say(_serving_table(result, req.exclude))
    ports = target.env.sandbox.publish if target.env.sandbox else {}
    urls = [f"http://127.0.0.1:{lp}" for h in result.hosts for lp, cp in ports.get(h, {}).items()
            if cp == target.env.proxy.port]
    say(f"deployed {result.release.version} (release {result.release.id}) to {', '.join(result.hosts)}"
        + (f"; serving on {' '.join(urls)}" if urls else "")
        + (f"; restore point {result.release.restore_point}" if result.release.restore_point else ""))
    _after_release(target.env, "deploy", result)


def _after_release(env, action: str, result) -> None:
    """The smoke check (and a rollback when smoke.on_failure says so), then the notifications."""
    after = postdeploy.after_release(env, action, result, say)
    for warning in after.warnings:
        warn(warning)
    if after.rolled_back is not None:
        raise CheckFailed(f"the smoke check failed after deploying {result.release.version}; rolled back to "
                          f"{after.rolled_back.release.version} (smoke.on_failure: rollback)",
                          hint="see the smoke lines above; inv smoke --host " + env.name)
    if after.smoke_failed:
        raise CheckFailed(f"{action} of {result.release.version} done, but the smoke check failed: "
                          + after.smoke.summary(), hint=f"inv smoke --host {env.name}; inv rollback --host {env.name}")


def _excluded(progress, names) -> None:
    for name in names:
        progress.step(name, EXCLUDED, "not touched")


def _serving_table(result, excluded) -> str:
    """What each host serves now: the last thing a deploy or rollback prints."""
    rows = [[name, "serving", result.release.version, result.release.id] for name in result.hosts]
    rows += [[name, "excluded: not touched", "-", "-"] for name in excluded]
    output = out()
    # NOTE: decorated only when the table's own stream (say's) is a terminal: never in a pipe or cron mail.
    return format_table(["HOST", "STATE", "VERSION", "RELEASE"], rows,
                        levels=[OK] * len(result.hosts) + [WARNING] * len(excluded),
                        marks=marks_for(sys.stderr if output.json else sys.stdout, json=output.json))


def _shown(plan, dry_run: bool) -> bool:
    """Print the plan; True when that is all (--dry-run)."""
    for line in plan.render():
        say(line)
    if dry_run:
        print_json({"plan": plan.to_dict()})
        say("dry-run: nothing was changed")
    return dry_run


@ops_task(mutating=True, help={"host": HOST_HELP,
                               "to": "version to roll back to (default: the release before the current one)",
                               "dry_run": "print the plan and change nothing",
                               "lock_wait": "seconds to wait for another operation to finish",
                               "exclude": EXCLUDE_HELP, "json": "print the plan or the result as JSON"})
def rollback(c, host="", to="", dry_run=False, lock_wait=0.0, exclude="", json=False):
    """Put every web host back on the previous (or named) release, health-gated, with its own env."""
    target = _whole_environment(host)
    req = DeployRequest(lock_wait=float(number(lock_wait, "--lock-wait")), exclude=tuple(host_list(exclude)))
    with showing_progress(json=json) as progress:
        run, plan = pipeline.plan(target.env, req, say, rollback=True, rollback_to=to or None, progress=progress)
        with contextlib.closing(run):
            if _shown(plan, dry_run):
                return
            _excluded(progress, req.exclude)
            with postdeploy.announcing_failure(target.env, "rollback", plan.tag, run.masker, warn):
                result = run.rollback(plan)
    for warning in result.warnings:
        warn(warning)
    print_json({"release": vars(result.release), "hosts": result.hosts,
                "migrations_not_reversed": result.migrations.after})
    say(_serving_table(result, req.exclude))
    say(f"rolled back to {result.release.version} (release {result.release.id}) on {', '.join(result.hosts)}")
    _after_release(target.env, "rollback", result)
    if result.migrations.after:
        say("NOTE: these migrations were applied after that release and were NOT reversed:")
        for name in result.migrations.after:
            say(f"  {name}")
        say(f"If the old code cannot work with them, restore the database: inv restore --host {target.env.name} "
            "--at <time before the deploy>")


@ops_task(help={"host": "environment (prod) or env:host", "json": "print JSON"})
def releases(c, host="", json=False):
    """Release history per web host: version, digest, env checksum, who, when, outcome."""
    target = resolve_target(host)
    webs = [h for h in target.hosts if "web" in h.roles]
    with Gateway(target.env) as gw:
        results = gw.map(lambda h: (current_release_id(gw, h), releases_from_history(read_history(gw, h))), webs)
    print_json({name: {"current": cur, "releases": rows} for name, (cur, rows) in results.ok.items()})
    if json:
        results.raise_if_failed("reading release history")  # the reachable hosts are in the data
        return
    rows = []
    for name, (current, entries) in results.ok.items():
        for e in entries:
            rows.append([name, ("* " if e["id"] == current else "  ") + e["id"], e.get("version", ""),
                         (e.get("digest") or "-")[:19], (e.get("env_sha256") or "-")[:12], e.get("actor", ""),
                         e.get("outcome", "")])
    print(format_table(["HOST", "RELEASE (* current)", "VERSION", "DIGEST", "ENV SHA256", "BY", "OUTCOME"], rows))
    results.raise_if_failed("reading release history")


@ops_task(help={"host": "environment (prod) or env:host", "lines": "how many events per host", "json": "print JSON"})
def audit(c, host="", lines=20, json=False):
    """The audit trail of deploys, rollbacks and lock actions, per host."""
    target = resolve_target(host)
    last = int(number(lines, "--lines", minimum=1, integer=True))
    with Gateway(target.env) as gw:
        results = gw.map(lambda h: read_log(gw, h, last=last), list(target.hosts))
    print_json(results.ok)
    if json:
        results.raise_if_failed("reading the audit log")
        return
    events = {}
    for name, evs in results.ok.items():
        for ev in evs:
            events.setdefault(ev.get("id"), (ev, []))[1].append(name)
    rows = [[ev.get("time", "")[:19], ev.get("action", ""), ev.get("outcome", ""), ev.get("version") or "-",
             ev.get("actor", ""), ",".join(hosts), ev.get("detail", "")[:60]]
            for ev, hosts in sorted(events.values(), key=lambda x: x[0].get("time", ""))]
    print(format_table(["TIME (UTC)", "ACTION", "OUTCOME", "VERSION", "BY", "ON", "DETAIL"], rows))
    results.raise_if_failed("reading the audit log")
