"""Load and validate ``inventory/<env>.yml``.

An inventory file describes one environment. Validation collects every problem
before failing so an operator fixes a file in one pass; each problem is one line
naming the file, the key path and the fix.

``--host`` on the command line takes an environment name (``prod``) or one host
inside it (``prod:web1``); ``resolve_target`` turns that into a ``Target``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ops.appenv import PROFILES, is_schema_file
from ops.errors import ConfigError, InventoryError
from ops.pitr_config import PitrSettings
from ops.pitr_config import validate as validate_pitr
from ops.uploads_layout import UploadsSettings
from ops.uploads_layout import validate as validate_uploads

PROJECT_ROOT = Path(__file__).resolve().parent.parent
INVENTORY_DIR = PROJECT_ROOT / "inventory"

ROLES = ("web", "db")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}\Z")
# Docker image references: lowercase path components, optional registry host:port.
IMAGE_RE = re.compile(r"^[a-z0-9][a-z0-9._:/-]*\Z")


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    port: int = 22
    user: str = "deploy"
    roles: tuple[str, ...] = ()
    # Address other hosts use to reach this one (app -> db); defaults to ``address``.
    private_address: str = ""

    @property
    def reach_address(self) -> str:
        return self.private_address or self.address


@dataclass(frozen=True)
class SSHSettings:
    user: str
    key: Path | None
    known_hosts: Path
    connect_timeout: float = 10.0
    command_timeout: float = 600.0
    parallel: int = 10
    # Seconds between SSH keepalives on an idle session (NAT/firewall state stays alive;
    # a dead peer surfaces as an error instead of a silent hang).
    keepalive: int = 15


@dataclass(frozen=True)
class Registry:
    # ``host[:port]`` the operator pushes to.
    url: str
    # True: hosts pull from ``localhost:<port>`` through an SSH reverse tunnel to ``url``.
    tunnel: bool = False


@dataclass(frozen=True)
class Health:
    path: str = "/api/health"
    port: int = 3000
    timeout: float = 60.0


@dataclass(frozen=True)
class DeploySettings:
    batch_size: int = 1
    keep_releases: int = 3
    # Seconds the old container keeps answering after the site first serves the new one,
    # before SIGTERM (nginx retries a refused request on the new one: no DNS wait needed).
    drain_seconds: float = 0.2
    # Seconds between SIGTERM and SIGKILL: the app's graceful shutdown must fit in it.
    stop_timeout: int = 30
    # Static files of each release served by nginx across switches (asset bridging); "" = off.
    asset_path: str = "/app/.next/static"
    asset_url: str = "/_next/static"
    # Paths requested of a new container after its health check, before it takes traffic.
    warmup: tuple[str, ...] = ("/",)


@dataclass(frozen=True)
class S3Settings:
    bucket: str
    prefix: str = ""
    region: str = "us-east-1"
    endpoint_url: str | None = None
    path_style: bool = False
    sse: str | None = None
    # Names of the ops env file variables holding this target's credentials (never values).
    key_var: str = "AWS_ACCESS_KEY_ID"
    secret_var: str = "AWS_SECRET_ACCESS_KEY"
    # `s3.copy`: a second target (another bucket / endpoint / region) that every logical and
    # uploads backup is copied to, under the same keys (ops/backup/second_copy.py); None: no copy.
    copy: S3Settings | None = None


@dataclass(frozen=True)
class BackupSettings:
    # Grandfather-father-son retention: the newest `keep_last`, plus the newest of each
    # of the last `daily` days, `weekly` ISO weeks and `monthly` months.
    keep_last: int = 7
    daily: int = 7
    weekly: int = 4
    monthly: int = 6
    # `backup.check` fails when the newest good backup is older than this (hours).
    max_age_hours: float = 26.0
    # Name of a variable in the operator env file holding a client-side encryption
    # passphrase; unset = no client-side encryption (server-side `s3.sse` still applies).
    encryption_key_var: str | None = None


@dataclass(frozen=True)
class DoctorSettings:
    min_free_gb: float = 2.0
    max_clock_skew: float = 2.0


def _log_rotation() -> dict:
    return {"log-driver": "json-file", "log-opts": {"max-size": "10m", "max-file": "5"}}


@dataclass(frozen=True)
class SetupSettings:
    """``inv setup`` (ops/setup.py): how a bare host is made ready."""

    admin_user: str = "root"        # the account setup logs in as (root, or one with password-less sudo)
    ssh_port: int = 22              # the port sshd listens on inside the host (the firewall keeps it open)
    firewall: bool = True
    open_ports: tuple[int, ...] = ()     # web hosts: open to anyone on top of the proxy's ports
    allow_from: tuple[str, ...] = ()     # accessory ports: these sources too, on top of the web hosts
    docker_daemon: dict = field(default_factory=_log_rotation)  # /etc/docker/daemon.json of a new host


APP_DIR_RE = re.compile(r"^/[A-Za-z0-9._/-]+$")
WARMUP_PATH_RE = re.compile(r"^/[A-Za-z0-9._~/?=&%-]{0,200}\Z")
NAME_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}\Z")
ASSET_PATH_RE = re.compile(r"^/[A-Za-z0-9._/-]*$")


@dataclass(frozen=True)
class BuildSettings:
    # The app's git checkout (build context); the image tag is its commit SHA.
    source: Path | None = None
    dockerfile: str = "Dockerfile"
    args: dict[str, str] = field(default_factory=dict)
    # The operator's CA bundle (PEM) for builds behind a TLS-intercepting proxy: copied
    # into the context for one build and passed as --build-arg OPS_CA_BUNDLE=<its name>.
    ca_bundle: Path | None = None


@dataclass(frozen=True)
class MigrateSettings:
    # Run once per deploy in a one-off container of the new image with the new env.
    command: str = "npx prisma migrate deploy"
    timeout: float = 600.0
    # False (``migrate: false`` in the inventory): the deploy has no migrate step.
    enabled: bool = True
    # Prisma's migrations directory in the image (relative: to its WORKDIR) and in the build
    # context: read before any host pulls, to list and classify what will run.
    path: str = "prisma/migrations"
    # "ask": a destructive or locking migration needs --allow-destructive; "allow": consent given here.
    policy: str = "ask"
    # Tables with at least this many rows (planner estimate) make a blocking index or rewrite "locking".
    big_table_rows: int = 10_000

    @property
    def program(self) -> str:
        """The program the command starts (its first word after NAME=value assignments): checked
        to be in the image before a deploy pulls it everywhere."""
        words = shlex.split(self.command) if self.enabled else []
        return next((w for w in words if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w)), "")


@dataclass(frozen=True)
class ImageRef:
    """An image not built by us (proxy, accessories)."""

    image: str
    # True: ``image`` is a path in this environment's registry (pulled like the app).
    from_registry: bool = False


TLS_MODES = ("files", "acme")
LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
DOMAIN_RE = re.compile(r"^(?=.{1,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")


@dataclass(frozen=True)
class TlsSettings:
    """HTTPS at the proxy (``proxy.tls``): one certificate for ``domains`` on every web host."""

    domains: tuple[str, ...]
    # "files": the operator's cert_file/key_file; "acme": obtained over HTTP-01 through the proxy.
    certificate: str
    cert_file: Path | None = None
    key_file: Path | None = None
    directory: str = LETS_ENCRYPT
    email: str | None = None
    # Trust for the ACME server's own TLS (a private server such as pebble); None: the system's.
    ca_file: Path | None = None
    # The ACME account's private key on the operator's machine (made 0600 when missing).
    account_key: Path | None = None
    renew_before_days: int = 30
    # Host port published for the proxy's 443.
    https_port: int = 443


@dataclass(frozen=True)
class ProxySettings:
    image: ImageRef = ImageRef("nginx:1.27")
    # Port nginx listens on, on the web host.
    port: int = 80
    # None: plain http (no HSTS); the ACME challenge path is served either way.
    tls: TlsSettings | None = None


@dataclass(frozen=True)
class Accessory:
    """A long-lived service container (Postgres, Redis) on one host."""

    name: str
    host: str
    image: ImageRef
    port: int
    # Where the service keeps data inside its container (a named volume is mounted there).
    data_path: str
    # Names of variables passed from the env file (values never in argv).
    env: tuple[str, ...] = ()


SMOKE_HEADERS = ("X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy", "Content-Security-Policy")
SMOKE_ON_FAILURE = ("report", "rollback")
NOTIFY_EVENTS = ("deploy", "rollback", "deploy_failed", "backup_failed", "backup_stale")


@dataclass(frozen=True)
class SmokeSettings:
    """``inv smoke`` (and the check after a deploy): the seed's success criteria, as thresholds."""

    # The public URL (https://example.org); None: each web host's nginx, reached through SSH.
    url: str | None = None
    paths: tuple[str, ...] = ("/",)
    page_max_seconds: float = 3.0
    websocket_max_seconds: float = 1.0
    # Socket.io endpoint ("" = the app has no realtime part); polling: also the Engine.IO handshake.
    socketio_path: str = "/socket.io/"
    polling_handshake: bool = True
    headers: tuple[str, ...] = SMOKE_HEADERS
    cert_min_days: int = 14
    # A CA file the certificate must chain to (a private or test CA); None: the system's.
    ca_file: Path | None = None
    # What a failing smoke check after ``inv deploy`` does: report it, or roll back.
    on_failure: str = "report"


@dataclass(frozen=True)
class NotifySettings:
    """Where deploys, rollbacks and backup problems are announced. The URLs and tokens hold secrets,
    so the inventory names variables of the operator's env file (``ops_env_file``), never values."""

    webhook_var: str | None = None
    events: tuple[str, ...] = NOTIFY_EVENTS
    sentry_url: str = "https://sentry.io"
    sentry_org: str | None = None
    sentry_project: str | None = None
    sentry_token_var: str = "SENTRY_AUTH_TOKEN"
    timeout: float = 5.0


@dataclass(frozen=True)
class SandboxSettings:
    network: str
    subnet: str
    # host name -> {port on 127.0.0.1: port in the host container}
    publish: dict[str, dict[int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Environment:
    name: str
    path: Path
    app: str
    image: str
    registry: Registry
    ssh: SSHSettings
    hosts: dict[str, Host]
    env_file: Path | None
    app_dir: str
    health: Health
    deploy: DeploySettings
    doctor: DoctorSettings
    s3: S3Settings | None = None
    sandbox: SandboxSettings | None = None
    # Production rules for the app's env file (https URLs, no example placeholders).
    production: bool = True
    # The app's env schema: a built-in profile name (ops.appenv.PROFILES) or a .yml file
    # (relative: to the repository root, else in build.source); read by ops.appenv.schema_for.
    env_schema: str = "nextjs-prisma"
    build: BuildSettings = BuildSettings()
    migrate: MigrateSettings = MigrateSettings()
    proxy: ProxySettings = ProxySettings()
    accessories: dict[str, Accessory] = field(default_factory=dict)
    backup: BackupSettings = BackupSettings()
    # Operator-side secrets (AWS_*, REGISTRY_*, backup passphrase): read here, never uploaded.
    ops_env_file: Path | None = None
    # Local executables run around deploys (see ops/hooks.py).
    hooks_dir: Path = INVENTORY_DIR / "hooks"
    # Continuous WAL archiving + physical backups with pgBackRest (ops/pitr_config.py); None: off.
    pitr: PitrSettings | None = None
    smoke: SmokeSettings = SmokeSettings()
    notify: NotifySettings = NotifySettings()
    setup: SetupSettings = SetupSettings()
    # Where uploaded files live so every web host serves one set (ops/uploads_layout.py).
    uploads: UploadsSettings = UploadsSettings()

    def with_roles(self, role: str) -> list[Host]:
        return [h for h in self.hosts.values() if role in h.roles]


@dataclass(frozen=True)
class Target:
    """What ``--host`` selected: an environment and the hosts to act on."""

    env: Environment
    hosts: tuple[Host, ...]


def available_environments(inventory_dir: Path = INVENTORY_DIR) -> list[str]:
    return sorted(p.stem for p in inventory_dir.glob("*.yml"))


def resolve_target(spec: str | None, inventory_dir: Path = INVENTORY_DIR) -> Target:
    """``prod`` -> every host of prod; ``prod:web1`` -> that host alone."""
    envs = available_environments(inventory_dir)
    if not spec:
        raise ConfigError(
            "no --host given",
            hint=f"pass an environment or env:host, one of: {', '.join(envs) or '(none)'}",
        )
    env_name, _, host_name = spec.partition(":")
    if env_name not in envs:
        raise ConfigError(
            f"unknown environment {env_name!r} in --host {spec!r}",
            hint=f"known environments: {', '.join(envs) or '(none)'} (files in {_rel(inventory_dir)}/)",
        )
    env = load_environment(env_name, inventory_dir)
    if not host_name:
        return Target(env, tuple(env.hosts.values()))
    if host_name not in env.hosts:
        raise ConfigError(
            f"unknown host {host_name!r} in environment {env_name!r}",
            hint=f"hosts in {env_name}: {', '.join(env.hosts)}",
        )
    return Target(env, (env.hosts[host_name],))


def load_environment(name: str, inventory_dir: Path = INVENTORY_DIR) -> Environment:
    path = inventory_dir / f"{name}.yml"
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no inventory file {_rel(path)}",
                          hint=f"create it or use one of: {', '.join(available_environments(inventory_dir))}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise InventoryError([f"{_rel(path)}:{where} not valid YAML ({getattr(exc, 'problem', exc)})"
                              " — fix the syntax"]) from None
    return _Validator(name, path, inventory_dir.parent).environment(raw)


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class _Validator:
    """Builds an ``Environment`` from parsed YAML, collecting every problem."""

    TOP_KEYS = {"app", "production", "image", "registry", "ssh", "hosts", "env_file", "app_dir",
                "health", "deploy", "doctor", "s3", "sandbox", "build", "migrate", "proxy", "accessories",
                "hooks_dir", "backup", "ops_env_file", "env_schema", "pitr", "smoke", "notify", "setup", "uploads"}

    def __init__(self, name: str, path: Path, root: Path):
        self.name = name
        self.path = path
        self.root = root
        self.problems: list[str] = []

    # -- reporting -------------------------------------------------------
    def problem(self, key: str, msg: str, fix: str) -> None:
        self.problems.append(f"{_rel(self.path)}: {key}: {msg} — {fix}")

    def section(self, raw: dict, key: str, allowed: set[str], *, required: bool = False) -> dict:
        value = raw.get(key)
        if value is None:
            if required:
                self.problem(key, "missing", f"add a '{key}:' mapping")
            return {}
        if not isinstance(value, dict):
            self.problem(key, f"must be a mapping, got {type(value).__name__}",
                         f"write '{key}:' followed by indented keys")
            return {}
        self.unknown_keys(value, allowed, key)
        return value

    def unknown_keys(self, raw: dict, allowed: set[str], prefix: str = "") -> None:
        for key in raw:
            if key not in allowed:
                where = f"{prefix}.{key}" if prefix else str(key)
                self.problem(where, "unknown key", f"remove it or use one of: {', '.join(sorted(allowed))}")

    # -- typed getters ---------------------------------------------------
    def string(self, raw: dict, key: str, where: str, default: Any = None, *,
               required: bool = False, pattern: re.Pattern | None = None, what: str = "") -> Any:
        value = raw.get(key)
        if value is None:
            if required:
                self.problem(where, "missing", f"set {where} to {what or 'a value'}")
            return default
        if not isinstance(value, str) or not value.strip():
            self.problem(where, f"must be a non-empty string, got {value!r}", f"set it to {what or 'a string'}")
            return default
        if pattern and not pattern.match(value):
            self.problem(where, f"{value!r} is not valid", f"use {what}")
            return default
        return value


    def subsection(self, parent: dict, key: str, where: str, keys: set[str], example: str) -> dict | None:
        """``parent[key]``, a mapping of only ``keys``; None when absent (or off), or not a mapping
        (then one problem naming ``where`` with ``example`` as the fix)."""
        sec = parent.get(key)
        if sec in (None, False):
            return None
        if not isinstance(sec, dict):
            self.problem(where, f"must be a mapping, got {type(sec).__name__}", example)
            return None
        self.unknown_keys(sec, keys, where)
        return sec
    def number(self, raw: dict, key: str, where: str, default: Any, *, lo: float, hi: float,
               integer: bool = True) -> Any:
        value = raw.get(key, default)
        kind = int if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kind) or not lo <= value <= hi:
            noun = "an integer" if integer else "a number"
            self.problem(where, f"must be {noun} {lo:g}-{hi:g}, got {value!r}", f"set {noun} in that range")
            return default
        return value

    def boolean(self, raw: dict, key: str, where: str, default: bool) -> bool:
        value = raw.get(key, default)
        if not isinstance(value, bool):
            self.problem(where, f"must be true or false, got {value!r}", "write true or false")
            return default
        return value

    def path_value(self, raw: dict, key: str, where: str, *, required: bool = False) -> Path | None:
        value = self.string(raw, key, where, required=required, what="a file path")
        if value is None:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.root / p

    # -- sections --------------------------------------------------------
    def environment(self, raw: Any) -> Environment:
        if not isinstance(raw, dict):
            raise InventoryError([f"{_rel(self.path)}: top level must be a mapping of settings, "
                                  f"got {type(raw).__name__} — see inventory/prod.yml for the shape"])
        self.unknown_keys(raw, self.TOP_KEYS)
        app = self.string(raw, "app", "app", required=True, pattern=NAME_RE,
                          what="a lowercase name like 'athlete-platform'")
        image = self.string(raw, "image", "image", required=True, pattern=IMAGE_RE,
                            what="an image name like 'registry.example.com/team/app' (no tag)")
        if isinstance(image, str) and ":" in image.rsplit("/", 1)[-1]:
            self.problem("image", f"{image!r} includes a tag", "drop the tag: the deploy tags with the git SHA")
        ssh = self.ssh(raw)
        env = Environment(
            name=self.name, path=self.path, app=app or "", image=image or "",
            production=self.boolean(raw, "production", "production", True),
            env_schema=self.env_schema(raw),
            registry=self.registry(raw), ssh=ssh, hosts=self.hosts(raw, ssh.user),
            env_file=self.path_value(raw, "env_file", "env_file"),
            app_dir=self.string(raw, "app_dir", "app_dir", f"/srv/{app or 'app'}"),
            health=self.health(raw), deploy=self.deploy(raw), doctor=self.doctor(raw),
            s3=self.s3(raw), sandbox=self.sandbox(raw), build=self.build(raw),
            migrate=self.migrate(raw), proxy=self.proxy(raw),
        )
        env = dataclasses.replace(env, accessories=self.accessories(raw, env.hosts), backup=self.backup(raw),
                                  ops_env_file=self.path_value(raw, "ops_env_file", "ops_env_file"),
                                  hooks_dir=self.path_value(raw, "hooks_dir", "hooks_dir")
                                  or self.root / "inventory" / "hooks",
                                  smoke=self.smoke(raw), notify=self.notify(raw), setup=self.setup(raw))
        env = dataclasses.replace(env, pitr=validate_pitr(self, raw, app=env.app, s3=env.s3,
                                                          backup_key_var=env.backup.encryption_key_var),
                                  uploads=validate_uploads(self, raw, web_hosts=[h.name for h in env.with_roles("web")]))
        if env.app_dir and not env.app_dir.startswith("/"):
            self.problem("app_dir", f"{env.app_dir!r} is not absolute", "use an absolute path like /srv/app")
        elif env.app_dir and (not APP_DIR_RE.match(env.app_dir) or "/../" in f"{env.app_dir}/"):
            # NOTE: every command quotes it anyway; a path with shell syntax or '..' in an
            # inventory is a mistake or an attack, and a deploy must not run beside the real one.
            self.problem("app_dir", f"{env.app_dir!r} holds characters other than letters, digits, '.', '_', '-', '/' "
                         "(or a '..')", "use a plain absolute path like /srv/app")
        if env.sandbox:
            for host in env.sandbox.publish:
                if host not in env.hosts:
                    self.problem(f"sandbox.publish.{host}", "names no host of this inventory",
                                 f"use one of: {', '.join(env.hosts)}")
        if self.problems:
            raise InventoryError(self.problems)
        return env

    def ssh(self, raw: dict) -> SSHSettings:
        sec = self.section(raw, "ssh", {"user", "key", "known_hosts", "connect_timeout",
                                        "command_timeout", "parallel", "keepalive"}, required=True)
        known = self.path_value(sec, "known_hosts", "ssh.known_hosts", required=bool(sec))
        return SSHSettings(
            user=self.string(sec, "user", "ssh.user", "deploy"),
            key=self.path_value(sec, "key", "ssh.key"),
            known_hosts=known or self.root / "inventory" / f"{self.name}.known_hosts",
            connect_timeout=self.number(sec, "connect_timeout", "ssh.connect_timeout", 10.0,
                                        lo=1, hi=300, integer=False),
            command_timeout=self.number(sec, "command_timeout", "ssh.command_timeout", 600.0,
                                        lo=1, hi=86400, integer=False),
            parallel=self.number(sec, "parallel", "ssh.parallel", 10, lo=1, hi=100),
            keepalive=self.number(sec, "keepalive", "ssh.keepalive", 15, lo=1, hi=600),
        )

    def registry(self, raw: dict) -> Registry:
        sec = self.section(raw, "registry", {"url", "tunnel"}, required=True)
        url = self.string(sec, "url", "registry.url", required=bool(sec),
                          pattern=re.compile(r"^[A-Za-z0-9.-]+(:\d{1,5})?$"),
                          what="host[:port] like 'registry.example.com' or '127.0.0.1:5000'")
        return Registry(url=url or "", tunnel=self.boolean(sec, "tunnel", "registry.tunnel", False))

    def hosts(self, raw: dict, default_user: str) -> dict[str, Host]:
        value = raw.get("hosts")
        if not isinstance(value, dict) or not value:
            self.problem("hosts", "missing or empty", "add at least one host: 'hosts: {web1: {address: ..., roles: [web]}}'")
            return {}
        hosts: dict[str, Host] = {}
        seen: dict[tuple[str, int], str] = {}
        for name, spec in value.items():
            where = f"hosts.{name}"
            if not isinstance(name, str) or not NAME_RE.match(name):
                self.problem(where, f"host name {name!r} is not valid", "use lowercase letters, digits and '-'")
                continue
            if not isinstance(spec, dict):
                self.problem(where, "must be a mapping", "give it at least 'address:' and 'roles:'")
                continue
            self.unknown_keys(spec, {"address", "port", "user", "roles", "private_address"}, where)
            address = self.string(spec, "address", f"{where}.address", required=True,
                                  what="an IP address or DNS name")
            port = self.number(spec, "port", f"{where}.port", 22, lo=1, hi=65535)
            roles = spec.get("roles")
            if not isinstance(roles, list) or not roles:
                self.problem(f"{where}.roles", f"must be a non-empty list, got {roles!r}",
                             f"list one or more of: {', '.join(ROLES)}")
                roles = []
            for role in roles:
                if role not in ROLES:
                    self.problem(f"{where}.roles", f"unknown role {role!r}", f"use one of: {', '.join(ROLES)}")
            private = self.string(spec, "private_address", f"{where}.private_address", "")
            if private:
                try:
                    ipaddress.ip_address(private)
                except ValueError:
                    self.problem(f"{where}.private_address", f"{private!r} is not an IP address",
                                 "give the address other hosts reach it on")
            if address:
                key = (address, port)
                if key in seen:
                    self.problem(where, f"same address and port as hosts.{seen[key]} ({address}:{port})",
                                 "remove the duplicate or fix its address/port")
                seen[key] = name
            hosts[name] = Host(name=name, address=address or "", port=port,
                               user=self.string(spec, "user", f"{where}.user", default_user),
                               roles=tuple(r for r in roles if r in ROLES), private_address=private)
        if hosts and not any("web" in h.roles for h in hosts.values()):
            self.problem("hosts", "no host has the 'web' role", "give at least one host 'roles: [web]'")
        return hosts

    def health(self, raw: dict) -> Health:
        sec = self.section(raw, "health", {"path", "port", "timeout"})
        path = self.string(sec, "path", "health.path", "/api/health", pattern=re.compile(r"^/"),
                           what="a path starting with '/'")
        return Health(path=path,
                      port=self.number(sec, "port", "health.port", 3000, lo=1, hi=65535),
                      timeout=self.number(sec, "timeout", "health.timeout", 60.0, lo=1, hi=3600, integer=False))

    def deploy(self, raw: dict) -> DeploySettings:
        sec = self.section(raw, "deploy", {"batch_size", "keep_releases", "drain_seconds", "stop_timeout",
                                           "asset_path", "asset_url", "warmup"})
        asset_path = sec.get("asset_path", DeploySettings.asset_path)
        if asset_path in (False, None, "", "none"):
            asset_path = ""
        asset_path = self.string({"asset_path": asset_path} if asset_path else {}, "asset_path", "deploy.asset_path",
                                 "", pattern=ASSET_PATH_RE, what="an absolute path in the image, e.g. /app/.next/static")
        asset_url = self.string(sec, "asset_url", "deploy.asset_url", DeploySettings.asset_url, pattern=ASSET_PATH_RE,
                                what="a URL path prefix, e.g. /_next/static")
        return DeploySettings(batch_size=self.number(sec, "batch_size", "deploy.batch_size", 1, lo=1, hi=1000),
                              keep_releases=self.number(sec, "keep_releases", "deploy.keep_releases", 3, lo=1, hi=100),
                              drain_seconds=self.number(sec, "drain_seconds", "deploy.drain_seconds", 0.2, lo=0,
                                                        hi=600, integer=False),
                              stop_timeout=self.number(sec, "stop_timeout", "deploy.stop_timeout", 30, lo=1, hi=3600),
                              asset_path=asset_path or "", asset_url=asset_url, warmup=self.warmup(sec))

    def warmup(self, sec: dict) -> tuple[str, ...]:
        paths = sec.get("warmup", list(DeploySettings.warmup))
        if paths in (None, False):
            return ()
        if not isinstance(paths, list) or not all(isinstance(p, str) and WARMUP_PATH_RE.fullmatch(p) for p in paths):
            self.problem("deploy.warmup", f"{paths!r} is not a list of URL paths",
                         "write e.g. [/, /login] (absolute paths, no spaces), or [] for none")
            return ()
        return tuple(paths)

    def setup(self, raw: dict) -> SetupSettings:
        sec = self.section(raw, "setup", {"admin_user", "ssh_port", "firewall", "open_ports", "allow_from",
                                          "docker_daemon"})
        ports = sec.get("open_ports", [])
        if not isinstance(ports, list) or not all(isinstance(p, int) and not isinstance(p, bool)
                                                  and 1 <= p <= 65535 for p in ports):
            self.problem("setup.open_ports", f"{ports!r} is not a list of ports", "write e.g. [8080] or leave it out")
            ports = []
        sources = sec.get("allow_from", [])
        good_sources = []
        for src in sources if isinstance(sources, list) else [sources]:
            try:
                good_sources.append(str(ipaddress.ip_network(str(src), strict=False)))
            except ValueError:
                self.problem("setup.allow_from", f"{src!r} is not an IPv4/IPv6 address or network",
                             "write e.g. 10.0.0.5 or 10.0.0.0/24")
        daemon = sec.get("docker_daemon", _log_rotation())
        if not isinstance(daemon, dict):
            self.problem("setup.docker_daemon", "is not a mapping", "write daemon.json keys, e.g. {log-driver: local}")
            daemon = _log_rotation()
        return SetupSettings(
            admin_user=self.string(sec, "admin_user", "setup.admin_user", "root", pattern=NAME_USER_RE,
                                   what="a user name"),
            ssh_port=self.number(sec, "ssh_port", "setup.ssh_port", 22, lo=1, hi=65535),
            firewall=self.boolean(sec, "firewall", "setup.firewall", True),
            open_ports=tuple(ports), allow_from=tuple(good_sources), docker_daemon=daemon)

    def doctor(self, raw: dict) -> DoctorSettings:
        sec = self.section(raw, "doctor", {"min_free_gb", "max_clock_skew"})
        return DoctorSettings(
            min_free_gb=self.number(sec, "min_free_gb", "doctor.min_free_gb", 2.0, lo=0, hi=1e6, integer=False),
            max_clock_skew=self.number(sec, "max_clock_skew", "doctor.max_clock_skew", 2.0,
                                       lo=0.01, hi=3600, integer=False))

    def s3(self, raw: dict) -> S3Settings | None:
        if raw.get("s3") is None:
            return None
        sec = self.section(raw, "s3", {"bucket", "prefix", "region", "endpoint_url", "path_style", "sse", "key_var",
                                       "secret_var", "copy"})
        primary = self.s3_target(sec, "s3")
        primary = dataclasses.replace(primary, prefix=self.string(sec, "prefix", "s3.prefix", ""))
        copy_sec = self.subsection(sec, "copy", "s3.copy",
                                   {"bucket", "region", "endpoint_url", "path_style", "sse", "key_var", "secret_var"},
                                   "write 'copy:' followed by indented keys (bucket:, region:, ...)")
        if copy_sec is None:
            return primary
        # NOTE: the copy keeps the primary's keys (prefix included): its manifests are the same bytes,
        # whose object_key and HMAC name that key.
        copy = dataclasses.replace(self.s3_target(copy_sec, "s3.copy"), prefix=primary.prefix)
        if (copy.bucket, copy.endpoint_url, copy.region) == (primary.bucket, primary.endpoint_url, primary.region):
            self.problem("s3.copy.bucket", f"{copy.bucket!r} on the same endpoint is the primary bucket itself",
                         "name another bucket (ideally in another region or at another provider)")
        return dataclasses.replace(primary, copy=copy)

    def s3_target(self, sec: dict, where: str) -> S3Settings:
        """bucket, region, endpoint, addressing, SSE and credential variable names of one S3 target."""
        bucket = self.string(sec, "bucket", f"{where}.bucket", required=True,
                             pattern=re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"),
                             what="an S3 bucket name (3-63 lowercase letters, digits, '.', '-')")
        endpoint = self.string(sec, "endpoint_url", f"{where}.endpoint_url", None,
                               pattern=re.compile(r"^https?://"), what="a URL starting with http:// or https://")
        sse = self.string(sec, "sse", f"{where}.sse", None, pattern=re.compile(r"^(AES256|aws:kms)$"),
                          what="AES256 or aws:kms")
        var = re.compile(r"^[A-Z_][A-Z0-9_]*\Z")
        return S3Settings(bucket=bucket or "", region=self.string(sec, "region", f"{where}.region", "us-east-1"),
                          endpoint_url=endpoint,
                          path_style=self.boolean(sec, "path_style", f"{where}.path_style", False), sse=sse,
                          key_var=self.string(sec, "key_var", f"{where}.key_var", "AWS_ACCESS_KEY_ID", pattern=var,
                                              what="a variable name of the ops env file like DR_AWS_ACCESS_KEY_ID"),
                          secret_var=self.string(sec, "secret_var", f"{where}.secret_var", "AWS_SECRET_ACCESS_KEY",
                                                 pattern=var, what="a variable name of the ops env file like "
                                                                   "DR_AWS_SECRET_ACCESS_KEY"))

    def build(self, raw: dict) -> BuildSettings:
        sec = self.section(raw, "build", {"source", "dockerfile", "args", "ca_bundle"})
        args = sec.get("args") or {}
        if not isinstance(args, dict) or not all(isinstance(k, str) and isinstance(v, (str, int))
                                                 for k, v in args.items()):
            self.problem("build.args", f"must map names to strings, got {args!r}", "write e.g. '{NODE_ENV: production}'")
            args = {}
        if "OPS_CA_BUNDLE" in args:
            self.problem("build.args.OPS_CA_BUNDLE", "is set by the deploy itself",
                         "remove it and set build.ca_bundle to the CA file instead")
            args = {k: v for k, v in args.items() if k != "OPS_CA_BUNDLE"}
        ca_bundle = self.path_value(sec, "ca_bundle", "build.ca_bundle")
        if ca_bundle is not None and not ca_bundle.is_file():
            what = "is not a file" if ca_bundle.exists() else "does not exist"
            self.problem("build.ca_bundle", f"{ca_bundle} {what}",
                         "point it at a PEM file of CA certificates (e.g. /etc/ssl/certs/ca-certificates.crt) or remove it")
            ca_bundle = None
        return BuildSettings(source=self.path_value(sec, "source", "build.source"),
                             dockerfile=self.string(sec, "dockerfile", "build.dockerfile", "Dockerfile"),
                             args={k: str(v) for k, v in args.items()}, ca_bundle=ca_bundle)

    def backup(self, raw: dict) -> BackupSettings:
        sec = self.section(raw, "backup", {"keep_last", "daily", "weekly", "monthly", "max_age_hours",
                                           "encryption_key_var"})
        var = self.string(sec, "encryption_key_var", "backup.encryption_key_var", None,
                          pattern=re.compile(r"^[A-Z_][A-Z0-9_]*\Z"), what="a variable name like BACKUP_PASSPHRASE")
        return BackupSettings(
            keep_last=self.number(sec, "keep_last", "backup.keep_last", 7, lo=1, hi=10000),
            daily=self.number(sec, "daily", "backup.daily", 7, lo=0, hi=10000),
            weekly=self.number(sec, "weekly", "backup.weekly", 4, lo=0, hi=10000),
            monthly=self.number(sec, "monthly", "backup.monthly", 6, lo=0, hi=10000),
            max_age_hours=self.number(sec, "max_age_hours", "backup.max_age_hours", 26.0, lo=0.1, hi=100000,
                                      integer=False),
            encryption_key_var=var)

    def migrate(self, raw: dict) -> MigrateSettings:
        if raw.get("migrate") is False:
            return MigrateSettings(enabled=False)
        if raw.get("migrate") is True:
            self.problem("migrate", "true is not a setting",
                         "remove the line (migration is on by default) or write 'migrate: false' to turn it off")
            return MigrateSettings()
        sec = self.section(raw, "migrate", {"command", "timeout", "path", "policy", "big_table_rows"})
        command = self.string(sec, "command", "migrate.command", "npx prisma migrate deploy")
        try:
            words = shlex.split(command)
        except ValueError as exc:
            self.problem("migrate.command", f"cannot be split into words ({exc})", "close every quote")
            words = ["?"]
        if command.strip().lower() in ("none", "off", "false", "no", "skip", "disabled"):
            self.problem("migrate.command", f"{command!r} would run as a program",
                         "to turn migration off write 'migrate: false' instead of a migrate: section")
        elif not any(not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w) for w in words):
            self.problem("migrate.command", f"{command!r} names no program", "write e.g. npx prisma migrate deploy")
        path = self.string(sec, "path", "migrate.path", MigrateSettings.path, pattern=re.compile(r"^[A-Za-z0-9._/-]+$"),
                           what="the migrations directory in the image, e.g. prisma/migrations")
        if "/../" in f"/{path}/":
            self.problem("migrate.path", f"{path!r} holds '..'", "name the directory without '..'")
        policy = self.string(sec, "policy", "migrate.policy", "ask", pattern=re.compile(r"^(ask|allow)\Z"),
                             what="ask (destructive or locking migrations need --allow-destructive) or allow")
        return MigrateSettings(
            command=command,
            timeout=self.number(sec, "timeout", "migrate.timeout", 600.0, lo=1, hi=86400, integer=False),
            path=path, policy=policy,
            big_table_rows=self.number(sec, "big_table_rows", "migrate.big_table_rows", 10_000, lo=1, hi=10**12))

    def smoke(self, raw: dict) -> SmokeSettings:
        sec = self.section(raw, "smoke", {"url", "paths", "page_max_seconds", "websocket_max_seconds",
                                          "socketio_path", "polling_handshake", "headers", "cert_min_days",
                                          "ca_file", "on_failure"})
        d = SmokeSettings()
        url = self.string(sec, "url", "smoke.url", None, pattern=re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?/?$"),
                          what="the site's base URL like https://example.org (no path)")
        paths = sec.get("paths", list(d.paths))
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p.startswith("/") for p in paths):
            self.problem("smoke.paths", f"must be a list of paths starting with '/', got {paths!r}",
                         "write e.g. [/, /login, /api/health]")
            paths = list(d.paths)
        headers = sec.get("headers", list(d.headers))
        if not isinstance(headers, list) or not all(isinstance(h, str) and re.match(r"^[A-Za-z0-9-]+$", h)
                                                    for h in headers):
            self.problem("smoke.headers", f"must be a list of header names, got {headers!r}",
                         f"write e.g. [{', '.join(d.headers)}]")
            headers = list(d.headers)
        sio = sec.get("socketio_path", d.socketio_path)
        if sio in (False, None, "", "none"):
            sio = ""
        elif not isinstance(sio, str) or not sio.startswith("/"):
            self.problem("smoke.socketio_path", f"{sio!r} is not a path", "write /socket.io/ or false")
            sio = d.socketio_path
        on_failure = sec.get("on_failure", d.on_failure)
        if on_failure not in SMOKE_ON_FAILURE:
            self.problem("smoke.on_failure", f"{on_failure!r} is not a choice", f"use one of: {', '.join(SMOKE_ON_FAILURE)}")
            on_failure = d.on_failure
        ca_file = self.path_value(sec, "ca_file", "smoke.ca_file")
        if ca_file is not None and not ca_file.is_file():
            self.problem("smoke.ca_file", f"{ca_file} is not a file", "point it at a PEM file of CA certificates")
            ca_file = None
        return SmokeSettings(
            url=url.rstrip("/") if url else None, paths=tuple(paths), headers=tuple(headers), socketio_path=sio,
            page_max_seconds=self.number(sec, "page_max_seconds", "smoke.page_max_seconds", d.page_max_seconds,
                                         lo=0.01, hi=600, integer=False),
            websocket_max_seconds=self.number(sec, "websocket_max_seconds", "smoke.websocket_max_seconds",
                                              d.websocket_max_seconds, lo=0.01, hi=600, integer=False),
            polling_handshake=self.boolean(sec, "polling_handshake", "smoke.polling_handshake", d.polling_handshake),
            cert_min_days=self.number(sec, "cert_min_days", "smoke.cert_min_days", d.cert_min_days, lo=0, hi=3650),
            ca_file=ca_file, on_failure=on_failure)

    def notify(self, raw: dict) -> NotifySettings:
        sec = self.section(raw, "notify", {"webhook_var", "events", "sentry_url", "sentry_org", "sentry_project",
                                           "sentry_token_var", "timeout"})
        d = NotifySettings()
        var_re = re.compile(r"^[A-Z_][A-Z0-9_]*\Z")
        events = sec.get("events", list(d.events))
        if not isinstance(events, list) or not all(e in NOTIFY_EVENTS for e in events):
            self.problem("notify.events", f"must be a list of events, got {events!r}",
                         f"use some of: {', '.join(NOTIFY_EVENTS)}")
            events = list(d.events)
        org = self.string(sec, "sentry_org", "notify.sentry_org", None, pattern=NAME_RE, what="a Sentry org slug")
        project = self.string(sec, "sentry_project", "notify.sentry_project", None, pattern=NAME_RE,
                              what="a Sentry project slug")
        if bool(org) != bool(project):
            self.problem("notify", "sentry_org and sentry_project go together", "set both, or neither")
        return NotifySettings(
            webhook_var=self.string(sec, "webhook_var", "notify.webhook_var", None, pattern=var_re,
                                    what="a variable name like OPS_WEBHOOK_URL (its value: in ops_env_file)"),
            events=tuple(events), sentry_org=org, sentry_project=project,
            sentry_url=self.string(sec, "sentry_url", "notify.sentry_url", d.sentry_url,
                                   pattern=re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?/?$"),
                                   what="Sentry's base URL like https://sentry.io").rstrip("/"),
            sentry_token_var=self.string(sec, "sentry_token_var", "notify.sentry_token_var", d.sentry_token_var,
                                         pattern=var_re, what="a variable name like SENTRY_AUTH_TOKEN"),
            timeout=self.number(sec, "timeout", "notify.timeout", d.timeout, lo=0.1, hi=120, integer=False))

    def env_schema(self, raw: dict) -> str:
        spec = self.string(raw, "env_schema", "env_schema", "nextjs-prisma",
                           what="a built-in profile or a path to a .yml schema file")
        if not is_schema_file(spec) and spec not in PROFILES:
            self.problem("env_schema", f"{spec!r} is neither a built-in profile nor a .yml file",
                         f"use one of: {', '.join(PROFILES)}, or a path to the app's schema file ending in .yml")
            return "nextjs-prisma"
        return spec

    def image_ref(self, sec: dict, where: str, default: str | None) -> ImageRef:
        image = self.string(sec, "image", f"{where}.image", default, required=default is None,
                            pattern=IMAGE_RE, what="an image reference like 'postgres:16'")
        return ImageRef(image or "", self.boolean(sec, "from_registry", f"{where}.from_registry", False))

    def proxy(self, raw: dict) -> ProxySettings:
        sec = self.section(raw, "proxy", {"image", "from_registry", "port", "tls"})
        port = self.number(sec, "port", "proxy.port", 80, lo=1, hi=65535)
        return ProxySettings(image=self.image_ref(sec, "proxy", "nginx:1.27"), port=port,
                             tls=self.tls(sec, port))

    def tls(self, proxy: dict, http_port: int) -> TlsSettings | None:
        sec = self.subsection(proxy, "tls", "proxy.tls",
                              {"domains", "certificate", "cert_file", "key_file", "directory", "email", "ca_file",
                               "account_key", "renew_before_days", "https_port"},
                              "write 'tls:' with domains: and certificate: under it (see inventory/prod.yml)")
        if sec is None:
            return None
        domains = sec.get("domains")
        if (not isinstance(domains, list) or not domains
                or not all(isinstance(d, str) and DOMAIN_RE.match(d) for d in domains)):
            self.problem("proxy.tls.domains", f"must be a non-empty list of lowercase DNS names, got {domains!r}",
                         "write e.g. [example.org, www.example.org] (no wildcards: HTTP-01 cannot prove them)")
            domains = []
        mode = sec.get("certificate")
        if mode not in TLS_MODES:
            self.problem("proxy.tls.certificate", f"{mode!r} is not a choice",
                         "use files (cert_file + key_file) or acme (obtained through the proxy)")
        files = {}
        for key in ("cert_file", "key_file"):
            files[key] = self.path_value(sec, key, f"proxy.tls.{key}", required=mode == "files")
            if mode == "files" and files[key] is not None and not files[key].is_file():
                self.problem(f"proxy.tls.{key}", f"{files[key]} does not exist",
                             "point it at the PEM file on this machine")
            elif mode == "acme" and key in sec:
                self.problem(f"proxy.tls.{key}", "is for certificate: files", "remove it, or use certificate: files")
        if mode == "files":
            for key in ("directory", "email", "account_key", "ca_file"):
                if key in sec:
                    self.problem(f"proxy.tls.{key}", "is for certificate: acme", "remove it, or use certificate: acme")
        directory = self.string(sec, "directory", "proxy.tls.directory", LETS_ENCRYPT,
                                pattern=re.compile(r"^https://[A-Za-z0-9.-]+(:\d{1,5})?(/\S*)?\Z"),
                                what="the ACME directory URL (https://...)")
        email = self.string(sec, "email", "proxy.tls.email", None, pattern=re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+\Z"),
                            what="a contact address like ops@example.org")
        ca_file = self.path_value(sec, "ca_file", "proxy.tls.ca_file")
        if ca_file is not None and not ca_file.is_file():
            self.problem("proxy.tls.ca_file", f"{ca_file} is not a file", "point it at the PEM CA of the ACME server")
            ca_file = None
        account_key = self.path_value(sec, "account_key", "proxy.tls.account_key", required=mode == "acme")
        https_port = self.number(sec, "https_port", "proxy.tls.https_port", 443, lo=1, hi=65535)
        if https_port == http_port:
            self.problem("proxy.tls.https_port", f"{https_port} is also proxy.port", "use another port (443)")
        return TlsSettings(domains=tuple(domains), certificate=mode if mode in TLS_MODES else "files",
                           cert_file=files["cert_file"], key_file=files["key_file"], directory=directory,
                           email=email, ca_file=ca_file, account_key=account_key,
                           renew_before_days=self.number(sec, "renew_before_days", "proxy.tls.renew_before_days", 30,
                                                         lo=1, hi=365),
                           https_port=https_port)

    def accessories(self, raw: dict, hosts: dict[str, Host]) -> dict[str, Accessory]:
        value = raw.get("accessories") or {}
        if not isinstance(value, dict):
            self.problem("accessories", "must be a mapping of name -> settings", "see inventory/prod.yml")
            return {}
        result = {}
        for name, sec in value.items():
            where = f"accessories.{name}"
            if not isinstance(name, str) or not NAME_RE.match(name):
                self.problem(where, f"name {name!r} is not valid", "use lowercase letters, digits and '-'")
                continue
            if not isinstance(sec, dict):
                self.problem(where, "must be a mapping", "give it host:, image:, port:, data_path:")
                continue
            self.unknown_keys(sec, {"host", "image", "from_registry", "port", "data_path", "env"}, where)
            host = self.string(sec, "host", f"{where}.host", required=True, what="a host of this inventory")
            if host and hosts and host not in hosts:
                self.problem(f"{where}.host", f"unknown host {host!r}", f"use one of: {', '.join(hosts)}")
            env_names = sec.get("env") or []
            if not isinstance(env_names, list) or not all(
                    isinstance(n, str) and re.match(r"^[A-Z_][A-Z0-9_]*$", n) for n in env_names):
                self.problem(f"{where}.env", f"must be a list of variable names, got {env_names!r}",
                             "write e.g. [POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB]")
                env_names = []
            data_path = self.string(sec, "data_path", f"{where}.data_path", required=True,
                                    pattern=re.compile(r"^/"), what="an absolute path inside the container")
            result[name] = Accessory(name=name, host=host or "", image=self.image_ref(sec, where, None),
                                     port=self.number(sec, "port", f"{where}.port", 5432, lo=1, hi=65535),
                                     data_path=data_path or "", env=tuple(env_names))
        return result

    def sandbox(self, raw: dict) -> SandboxSettings | None:
        if raw.get("sandbox") is None:
            return None
        sec = self.section(raw, "sandbox", {"network", "subnet", "publish"})
        subnet = self.string(sec, "subnet", "sandbox.subnet", required=True, what="a CIDR like 172.31.250.0/24")
        if subnet:
            try:
                ipaddress.ip_network(subnet)
            except ValueError:
                self.problem("sandbox.subnet", f"{subnet!r} is not a network", "write a CIDR like 172.31.250.0/24")
        publish: dict[str, dict[int, int]] = {}
        raw_publish = sec.get("publish") or {}
        if not isinstance(raw_publish, dict):
            self.problem("sandbox.publish", "must be a mapping of host -> {local port: container port}",
                         "see inventory/sandbox.yml")
            raw_publish = {}
        for host, ports in raw_publish.items():
            if not isinstance(ports, dict) or not all(
                    isinstance(a, int) and isinstance(b, int) and 0 < a < 65536 and 0 < b < 65536
                    for a, b in ports.items()):
                self.problem(f"sandbox.publish.{host}", f"must map ports to ports, got {ports!r}",
                             "write e.g. '{8101: 80}'")
                continue
            publish[host] = dict(ports)
        return SandboxSettings(network=self.string(sec, "network", "sandbox.network", "ops-sandbox",
                                                   pattern=NAME_RE, what="a lowercase network name"),
                               subnet=subnet or "", publish=publish)
