"""``inv prune``: free disk on the hosts without touching what a rollback needs.

Per host, what goes:
- stopped containers of this app beyond what rollback keeps: web containers older than
  the current release plus ``deploy.keep_releases`` (normally already gone; left by
  interrupted deploys), and leftover one-off ``exec``/``migrate`` containers;
- release directories (``{app_dir}/releases/<id>``) of releases no retained container
  runs: each holds that release's env file, i.e. OLD SECRETS;
- the app's image tags no retained release uses, and dangling images.

What stays: the current release (running or stopped, e.g. in maintenance), the
``keep_releases`` releases ``inv rollback`` would step back to (their env files, even when
their containers are gone) and the newest ``keep_releases`` stopped containers,
accessories, the proxy, every named volume. A rollback ``--to`` an older version than
those then says its env file is gone and to deploy that version again.

Plan first (``--dry-run`` shows it), then apply exactly that plan in the Operation
envelope; under the lock each host's current release is read again and a host whose
current release changed since the plan is refused. ``docker rm``/``rmi`` run without
force, so a container started since the plan, or an image a container still uses, stays.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field

from ops import registry
from ops.commands import docker, shell
from ops.deploy.release import current_release_id, read_history, served_sequence
from ops.deploy.switch import web_containers
from ops.doctor import df_command, parse_df
from ops.errors import OpsError
from ops.inventory import Host
from ops.layout import RELEASE_ID_RE, Layout
from ops.operation import Operation, Plan
from ops.remote import Gateway

Say = Callable[[str], None]
ONE_OFF_ROLES = ("exec", "migrate")


@dataclass
class HostPrune:
    host: Host
    current: str | None
    containers: list[str] = field(default_factory=list)
    release_dirs: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # release ids kept for rollback

    @property
    def empty(self) -> bool:
        return not (self.containers or self.release_dirs or self.images)

    def steps(self) -> list[str]:
        out = [f"remove stopped container {c}" for c in self.containers]
        out += [f"remove release directory {d} (its env file holds that release's secrets)" for d in self.release_dirs]
        out += [f"remove image {i}" for i in self.images]
        out.append("remove dangling images")
        return out


def _lines(gw: Gateway, host: Host, command) -> list[str]:
    return [ln.strip() for ln in gw.query(host, command, check=False).stdout.splitlines() if ln.strip()]


def rollback_targets(gw: Gateway, host: Host, current: str | None) -> list[str]:
    """The releases ``inv rollback`` steps back through from ``current``, newest first, as many as
    ``deploy.keep_releases``: their env files must stay even when their containers are gone (a
    rollback then starts a new container from the image with that env file)."""
    served = [e["id"] for e in served_sequence(read_history(gw, host))]
    if current in served:
        served = served[: len(served) - 1 - served[::-1].index(current)]
    return served[::-1][: gw.env.deploy.keep_releases]


def survey_host(gw: Gateway, host: Host) -> HostPrune:
    env, layout = gw.env, Layout(gw.env)
    current = current_release_id(gw, host)
    hp = HostPrune(host, current)
    if "web" in host.roles:
        webs = web_containers(gw, host)  # newest first
        others = [row for row in webs if row[1] != current]
        kept = [rid for _, rid, _ in others[: env.deploy.keep_releases]]
        hp.kept = list(dict.fromkeys(r for r in [current, *rollback_targets(gw, host, current), *kept] if r))
        hp.containers = [name for name, rid, state in others[env.deploy.keep_releases:] if state != "running"]
        for role in ONE_OFF_ROLES:
            hp.containers += _lines(gw, host, docker.ps_argv(
                filters=[("label", f"ops.app={env.app}"), ("label", f"ops.role={role}"), ("status", "exited")],
                fmt="{{.Names}}"))
        releases = _lines(gw, host, shell("ls -1 {d} 2>/dev/null || true", d=layout.path("releases")))
        hp.release_dirs = [layout.release_dir(rid) for rid in releases
                           if RELEASE_ID_RE.match(rid) and rid not in hp.kept]
        repo = registry.app_refs(env, "x")[1].rsplit(":", 1)[0]
        versions = {rid.split("-", 1)[1] for rid in hp.kept}
        tags = _lines(gw, host, ("docker", "images", "--format", "{{.Repository}}:{{.Tag}}", repo))
        hp.images = [t for t in tags if t.rsplit(":", 1)[1] not in versions and not t.endswith(":<none>")]
    return hp


def plan(gw: Gateway, hosts: list[Host]) -> tuple[Plan, list[HostPrune]]:
    results = gw.map(lambda h: survey_host(gw, h), hosts)
    results.raise_if_failed("reading what can be pruned")
    surveys = [results.ok[h.name] for h in hosts]
    n_c = sum(len(s.containers) for s in surveys)
    n_d = sum(len(s.release_dirs) for s in surveys)
    n_i = sum(len(s.images) for s in surveys)
    p = Plan("prune", gw.env.name, f"remove {n_c} stopped container(s), {n_d} old release dir(s), "
             f"{n_i} unused image(s) and dangling images on {', '.join(h.name for h in hosts)}")
    for s in surveys:
        if s.kept:
            p.lines.append(f"{s.host.name}: kept for rollback: {', '.join(s.kept)} (deploy.keep_releases="
                           f"{gw.env.deploy.keep_releases} besides the current one)")
        p.steps[s.host.name] = s.steps()
    return p, surveys


def free_bytes(gw: Gateway, host: Host) -> int | None:
    try:
        return parse_df(gw.query(host, df_command(gw.env.app_dir), check=False).stdout)[0]
    except (ValueError, IndexError):
        return None


def _apply_host(gw: Gateway, hp: HostPrune) -> dict:
    host = hp.host
    now = current_release_id(gw, host)
    if now != hp.current:
        raise OpsError(f"the current release changed since the plan ({hp.current} -> {now}); nothing pruned here",
                       host=host.name, hint=f"run inv prune --host {gw.env.name} again")
    before = free_bytes(gw, host)
    removed: list[str] = []
    left: list[str] = []
    for name in hp.containers:
        (removed if gw.run(host, docker.rm_argv(name), check=False).ok else left).append(name)
    for path in hp.release_dirs:
        rid = posixpath.basename(path)
        # NOTE: never the release that is current now, whatever the plan said.
        res = gw.run(host, shell('[ "$(cat {cur} 2>/dev/null)" != {rid} ] && rm -rf -- {p}',
                                 cur=Layout(gw.env).path("current"), rid=rid, p=path), check=False)
        (removed if res.ok else left).append(path)
    for image in hp.images:
        (removed if gw.run(host, ("docker", "rmi", image), check=False).ok else left).append(image)
    gw.run(host, ("docker", "image", "prune", "--force"), check=False)
    after = free_bytes(gw, host)
    freed = after - before if before is not None and after is not None else None
    return {"removed": removed, "left": left, "freed_bytes": freed}


def apply(gw: Gateway, surveys: list[HostPrune], *, say: Say = lambda _: None, lock_wait: float = 0.0) -> dict:
    with Operation(gw, "prune", list(gw.env.hosts.values()), say=say, lock_wait=lock_wait) as op:
        results = gw.map(lambda h: _apply_host(gw, next(s for s in surveys if s.host.name == h.name)),
                         [s.host for s in surveys])
        done = results.ok
        op.outcome = "; ".join(f"{h}: removed {len(r['removed'])}" for h, r in done.items())
        results.raise_if_failed("prune")
    return done


__all__ = ["HostPrune", "apply", "plan", "survey_host"]
