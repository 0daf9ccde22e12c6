"""``inv setup``: make a bare Debian/Ubuntu host ready for deploys.

Run as an admin account (``setup.admin_user``, default root; another user needs
password-less sudo) with the inventory's key, on hosts whose keys are already trusted
(``inv hosts.trust``). Every step is idempotent: it first looks (``probe``), then
changes only what differs, so a second run changes nothing.

1. the OS is Debian or Ubuntu (apt);
2. packages: Docker's engine from the distribution (``docker.io``), nftables, curl (the
   health checks run on the host), CA certificates;
3. ``/etc/docker/daemon.json`` (log rotation by default: container logs are the classic
   full disk), written only when the host has none;
4. the engine started (systemd, else the init script, else by hand with a warning);
5. the deploy user (``ssh.user``): no password, in the ``docker`` group, the inventory
   key's public half in its ``authorized_keys``;
6. ``app_dir`` owned by it;
7. a firewall (nftables table ``inet ops_firewall``, ours alone; other tables are left as
   they are): SSH, what the host's roles serve, and for published container ports only
   those the roles need — Docker publishes through FORWARD, where an INPUT-only firewall
   never looks. Applied with a dead man's switch: it removes itself after
   ``FIREWALL_REVERT_S`` unless a NEW SSH connection confirms the host is still reachable.

The lock and audit of the envelope need the deploy user and ``app_dir``: steps 1-6 of
a bare host run before the envelope exists (they only ever add), the firewall inside it.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import paramiko

from ops.commands import ShellLine, shell
from ops.errors import ConfigError, HostError, OpsError
from ops.inventory import Environment, Host
from ops.operation import Operation
from ops.remote import Gateway

PACKAGES = ("docker.io", "nftables", "curl", "ca-certificates")
DAEMON_JSON = "/etc/docker/daemon.json"
FIREWALL_FILE = "/etc/ops/firewall.nft"
FIREWALL_TABLE = "ops_firewall"
FIREWALL_REVERT_S = 60
REVERT_PID = "/run/ops-firewall-revert.pid"
NFTABLES_CONF = "/etc/nftables.conf"
DOCKER_WAIT_S = 60
APT_TIMEOUT = 1200.0
SUPPORTED_OS = ("debian", "ubuntu")

Say = Callable[[str], None]


@dataclass(frozen=True)
class Step:
    name: str
    change: str = ""            # what it would change; "" = nothing to do
    warning: str = ""

    @property
    def needed(self) -> bool:
        return bool(self.change)


@dataclass
class HostSetup:
    """What setup would do on one host, from a probe as the admin user."""

    host: Host
    os: str
    steps: list[Step] = field(default_factory=list)
    firewall: str = ""          # the ruleset it would load

    def lines(self) -> list[str]:
        out = []
        for s in self.steps:
            out.append(f"{s.name}: {s.change or 'ok (nothing to do)'}")
            if s.warning:
                out.append(f"{s.name}: warning: {s.warning}")
        return out

    @property
    def needed(self) -> bool:
        return any(s.needed for s in self.steps)


# -- pure parts ----------------------------------------------------------------------------
def public_key_line(key_path: str) -> str:
    """``<type> <base64> ops-deploy`` of the inventory's private key."""
    try:
        key = paramiko.PKey.from_path(key_path)
    except (OSError, paramiko.SSHException, ValueError) as exc:
        raise ConfigError(f"cannot read the SSH key {key_path}: {exc}",
                          hint="ssh.key must be an unencrypted private key file") from None
    return f"{key.get_name()} {key.get_base64()} ops-deploy"


def daemon_json(settings: dict) -> str:
    return json.dumps(settings, indent=2, sort_keys=True) + "\n"


def allowed_ports(env: Environment, host: Host) -> tuple[list[int], list[tuple[int, list[str]]]]:
    """(ports open to anyone, [(port, only from these addresses)]) for ``host``'s roles."""
    open_ports: list[int] = []
    restricted: list[tuple[int, list[str]]] = []
    if "web" in host.roles:
        open_ports.append(env.proxy.port)
        if env.proxy.tls is not None:
            open_ports.append(env.proxy.tls.https_port)
        open_ports += list(env.setup.open_ports)
    web_sources = sorted({h.private_address for h in env.with_roles("web") if h.private_address})
    for acc in env.accessories.values():
        if acc.host == host.name and acc.port:
            restricted.append((acc.port, sorted({*web_sources, *env.setup.allow_from})))
    return sorted(set(open_ports)), restricted


def _accepts(open_ports: list[int], restricted: list[tuple[int, list[str]]], *, match: str,
             prefix: str = "") -> list[str]:
    """Accept rules: ``open_ports`` from anywhere, each restricted port from its sources only."""
    out = [f"        {prefix}{match} {{ {', '.join(map(str, open_ports))} }} accept"] if open_ports else []
    out += [f"        {prefix}ip saddr {{ {', '.join(sources)} }} {match} {port} accept"
            for port, sources in restricted if sources]
    return out


def render_firewall(env: Environment, host: Host) -> str:
    """The nftables file for ``host``: replaces our table atomically, touches no other."""
    open_ports, restricted = allowed_ports(env, host)
    ssh_port = env.setup.ssh_port
    lines = [
        "# Rendered by ops (ops/setup.py, inv setup): edits here are overwritten.",
        f"table inet {FIREWALL_TABLE} {{}}",
        f"delete table inet {FIREWALL_TABLE}",
        f"table inet {FIREWALL_TABLE} {{",
        "    chain input {",
        "        type filter hook input priority filter; policy drop;",
        "        ct state established,related accept",
        "        ct state invalid drop",
        '        iifname "lo" accept',
        "        meta l4proto { icmp, ipv6-icmp } accept",
        "        # containers of this host talking to it (tunnelled registry, health checks)",
        '        iifname "docker0" accept',
        '        iifname "br-*" accept',
        f"        tcp dport {ssh_port} accept",
    ]
    lines += _accepts(open_ports, restricted, match="tcp dport")
    lines += [
        "    }",
        "    # Published container ports arrive DNAT'ed through FORWARD, before Docker's own rules.",
        "    chain forward {",
        "        type filter hook forward priority filter - 1; policy accept;",
        "        ct state established,related accept",
        '        iifname "docker0" accept',
        '        iifname "br-*" accept',
    ]
    lines += _accepts(open_ports, restricted, match="meta l4proto tcp ct original proto-dst", prefix="ct status dnat ")
    lines += [
        "        ct status dnat drop",
        "    }",
        "}",
        "",
    ]
    return "\n".join(lines)


# -- remote parts --------------------------------------------------------------------------
def as_admin(env: Environment) -> Environment:
    """The environment seen as the admin account (same key, known_hosts, ports)."""
    user = env.setup.admin_user
    hosts = {name: replace(h, user=user) for name, h in env.hosts.items()}
    return replace(env, ssh=replace(env.ssh, user=user), hosts=hosts)


def root_command(env: Environment, script: str) -> ShellLine:
    """``script`` run by root: directly as root, else through password-less sudo."""
    if env.setup.admin_user == "root":
        return shell("sh -c {s}", s=script)
    return shell("sudo -n sh -c {s}", s=script)


def _root(gw: Gateway, host: Host, script: str, *, mutating: bool = True, timeout: float | None = None):
    res = gw.run(host, root_command(gw.env, script), mutating=mutating, check=False, timeout=timeout)
    if not res.ok and "sudo" in res.stderr and "password" in res.stderr:
        raise HostError(f"{gw.env.setup.admin_user} cannot run sudo without a password",
                        host=host.name, hint="give it password-less sudo, or set setup.admin_user: root")
    return res


def probe(gw: Gateway, host: Host, deploy_env: Environment) -> HostSetup:
    """Look at ``host`` (as the admin user) and say what setup would change."""
    env = gw.env
    user, app_dir = deploy_env.hosts[host.name].user, deploy_env.app_dir
    key_line = public_key_line(str(env.ssh.key))
    script = "; ".join([
        ". /etc/os-release 2>/dev/null; echo \"os=${ID:-unknown} ${ID_LIKE:-} ${VERSION_ID:-}\"",
        *[f"dpkg-query -W -f='${{Status}}' {shlex.quote(p)} 2>/dev/null | grep -q 'ok installed' "
          f"&& echo pkg={shlex.quote(p)}=yes || echo pkg={shlex.quote(p)}=no" for p in PACKAGES],
        f"test -e {DAEMON_JSON} && echo daemon_json=present || echo daemon_json=absent",
        "docker info >/dev/null 2>&1 && echo docker=running || echo docker=stopped",
        f"id -u {shlex.quote(user)} >/dev/null 2>&1 && echo user=yes || echo user=no",
        f"id -nG {shlex.quote(user)} 2>/dev/null | tr ' ' '\\n' | grep -qx docker && echo group=yes || echo group=no",
        f"grep -qF {shlex.quote(key_line.split()[1])} \"$(getent passwd {shlex.quote(user)} | cut -d: -f6)"
        "/.ssh/authorized_keys\" 2>/dev/null && echo key=yes || echo key=no",
        f"test \"$(stat -c %U {shlex.quote(app_dir)} 2>/dev/null)\" = {shlex.quote(user)} "
        "&& echo app_dir=yes || echo app_dir=no",
        f"cat {FIREWALL_FILE} 2>/dev/null | md5sum | cut -c1-32 | sed 's/^/fw_file=/'",
        f"nft list table inet {FIREWALL_TABLE} >/dev/null 2>&1 && echo fw_table=yes || echo fw_table=no",
        "test -d /run/systemd/system && echo init=systemd || echo init=other",
    ])
    res = _root(gw, host, script, mutating=False, timeout=60)
    if not res.ok:
        raise HostError(f"cannot look at the host as {env.setup.admin_user}: "
                        f"{(res.stderr.strip() or res.stdout.strip()).splitlines()[-1:] or ['no output']}",
                        host=host.name)
    facts = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line and not line.startswith("pkg="))
    pkgs = {p: v for p, v in (line[4:].rsplit("=", 1) for line in res.stdout.splitlines() if line.startswith("pkg="))}
    os_words = facts.get("os", "unknown").split()
    if not set(os_words[:-1] or os_words) & set(SUPPORTED_OS):
        raise HostError(f"setup supports Debian and Ubuntu hosts (apt); this one runs {os_words[0]}",
                        host=host.name, hint="install Docker and create the deploy user by hand (README \"inv setup\")")
    plan = HostSetup(host, os=" ".join(os_words))
    missing = [p for p in PACKAGES if pkgs.get(p) != "yes"]
    plan.steps.append(Step("packages", f"apt-get install {' '.join(missing)}" if missing else ""))
    present = facts.get("daemon_json") == "present"
    plan.steps.append(Step("docker config", "" if present else f"write {DAEMON_JSON} ({', '.join(sorted(env.setup.docker_daemon))})"))
    init = facts.get("init", "other")
    plan.steps.append(Step("docker engine", "" if facts.get("docker") == "running" else
                           ("systemctl enable --now docker" if init == "systemd" else "start dockerd")))
    user_change = []
    if facts.get("user") != "yes":
        user_change.append(f"create user {user} (no password)")
    if facts.get("group") != "yes":
        user_change.append("add it to the docker group")
    if facts.get("key") != "yes":
        user_change.append("authorize the inventory's key")
    plan.steps.append(Step("deploy user", "; ".join(user_change)))
    plan.steps.append(Step("app dir", "" if facts.get("app_dir") == "yes" else f"create {app_dir} owned by {user}"))
    if env.setup.firewall:
        plan.firewall = render_firewall(deploy_env, host)
        same = (facts.get("fw_file") == hashlib.md5(plan.firewall.encode()).hexdigest()  # noqa: S324 - a change check
                and facts.get("fw_table") == "yes")
        open_ports, restricted = allowed_ports(deploy_env, host)
        what = (f"nftables: ssh {env.setup.ssh_port}, open {', '.join(map(str, open_ports)) or 'nothing else'}"
                + "".join(f", {p} from {', '.join(s) or 'nobody'}" for p, s in restricted))
        plan.steps.append(Step("firewall", "" if same else what,
                               warning="" if init == "systemd" else "no systemd: the rules do not survive a reboot"))
    return plan


def bootstrap_script(env: Environment, deploy_env: Environment, plan: HostSetup) -> str:
    """Steps 2-6 as one root shell script (each part idempotent)."""
    user, app_dir = deploy_env.hosts[plan.host.name].user, deploy_env.app_dir
    key_line = public_key_line(str(env.ssh.key))
    q = shlex.quote
    parts = ["set -e", "export DEBIAN_FRONTEND=noninteractive"]
    parts.append("need=''; for p in " + " ".join(map(q, PACKAGES))
                 + "; do dpkg-query -W -f='${Status}' \"$p\" 2>/dev/null | grep -q 'ok installed' || need=\"$need $p\"; done")
    parts.append('if [ -n "$need" ]; then apt-get update -q >/dev/null && '
                 'apt-get install -y -q --no-install-recommends $need >/dev/null; fi')
    parts.append(f"mkdir -p /etc/docker; test -e {DAEMON_JSON} || printf '%s' {q(daemon_json(env.setup.docker_daemon))} "
                 f"> {DAEMON_JSON}")
    parts.append(
        "if ! docker info >/dev/null 2>&1; then "
        "  if [ -d /run/systemd/system ]; then systemctl enable --now docker >/dev/null 2>&1; "
        "  else (service docker start >/dev/null 2>&1 || true); "
        "    docker info >/dev/null 2>&1 || { rm -f /var/run/docker.pid; "
        "      setsid nohup dockerd >>/var/log/dockerd.log 2>&1 </dev/null & echo 'started-by-hand'; }; fi; "
        f"  i=0; until docker info >/dev/null 2>&1; do i=$((i+1)); [ $i -gt {DOCKER_WAIT_S} ] && "
        "    { echo 'dockerd did not come up: see /var/log/dockerd.log or journalctl -u docker' >&2; exit 3; }; "
        "    sleep 1; done; fi")
    parts.append(f"id -u {q(user)} >/dev/null 2>&1 || useradd --create-home --shell /bin/bash {q(user)}")
    parts.append(f"usermod -p '*' {q(user)}")  # no password login, yet not a locked account (sshd refuses those)
    parts.append(f"usermod -aG docker {q(user)}")
    parts.append(f"home=$(getent passwd {q(user)} | cut -d: -f6)")
    parts.append(f'install -d -m 0700 -o {q(user)} -g {q(user)} "$home/.ssh"')
    parts.append(f'touch "$home/.ssh/authorized_keys"; chown {q(user)}:{q(user)} "$home/.ssh/authorized_keys"; '
                 'chmod 0600 "$home/.ssh/authorized_keys"')
    parts.append(f'grep -qF {q(key_line.split()[1])} "$home/.ssh/authorized_keys" || '
                 f'printf "%s\\n" {q(key_line)} >> "$home/.ssh/authorized_keys"')
    parts.append(f"install -d -m 0750 -o {q(user)} -g {q(user)} {q(app_dir)}")
    return "\n".join(parts)


def bootstrap(gw: Gateway, plan: HostSetup, deploy_env: Environment) -> list[str]:
    """Steps 2-6 on one host, as root. Returns warnings."""
    if not any(s.needed for s in plan.steps if s.name != "firewall"):
        return []
    res = _root(gw, plan.host, bootstrap_script(gw.env, deploy_env, plan), timeout=APT_TIMEOUT)
    if not res.ok:
        tail = (res.stderr.strip() or res.stdout.strip()).splitlines()[-3:]
        raise HostError(f"setup failed: {' | '.join(tail) or f'exit {res.exit_code}'}", host=plan.host.name,
                        hint="fix what it names and run inv setup again (every step is idempotent)")
    if "started-by-hand" in res.stdout:
        return [f"{plan.host.name}: no service manager started Docker: dockerd runs by hand and will not "
                "start again after a reboot"]
    return []


def apply_firewall(gw: Gateway, plan: HostSetup, reconnect: Callable[[Host], None]) -> None:
    """Load the ruleset with a dead man's switch; ``reconnect`` must open a NEW SSH session."""
    step = next((s for s in plan.steps if s.name == "firewall"), None)
    if step is None or not step.needed:
        return
    host, q = plan.host, shlex.quote
    script = "\n".join([
        "set -e",
        "mkdir -p /etc/ops",
        f"printf '%s' {q(plan.firewall)} > {FIREWALL_FILE}.new",
        f"nft -c -f {FIREWALL_FILE}.new",
        # The switch: unless cancelled, our table goes again (SSH comes back by itself).
        f"setsid sh -c 'sleep {FIREWALL_REVERT_S}; nft delete table inet {FIREWALL_TABLE}; "
        f"rm -f {FIREWALL_FILE}' >/dev/null 2>&1 </dev/null & echo $! > {REVERT_PID}",
        f"nft -f {FIREWALL_FILE}.new",
        f"mv {FIREWALL_FILE}.new {FIREWALL_FILE}",
    ])
    res = _root(gw, host, script, timeout=60)
    if not res.ok:
        why = [ln.strip() for ln in res.stderr.splitlines() if "Error" in ln] or res.stderr.strip().splitlines()[-1:]
        raise HostError(f"nftables refused the firewall: {(why or ['?'])[0]}",
                        host=host.name, hint="nothing was loaded; the previous rules stay")
    try:
        reconnect(host)
    except OpsError as exc:
        raise HostError(f"a new SSH connection failed after the firewall was loaded ({exc}); it removes "
                        f"itself within {FIREWALL_REVERT_S}s", host=host.name,
                        hint="check setup.ssh_port (the port sshd listens on inside the host)") from None
    persist = (f"kill $(cat {REVERT_PID}) 2>/dev/null; rm -f {REVERT_PID}; "
               f"if [ -d /run/systemd/system ]; then grep -qF {q(FIREWALL_FILE)} {NFTABLES_CONF} 2>/dev/null || "
               f"printf 'include \"%s\"\\n' {q(FIREWALL_FILE)} >> {NFTABLES_CONF}; "
               "systemctl enable nftables >/dev/null 2>&1 || true; fi")
    res = _root(gw, host, persist, timeout=60)
    if not res.ok:
        raise HostError(f"could not cancel the firewall's dead man's switch: {res.stderr.strip()[-200:]}",
                        host=host.name, hint=f"the rules remove themselves within {FIREWALL_REVERT_S}s; run inv setup again")


# -- the whole task ------------------------------------------------------------------------
def plan_setup(env: Environment, hosts: list[Host]) -> list[HostSetup]:
    """Probe every host as the admin user (changes nothing)."""
    admin = as_admin(env)
    with Gateway(admin) as gw:
        results = gw.map(lambda h: probe(gw, h, env), [admin.hosts[h.name] for h in hosts])
    results.raise_if_failed("setup (looking at the hosts)")
    return [results.ok[h.name] for h in hosts]


def _reconnect(admin: Environment) -> Callable[[Host], None]:
    def check(host: Host) -> None:
        with Gateway(admin) as fresh:  # a new SSH session, not the one the firewall let stay
            fresh.query(host, ("true",), timeout=20)
    return check


def apply_setup(env: Environment, plans: list[HostSetup], *, say: Say) -> list[str]:
    """Bootstrap (as root), then the firewall inside the envelope (lock + audit as the deploy user).
    Returns warnings."""
    admin = as_admin(env)
    warnings: list[str] = []
    by_name = {p.host.name: p for p in plans}
    with Gateway(admin) as agw:
        say(f"bootstrapping {', '.join(by_name)} as {admin.ssh.user} (packages, Docker, deploy user, app dir)")
        boot = agw.map(lambda h: bootstrap(agw, by_name[h.name], env), [p.host for p in plans])
        boot.raise_if_failed("setup")
        for ws in boot.ok.values():
            warnings += ws
        deploy_hosts = [env.hosts[name] for name in by_name]
        with Gateway(env) as dgw, Operation(dgw, "setup", deploy_hosts, say=say,
                                            detail="bootstrap done; firewall") as op:
            if any(s.needed for p in plans for s in p.steps if s.name == "firewall"):
                say("loading the firewall (it removes itself unless a new SSH connection confirms it)")
            fw = agw.map(lambda h: apply_firewall(agw, by_name[h.name], _reconnect(admin)), [p.host for p in plans])
            fw.raise_if_failed("setup (firewall)")
            op.outcome = f"{len(plans)} host(s) ready"
            warnings += op.warnings
    warnings += [f"{p.host.name}: {s.warning}" for p in plans for s in p.steps if s.warning]
    return warnings


__all__ = ["HostSetup", "Step", "allowed_ports", "apply_firewall", "as_admin", "bootstrap", "daemon_json",
           "apply_setup", "plan_setup", "probe", "public_key_line", "render_firewall", "root_command"]
