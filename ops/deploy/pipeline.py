"""``inv deploy`` and ``inv rollback``: the orchestration.

Deploy order, and what a failure at each step leaves behind:

1. env file validated, every host preflighted     -> nothing touched anywhere
2. environment lock taken on every host            -> released on every exit path
3. image built + pushed (or --version), pulled on the first web host, migrate.command's
   program checked in it, then pulled on the others -> nothing serving changed
4. release env file written on every web host (0600, per release)
5. migrate command run once, new image, new env    -> failure: nothing switched
   (skipped with ``migrate: false``)
6. web hosts switched in batches                   -> failure: every touched host back
                                                      on its previous release
7. history, audit (hosts + S3) recorded
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ops import audit, s3
from ops.appenv import check_env_file, schema_for, secret_values
from ops.background import Background
from ops.commands import docker, shell
from ops.commands.nginx import body_limit_for_upload
from ops.deploy import image as images
from ops.deploy import migrate as migrations_step
from ops.deploy.migrate import MigrationReport, check_program, run_migrations
from ops.deploy.release import (
    Release,
    append_history,
    current_release,
    env_checksum,
    no_change_reason,
    previous_good,
    read_history,
    release_id,
)
from ops.deploy.switch import AppSettings, cut_over, ensure_network, prepare_host, retire_others, switch_host
from ops.errors import ConfigError, HostUnreachable, OpsError
from ops.hooks import run_hook
from ops.interrupts import shielded_from_ctrl_c
from ops.inventory import Environment, Host
from ops.layout import Layout
from ops.maintenance import refuse_during_maintenance
from ops.masking import Masker
from ops.migrations.review import MigrationReview, check_consent
from ops.operation import Operation, Plan
from ops.postgres import DatabaseURL, applied_migrations, connect_via
from ops.progress import (
    MIGRATING,
    NO_PROGRESS,
    READY,
    ROLLED_BACK,
    ROLLING_BACK,
    SERVING,
    STARTING,
    SWITCHING,
    Progress,
    in_step,
)
from ops.registry import app_refs, service_ref
from ops.remote import FleetError, Gateway

Say = Callable[[str], None]


class DeployFailed(OpsError):
    """The deploy stopped; the message says where and what state the fleet is in."""


@dataclass
class DeployRequest:
    version: str | None = None
    batch: int | None = None
    allow_dirty: bool = False
    # Consent for destructive or locking migrations (a restore point is taken before them).
    allow_destructive: bool = False
    lock_wait: float = 0.0
    health_timeout: float | None = None
    exclude: tuple[str, ...] = ()


@dataclass
class DeployResult:
    release: Release
    hosts: list[str]
    migrations: MigrationReport = field(default_factory=MigrationReport)
    warnings: list[str] = field(default_factory=list)


@dataclass
class AppEnv:
    """The validated env file of the app: raw bytes to upload, values to read."""

    content: bytes
    values: dict[str, str]

    @classmethod
    def load(cls, env: Environment, masker: Masker) -> AppEnv:
        if env.env_file is None:
            raise ConfigError(f"no env_file in {env.path.name}", hint="set env_file to the app's .env file")
        schema = schema_for(env)
        values = check_env_file(env.env_file, production=env.production, schema=schema)
        masker.add(*secret_values(values, schema))
        return cls(docker_env_file(values), values)

    def app_settings(self) -> AppSettings:
        size = self.values.get("MAX_FILE_SIZE")  # validated: a positive integer when set
        return AppSettings(upload_dir=self.values.get("FILE_UPLOAD_DIR") or AppSettings.upload_dir,
                           max_body_bytes=body_limit_for_upload(int(size) if size else 10 * 1024 * 1024))

    @property
    def database(self) -> DatabaseURL:
        return DatabaseURL.parse(self.values.get("DATABASE_URL", ""))


def docker_env_file(values: dict[str, str]) -> bytes:
    """The validated values as ``docker run --env-file`` reads them.

    NOTE: docker takes each line literally (no quotes, no comments, no ${VAR}), so
    the file is rebuilt from the parsed values: the container gets exactly what
    was validated, not ``10485760  # 10MB``.
    """
    lines = []
    for name, value in values.items():
        if "\n" in value or "\r" in value:
            raise ConfigError(f"{name}: contains a line break, which docker --env-file cannot carry",
                              hint="put the value on one line (e.g. base64 it)")
        lines.append(f"{name}={value}\n")
    return "".join(lines).encode()


def preflight(gw: Gateway, hosts: list[Host]) -> None:
    """Every host reachable, Docker usable, app_dir writable: else stop before touching anything."""
    app_dir = gw.env.app_dir

    def check(host: Host) -> None:
        gw.query(host, ("docker", "version", "--format", "{{.Server.Version}}"))
        writable = gw.query(host, shell('d={p}; while [ ! -e "$d" ]; do d=$(dirname "$d"); done; test -w "$d"',
                                        p=app_dir), check=False)
        if not writable.ok:
            raise OpsError(f"{app_dir} is not writable by {host.user}",
                           hint=f"create it once: sudo install -d -o {host.user} {app_dir}")

    results = gw.map(check, hosts)
    if results.failed:
        err = FleetError("preflight (nothing was changed)", results.failed, total=len(hosts))
        down = [name for name, e in results.failed.items() if isinstance(e, HostUnreachable)]
        if down and len(down) < len(hosts):
            err.hint = (f"to go on without {', '.join(down)} (recorded in the audit): "
                        f"--exclude {','.join(down)}")
        raise err


def exclude_hosts(env: Environment, names: list[str] | tuple[str, ...]) -> list[Host]:
    """The environment's hosts minus ``names``, each of which must exist; some web host must remain."""
    unknown = [n for n in names if n not in env.hosts]
    if unknown:
        raise ConfigError(f"--exclude {','.join(unknown)}: no such host in {env.path.name}",
                          hint=f"hosts: {', '.join(env.hosts)}")
    hosts = [h for h in env.hosts.values() if h.name not in names]
    if not [h for h in hosts if "web" in h.roles]:
        raise ConfigError("--exclude leaves no web host to act on", hint="exclude fewer hosts")
    return hosts


def _upload_env(gw: Gateway, host: Host, release: Release, content: bytes) -> None:
    layout = Layout(gw.env)
    gw.run(host, ("mkdir", "-p", "-m", "700", layout.release_dir(release.id)))
    gw.put(host, content, layout.release_env(release.id), mode=0o600)


class Deployment:
    """One deploy or rollback run against one environment."""

    progress: Progress = NO_PROGRESS

    def __init__(self, env: Environment, req: DeployRequest, say: Say, progress: Progress = NO_PROGRESS):
        self.env = env
        self.req = req
        self.say = say
        self.progress = progress  # per-host steps and image transfers, for the task side to show
        self.masker = Masker()
        self.app_env = AppEnv.load(env, self.masker)
        self.gw = Gateway(env, masker=self.masker, echo=say)
        self.all_hosts = exclude_hosts(env, req.exclude)
        self.web = [h for h in self.all_hosts if "web" in h.roles]
        self.warnings: list[str] = []
        self._plan_migrations: MigrationReview | None = None

    def close(self) -> None:
        self.gw.close()

    @property
    def batch(self) -> int:
        """Web hosts switched at a time: ``--batch`` or ``deploy.batch_size``."""
        return self.req.batch or self.env.deploy.batch_size

    # -- helpers ---------------------------------------------------------
    def _operation(self, action: str, version: str | None, detail: str) -> Operation:
        if self.req.exclude:
            detail += f"; excluded: {', '.join(self.req.exclude)}"
        return Operation(self.gw, action, self.all_hosts, say=self.say, version=version,
                         lock_wait=self.req.lock_wait, detail=detail)

    def _hook(self, name: str, release: Release, *, warn: bool = False) -> None:
        try:
            if run_hook(self.env, name, version=release.version, release=release.id,
                        hosts=[h.name for h in self.web], actor=release.actor):
                self.say(f"{name} hook: ok")
        except OpsError as exc:
            if not warn:
                raise
            self.warnings.append(str(exc))

    def _previous(self) -> dict[str, Release | None]:
        """What each web host serves now: where a failed switch puts it back."""
        results = self.gw.map(lambda h: current_release(self.gw, h), self.web)
        results.raise_if_failed("reading release history")
        return results.ok

    def _unchanged_since(self, plan: DeployPlan, *, strict: bool = True) -> dict[str, Release | None]:
        """Under the lock: what the fleet serves now, checked against what the plan saw.

        A rollback's target depends on what serves (strict: refuse when it moved). A deploy
        puts one version everywhere whatever served before: it goes on, saying what changed
        (another deploy it queued behind with --lock-wait), and rolls back to what serves now.
        """
        now = self._previous()
        moved = [f"{name}: {_version(plan.current.get(name))} -> {_version(rel)}" for name, rel in now.items()
                 if _rid(rel) != _rid(plan.current.get(name))]
        if moved and strict:
            raise OpsError("the fleet changed since the plan was made (" + "; ".join(moved) + "); nothing was done",
                           hint="look at inv releases, then run the command again")
        if moved:
            self.say("the fleet changed while waiting for the lock (" + "; ".join(moved) + "); a failure now puts "
                     "each host back on what it serves now")
        return now

    def _switch_all(self, release: Release, previous: dict[str, Release | None]) -> None:
        """Start the release on every web host at once (health-gated, off the service name), then
        cut over in batches; each batch's old containers drain and stop in the background while
        the next batch cuts over. Any failure: wait for those, then every touched host goes back."""
        batch = self.batch
        app = self.app_env.app_settings()
        timeout = self.req.health_timeout or self.env.health.timeout
        touched: list[Host] = []
        retiring: list[Background] = []
        try:
            self.say(f"starting {release.version} on {', '.join(h.name for h in self.web)} "
                     "(health-gated; nothing serves it yet)")
            touched = list(self.web)  # a half-prepared host is cleaned up like a switched one
            ready = self.gw.map(lambda h: self._prepare(h, release, app, timeout), self.web)
            if ready.failed:
                raise FleetError(f"start of {release.version}", ready.failed, total=len(self.web))
            touched = []
            for start in range(0, len(self.web), batch):
                group = self.web[start:start + batch]
                touched += group
                self.say(f"switching {', '.join(h.name for h in group)} to {release.version}")
                results = self.gw.map(lambda h: self._cut_over(h, release, ready.ok[h.name]), group)
                for name in results.ok:
                    self.say(f"  {name}: serving {release.version}")
                if results.failed:
                    raise FleetError(f"switch to {release.version}", results.failed, total=len(group))
                # NOTE: off the critical path: the next batch cuts over while this one's old
                # containers drain and stop (they no longer matter to it).
                retiring.append(Background(self._retire_fn(group, ready.ok, results.ok)))
            for job in retiring:
                job.result().raise_if_failed(f"stopping the old release for {release.version}")
        except BaseException as exc:
            with shielded_from_ctrl_c(self.say):
                for job in retiring:  # never clean up while a host is still being worked on
                    job.join()
                why = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                self.say(f"deploy {why}: putting {', '.join(h.name for h in touched)} back on the previous release")
                rolled = self._roll_back_hosts(touched, release, previous, app, timeout)
            raise DeployFailed(f"deploy of {release.version} {why} during the switch: {exc}".rstrip()
                               + f"\n{rolled}") from None

    def _prepare(self, host: Host, release: Release, app: AppSettings, timeout: float) -> str:
        with in_step(self.progress, host.name, STARTING, f"{release.version}, health check (max {timeout:g}s)",
                     then=READY, then_detail=f"{release.version} healthy, waiting for its batch"):
            return prepare_host(self.gw, host, release, app, health_timeout=timeout)

    def _cut_over(self, host: Host, release: Release, name: str):
        with in_step(self.progress, host.name, SWITCHING, release.version, then=SERVING, then_detail=release.version):
            return cut_over(self.gw, host, release, name)

    def _retire_fn(self, group: list[Host], serving: dict[str, str], served_at: dict[str, float]):
        """Drain and stop what ``group`` served before (their new containers are ``serving``,
        in service since ``served_at``)."""
        return lambda: self.gw.map(lambda host: retire_others(self.gw, host, serving[host.name],
                                                              served_at=served_at.get(host.name)), group)

    def _roll_back_hosts(self, hosts: list[Host], failed: Release, previous: dict[str, Release | None],
                         app: AppSettings, timeout: float) -> str:
        lines = []

        def back(host: Host) -> str:
            prev = previous.get(host.name)
            with in_step(self.progress, host.name, ROLLING_BACK, f"to {_version(prev)}", then=ROLLED_BACK,
                         then_detail=f"to {_version(prev)}"):
                append_history(self.gw, host, failed, "rolled-back")
                if prev is None:
                    self.gw.run(host, docker.rm_argv(Layout(self.env).web_container(failed.id), force=True),
                                check=False)
                    return "no previous release: new container removed"
                switch_host(self.gw, host, prev, app, health_timeout=timeout)
                return f"back on {prev.version}"

        results = self.gw.map(back, hosts)
        for name, msg in results.ok.items():
            lines.append(f"  {name}: {msg}")
        for name, err in results.failed.items():
            lines.append(f"  {name}: ROLLBACK FAILED: {err} — see RUNBOOK.md 'failed deploy'")
        return "\n".join(lines)

    # -- deploy ----------------------------------------------------------
    def plan_deploy(self) -> DeployPlan:
        """Read-only: what ``deploy`` will do. Nothing is built, pulled, locked or written."""
        env, req = self.env, self.req
        self.say(f"preflight: {len(self.all_hosts)} host(s)")
        preflight(self.gw, self.all_hosts)
        refuse_during_maintenance(self.gw, self.web, "deploy")
        if req.version:
            tag, source = images.check_version(req.version), None
        else:
            source = images.git_source(env.build.source)
            tag = images.version_for(source, allow_dirty=req.allow_dirty)
        registry_ref, host_ref = app_refs(env, tag)
        current = self._previous()
        olds = sorted({_version(r) for r in current.values()})
        plan = DeployPlan(action="deploy", env=env.name, tag=tag, image=host_ref, current=current,
                          build_from=str(source.path) if source else None,
                          summary=f"deploy {tag} to {', '.join(h.name for h in self.web)} (now: {', '.join(olds)})")
        plan.lines = [(f"build {registry_ref} from {source.path} (commit {source.sha[:12]}) and push it"
                       if source else f"use the pushed image {registry_ref}"),
                      *self._pull_and_migrate_lines(host_ref),
                      f"switch {self.batch} web host(s) at a time, health-gated ({env.health.path}); "
                      "any failure puts every switched host back"]
        if env.migrate.enabled:
            self._review_migrations(plan, source.path if source else None, registry_ref)
        return self._per_host(plan)

    def _review_migrations(self, plan: DeployPlan, context, image: str) -> None:
        """Pending migrations with their verdicts into the plan; the consent and restore point they need."""
        if context is None:
            images.login_local(self.env, self.masker)
        review = migrations_step.plan_review(self.gw, self.web[0], self.app_env.database, context=context,
                                             image=image, say=self.say)
        plan.migrations = review
        plan.lines += review.lines()
        plan.warnings += review.notes
        if not review.needs_consent:
            return
        migrations_step.restore_point_possible(self.env, self.masker)
        consent = self.req.allow_destructive or self.env.migrate.policy == "allow"
        plan.lines.append("back up the database (backup.db) right before migrating: the restore point"
                          + ("" if consent else " — NEEDS --allow-destructive (or migrate.policy: allow)"))

    def _per_host(self, plan: DeployPlan) -> DeployPlan:
        """What every plan shows besides its own lines: the exclusions, and per host old -> new."""
        if self.req.exclude:
            plan.lines.append(f"EXCLUDED (not touched, recorded in the audit): {', '.join(self.req.exclude)}")
        for h in self.web:
            plan.steps[h.name] = [f"{_version(plan.current.get(h.name))} -> {plan.tag}"]
        return plan

    def _pull_and_migrate_lines(self, image: str) -> list[str]:
        first, migrate, where = self.web[0].name, self.env.migrate, self.env.path.name
        if not migrate.enabled:
            return [f"pull {image} on {', '.join(h.name for h in self.web)}",
                    f"no migration: migrate is off ('migrate: false' in {where})"]
        others = [h.name for h in self.web[1:]]
        return [f"pull {image} on {first} and check it has {migrate.program!r} (migrate.command): "
                "if not, stop before any other host pulls it"
                + (f"; then pull it on {', '.join(others)}" if others else ""),
                f"migrate once on {first}: {migrate.command}"]

    def _consent(self, review: MigrationReview | None) -> None:
        if review is not None:
            check_consent(review, allowed=self.req.allow_destructive, policy=self.env.migrate.policy,
                          env_name=self.env.name)

    def _same_migrations_in_image(self, plan: DeployPlan, registry_ref: str) -> None:
        """The image just built must carry the migrations the plan judged (read from the build context);
        if not (a .dockerignore, a Dockerfile that generates them), judge the image's, before any pull."""
        review = migrations_step.image_review(self.gw, registry_ref, self.web[0], self.app_env.database)
        if review.fingerprint == plan.migrations.fingerprint:
            return
        self.say("the image's migrations differ from the build context's; judged again from the image:")
        for line in review.lines():
            self.say(f"  {line}")
        self._consent(review)
        plan.migrations = review

    def deploy(self, plan: DeployPlan) -> DeployResult:
        env, req = self.env, self.req
        # NOTE: consent is checked before anything is built or locked: a refusal changes nothing.
        self._consent(plan.migrations)
        if plan.build_from:
            source = images.git_source(env.build.source)
            if images.version_for(source, allow_dirty=req.allow_dirty) != plan.tag:
                raise OpsError(f"{source.path} moved on since the plan was made (it was {plan.tag}); nothing was done",
                               hint="run the deploy again")
            digest = images.build_and_push(env, source, plan.tag, self.say, self.masker, self.progress)
            if plan.migrations is not None:
                self._same_migrations_in_image(plan, app_refs(env, plan.tag)[0])
        else:
            digest = ""
        self._plan_migrations = plan.migrations
        release = Release(id=release_id(plan.tag, audit.utcnow()), version=plan.tag, image=plan.image,
                          digest=digest, env_sha256=env_checksum(self.app_env.content))
        self._hook("pre-deploy", release)
        with self._operation("deploy", plan.tag, f"release {release.id}") as op:
            previous = self._unchanged_since(plan, strict=False)
            refuse_during_maintenance(self.gw, self.web, "deploy")  # turned on while we waited for the lock?
            result = self._deploy_locked(release, self.app_env.database, previous)
            op.outcome = f"release {release.id}" + (f"; restore point {release.restore_point}"
                                                    if release.restore_point else "")
        self.warnings += op.warnings
        self._hook("post-deploy", release, warn=True)
        result.warnings = self.warnings
        return result

    def _deploy_locked(self, release: Release, database: DatabaseURL,
                       previous: dict[str, Release | None]) -> DeployResult:
        gw = self.gw
        migrate = self.env.migrate
        first = self.web[0]
        if migrate.enabled:
            # Under the lock, before any pull: a failed migration row (P3009) or an orphaned
            # migrator holding Prisma's lock (P1002) stops here, nothing changed.
            migrations_step.recheck_under_lock(gw, first, database)
            # NOTE: the first web host pulls alone and checks that the migrate command's program
            # is in the image: a wrong migrate.command fails before any other host pulls it.
            self.say(f"pulling {release.image} on {first.name} and checking it has {migrate.program!r} "
                     "(migrate.command)")
            gw.map(lambda h: images.pull(gw, h, release.image, self.progress),
                   [first]).raise_if_failed(f"pull {release.image}")
            self.say(f"  {first.name}: {migrate.program} is {check_program(gw, first, release)}")
        proxy_image = service_ref(self.env, self.env.proxy.image)
        self.say(f"pulling {release.image} and {proxy_image} on {', '.join(h.name for h in self.web)}")

        def pull_both(host: Host) -> str:
            images.pull(gw, host, proxy_image, self.progress)
            return images.pull(gw, host, release.image, self.progress)

        pulled = gw.map(pull_both, self.web)
        pulled.raise_if_failed(f"pull {release.image}")
        release.digest = release.digest or next((d for d in pulled.ok.values() if d), "")

        gw.map(lambda h: _upload_env(gw, h, release, self.app_env.content), self.web).raise_if_failed("env upload")

        if migrate.enabled:
            if self._plan_migrations is not None and self._plan_migrations.needs_consent:
                self.say("taking a restore point before the migration (backup.db)")
                point = migrations_step.take_restore_point(gw, self.masker, self.say, self.warnings)
                release.restore_point = point.id
                self.say(f"restore point: {point.id} (finished {point.finished_at}); to undo the migration: "
                         f"inv restore --host {self.env.name} --at <a time after it>")
            self.say(f"migrating on {first.name}: {migrate.command}")
            self.progress.step(first.name, MIGRATING, migrate.command)
            ensure_network(gw, first)
            migrations = run_migrations(gw, first, release, database)
            for name in migrations.applied:
                self.say(f"  applied {name}")
            release.migration_head = max(migrations.after, default="")
        else:
            migrations = MigrationReport()
            self.say(f"no migration: migrate is off ('migrate: false' in {self.env.path.name})")

        self._switch_all(release, previous)
        gw.map(lambda h: append_history(gw, h, release, "current"), self.web).raise_if_failed("history")
        self._central_release(release, "current")
        return DeployResult(release, [h.name for h in self.web], migrations)

    # -- rollback --------------------------------------------------------
    def plan_rollback(self, to: str | None) -> DeployPlan:
        """Read-only: the release each web host goes back to (they must agree)."""
        gw = self.gw
        preflight(gw, self.all_hosts)
        refuse_during_maintenance(gw, self.web, "rollback")
        current = self._previous()

        def target_of(host: Host) -> Release:
            now = current.get(host.name)
            target = previous_good(read_history(gw, host), now.id if now else None, version=to)
            if target is None:
                what = f"version {to}" if to else "a release before the current one"
                raise OpsError(f"no {what} in this host's history", hint=f"see: inv releases --host {self.env.name}")
            if not gw.query(host, ("test", "-f", Layout(self.env).release_env(target.id)), check=False).ok:
                raise OpsError(f"the env file of release {target.id} is gone from the host",
                               hint="deploy that version again with: inv deploy --version " + target.version)
            return target

        targets = gw.map(target_of, self.web)
        targets.raise_if_failed("rollback target")
        ids = {r.id for r in targets.ok.values()}
        if len(ids) != 1:
            raise OpsError("web hosts disagree on the release to roll back to: "
                           + ", ".join(f"{h}={r.id}" for h, r in targets.ok.items()),
                           hint="name one with --to VERSION")
        release = next(iter(targets.ok.values()))
        # NOTE: a target of the image every host serves now would "succeed" with the bad
        # code still serving (deploy B, roll back, deploy B again, roll back): refuse it.
        unchanged = [no_change_reason(release, current.get(h.name)) for h in self.web]
        if all(unchanged):
            raise OpsError(unchanged[0],
                           hint=f"name another with --to VERSION (see: inv releases --host {self.env.name})")
        plan = DeployPlan(action="rollback", env=self.env.name, tag=release.version, image=release.image,
                          current=current, target=release,
                          summary=f"roll {', '.join(h.name for h in self.web)} back to {release.version} "
                                  f"(release {release.id})")
        plan.lines = [f"switch {self.batch} web host(s) at a time to the "
                      "retained release with its own env file, health-gated",
                      "migrations applied since that release are NOT reversed (listed after the switch)"]
        return self._per_host(plan)

    def rollback(self, plan: DeployPlan) -> DeployResult:
        gw, release = self.gw, plan.target
        with self._operation("rollback", release.version, f"to release {release.id}") as op:
            previous = self._unchanged_since(plan)
            refuse_during_maintenance(gw, self.web, "rollback")
            self.say(f"rolling back to {release.version} (release {release.id})")
            # The image is still there when its container was retained: no pull then.
            gw.map(lambda h: images.pull(gw, h, release.image, self.progress),
                   self.web).raise_if_failed(f"pull {release.image}")
            self._switch_all(release, previous)
            gw.map(lambda h: append_history(gw, h, release, "current", via="rollback"),
                   self.web).raise_if_failed("history")
            self._central_release(release, "current")
            op.outcome = f"release {release.id}"
        result = DeployResult(release, [h.name for h in self.web])
        result.migrations = self._migrations_since(release)
        self.warnings += op.warnings
        self._hook("post-rollback", result.release, warn=True)
        result.warnings = self.warnings
        return result

    def _migrations_since(self, release: Release) -> MigrationReport:
        """Migrations applied after ``release`` went out: a rollback does not reverse them."""
        report = MigrationReport()
        if not self.env.migrate.enabled:
            return report
        if release.migration_head is None:
            self.warnings.append(f"release {release.id} predates migration tracking: check _prisma_migrations "
                                 "yourself before trusting the old code with the current schema")
            return report
        try:
            with connect_via(self.gw, self.web[0], self.app_env.database) as conn:
                rows = applied_migrations(conn)
        except OpsError as exc:
            self.warnings.append(f"could not list migrations since {release.version}: {exc}")
            return report
        # Prisma names migrations <timestamp>_<name>: later ones sort after the head.
        report.after = [r["migration_name"] for r in rows
                        if r["finished_at"] is not None and r["migration_name"] > release.migration_head]
        return report

    def _central_release(self, release: Release, outcome: str) -> None:
        if self.env.s3 is None:
            return
        try:
            s3.put_json(self.env, s3.key(self.env, "releases", self.env.name, f"{release.id}.json"),
                        {**vars(release), "outcome": outcome, "hosts": [h.name for h in self.web]})
        except Exception as exc:  # noqa: BLE001 - the deploy itself succeeded
            self.warnings.append(f"central release record failed: {type(exc).__name__}: {self.masker(str(exc))}")


def _rid(release: Release | None) -> str | None:
    return release.id if release else None


def _version(release: Release | None) -> str:
    return release.version if release else "(nothing)"


@dataclass
class DeployPlan(Plan):
    tag: str = ""
    image: str = ""
    current: dict[str, Release | None] = field(default_factory=dict)
    build_from: str | None = None
    target: Release | None = None  # rollback: the release every host goes back to
    migrations: MigrationReview | None = None  # deploy: the pending migrations and their verdicts

    def to_dict(self) -> dict:
        data = super().to_dict()
        if self.migrations is not None:
            data["migrations"] = self.migrations.to_dict()
        return data


def plan(env: Environment, req: DeployRequest, say: Say, *, rollback_to: str | None = None,
         rollback: bool = False, progress: Progress = NO_PROGRESS) -> tuple[Deployment, DeployPlan]:
    """The run and its plan; the caller applies it with ``run.deploy(plan)`` / ``run.rollback(plan)``
    and closes the run."""
    run = Deployment(env, req, say, progress)
    try:
        return run, (run.plan_rollback(rollback_to) if rollback else run.plan_deploy())
    except BaseException:
        run.close()
        raise


def deploy(env: Environment, req: DeployRequest, say: Say) -> DeployResult:
    """Plan and apply a deploy in one call (``inv deploy`` shows the plan in between)."""
    run, p = plan(env, req, say)
    try:
        return run.deploy(p)
    finally:
        run.close()


def rollback(env: Environment, req: DeployRequest, to: str | None, say: Say) -> DeployResult:
    run, p = plan(env, req, say, rollback=True, rollback_to=to)
    try:
        return run.rollback(p)
    finally:
        run.close()
