"""Run the app's migrate command once, in a one-off container of the new release.

It runs before any traffic moves, with the new image and the new env, so a failed
migration stops the deploy while every host still serves the old release. Prisma's
``_prisma_migrations`` table is read before and after, to report what was applied.

Before that, once the first web host has pulled the new image (and before any other
host pulls it), ``check_program`` makes sure the command's program is in the image:
a wrong ``migrate.command`` fails in seconds with "set migrate.command", not after a
pull on every host. ``migrate: false`` in the inventory turns the step off.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ops.commands import docker, render
from ops.deploy.release import Release
from ops.errors import CommandTimeout, ConfigError, HostError, HostUnreachable, OpsError, RemoteCommandFailed
from ops.interrupts import shielded_from_ctrl_c
from ops.inventory import Host
from ops.layout import Layout
from ops.masking import Masker
from ops.migrations import source as migration_source
from ops.migrations.review import MigrationReview, review
from ops.migrations.state import DbState, read_state, refuse_failed
from ops.postgres import DatabaseURL, applied_migrations, connect_via
from ops.remote import Gateway

ROLE_LABEL = ("ops.role", "migrate")
CHECK_ROLE = "migrate-check"        # not ROLE_LABEL: a leftover check is no migration in progress
CHECK_TIMEOUT = 120.0
REMOVE_TIMEOUT = 120.0
PS_TIMEOUT = 60.0


class MigrationFailed(HostError):
    """The migrate command failed or was cut off; nothing was switched."""


class MigrationInProgress(HostError):
    """A migrate container of this app is already running on the host."""


class RestorePointFailed(HostError):
    """The backup a destructive or locking migration needs first could not be taken: nothing migrated."""


class MigrateCommandNotFound(ConfigError):
    """The program ``migrate.command`` starts is not in the release image."""


@dataclass
class MigrationReport:
    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    output: str = ""

    @property
    def applied(self) -> list[str]:
        return [name for name in self.after if name not in self.before]


def finished_names(gw: Gateway, host: Host, url: DatabaseURL) -> list[str]:
    with connect_via(gw, host, url) as conn:
        return [r["migration_name"] for r in applied_migrations(conn) if r["finished_at"] is not None]


def migrate_container(gw: Gateway, release: Release) -> str:
    return f"{Layout(gw.env).migrate_container}-{release.id.lower()}"


def migrate_argv(gw: Gateway, release: Release) -> tuple[str, ...]:
    layout = Layout(gw.env)
    return docker.run_argv(
        migrate_container(gw, release), release.image, network=layout.network,
        env_file=layout.release_env(release.id), env={"APP_VERSION": release.version},
        labels={"ops.app": gw.env.app, ROLE_LABEL[0]: ROLE_LABEL[1]}, restart=None, detach=False, remove=True,
        # The migrate command is the operator's own config (inventory), run by a shell
        # inside the container, passed as one argument: nothing of it reaches ours.
        command=("sh", "-c", gw.env.migrate.command))


def check_container(gw: Gateway, release: Release) -> str:
    return f"{Layout(gw.env).migrate_container}-check-{release.id.lower()}"


def program_check_argv(gw: Gateway, release: Release) -> tuple[str, ...]:
    """``command -v PROGRAM`` in a throwaway container of the release image: exit 0 when found.

    The program is an argument of the script (``$1``), never part of its text; no
    network, no env file: only the image's PATH and WORKDIR matter, as for the migration.
    """
    return docker.run_argv(
        check_container(gw, release), release.image, network="none", entrypoint="sh",
        labels={"ops.app": gw.env.app, ROLE_LABEL[0]: CHECK_ROLE}, restart=None, detach=False, remove=True,
        log_driver=None, command=("-c", 'command -v "$1"', "sh", gw.env.migrate.program))


def check_program(gw: Gateway, host: Host, release: Release) -> str:
    """Fail with ``MigrateCommandNotFound`` unless the migrate command's program is in the image.

    Returns where the program is (``command -v``'s answer). Run on the first web host
    once it has the image, before any other host pulls it: nothing serving has changed.
    """
    program, image = gw.env.migrate.program, release.image
    res = gw.query(host, program_check_argv(gw, release), check=False, timeout=CHECK_TIMEOUT)
    if res.ok:
        return res.stdout.strip().splitlines()[-1] if res.stdout.strip() else program
    # ``command -v`` found nothing: 1 (bash, busybox) or 127 (dash). Docker itself exits
    # 126/127 naming "sh" when the image has no shell (the migration runs with sh -c too).
    if res.exit_code == 1 or (res.exit_code == 127 and '"sh"' not in res.stderr):
        missing = program
    elif res.exit_code in (126, 127):
        missing = "sh"
    else:
        last = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else ""
        raise RemoteCommandFailed(f"exit {res.exit_code}: {res.command}: checking migrate.command in {image} failed"
                                  + (f": {last}" if last else ""),
                                  host=host.name, exit_code=res.exit_code, stderr=res.stderr)
    where = gw.env.path.name
    raise MigrateCommandNotFound(
        f"set migrate.command ({missing} not found in {image}); nothing was changed and no other host pulled it",
        host=host.name,
        hint=f"migrate.command in {where} is {gw.env.migrate.command!r}: name a program the image has "
             "(e.g. node scripts/migrate.js), or write 'migrate: false' if the app has no migrations")


def running_migrations_argv(app: str) -> tuple[str, ...]:
    """Running containers of ``app`` with the migrate role: name, creation time, status."""
    return docker.ps_argv(filters=[("label", f"ops.app={app}"), ("label", "=".join(ROLE_LABEL))],
                          fmt="{{.Names}}\t{{.CreatedAt}}\t{{.Status}}", all=False)


def refuse_if_migrating(gw: Gateway, host: Host) -> None:
    """Two migrations of one database at once can interleave half-applied steps: refuse.

    NOTE: a leftover may also be a migration whose operator lost the session; only a
    human can tell, so we name it and say how to remove it rather than removing it.
    """
    res = gw.query(host, running_migrations_argv(gw.env.app), timeout=PS_TIMEOUT)
    rows = [(line.split("\t") + ["", ""])[:3] for line in res.stdout.splitlines() if line.strip()]
    if not rows:
        return
    shown = "; ".join(f"{name} (since {created or '?'}, {status or 'running'})" for name, created, status in rows)
    rm = " && ".join(render(docker.rm_argv(name, force=True)) for name, _, _ in rows)
    raise MigrationInProgress(
        f"a migration of {gw.env.app} is already running: {shown}; not starting another", host=host.name,
        hint=f"another deploy may still be migrating; once you are sure it is dead, run on {host.name}: {rm}")


def _may_still_run(exc: OpsError) -> bool:
    """True when ``docker run`` did not end by itself: its container may still be running.

    A plain non-zero exit means the container ended and ``--rm`` removed it.
    """
    if isinstance(exc, CommandTimeout | HostUnreachable):
        return True
    return isinstance(exc, RemoteCommandFailed) and exc.exit_code in (None, -1)


def remove_container(gw: Gateway, host: Host, name: str) -> str:
    """``docker rm --force`` ``name`` through the gateway, safe from a second Ctrl-C; say what happened."""
    argv = docker.rm_argv(name, force=True)
    with shielded_from_ctrl_c(gw.echo):
        try:
            gw.run(host, argv, timeout=REMOVE_TIMEOUT)
        except RemoteCommandFailed as exc:
            if "no such container" in exc.stderr.lower():
                return f"its container {name} had already ended"
            why = exc.message
        except Exception as exc:  # noqa: BLE001 - cleanup must never hide the migration's own failure
            why = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        else:
            return f"its container {name} was removed"
    return f"removing its container failed ({gw.mask(why)}); run on {host.name}: {render(argv)}"


def _lock_timeout_note(gw: Gateway, host: Host, url: DatabaseURL, output: str) -> str:
    """P1002 in the migrator's output: name who holds Prisma's migration lock (an orphaned migrator)."""
    if "P1002" not in output:
        return ""
    try:
        holders = read_db_state(gw, host, url).lock_holders
    except OpsError as exc:
        return f"; P1002: timed out waiting for Prisma's migration lock (who holds it could not be read: {exc.message})"
    if not holders:
        return "; P1002: timed out waiting for Prisma's migration lock (no session holds it any more: deploy again)"
    return ("; P1002: timed out waiting for Prisma's migration lock, held by an orphaned migrator: "
            + "; ".join(str(h) for h in holders)
            + f" — end it with SELECT pg_terminate_backend({holders[0].pid}) once sure no deploy is migrating")


def run_migrations(gw: Gateway, host: Host, release: Release, url: DatabaseURL) -> MigrationReport:
    report = MigrationReport()
    refuse_if_migrating(gw, host)
    if not gw.dry_run:
        report.before = finished_names(gw, host, url)
    name = migrate_container(gw, release)
    try:
        res = gw.run(host, migrate_argv(gw, release), timeout=gw.env.migrate.timeout)
    except KeyboardInterrupt as exc:
        # NOTE: the container runs under dockerd, not under our SSH session: stopping
        # here would leave it migrating unattended unless we remove it.
        outcome = f"{host.name}: migration interrupted; {remove_container(gw, host, name)}"
        gw.echo(outcome)
        exc.add_note(outcome)
        raise
    except OpsError as exc:
        output = (getattr(exc, "stdout", "") or "") + (getattr(exc, "stderr", "") or "")
        tail = "\n    ".join(output.strip().splitlines()[-15:])
        if _may_still_run(exc):
            what = f"{exc.message}; nothing was switched; {remove_container(gw, host, name)}"
            raise MigrationFailed(f"migration failed ({gw.env.migrate.command}): {what}"
                                  + (f":\n    {tail}" if tail else ""), host=host.name,
                                  hint="it may have stopped half-way: check _prisma_migrations, fix the cause, "
                                       "then deploy again (see RUNBOOK: failed deploy)") from None
        rp = f"; restore point {release.restore_point} was taken before it" if release.restore_point else ""
        raise MigrationFailed(f"migration failed ({gw.env.migrate.command}); nothing was switched{rp}"
                              + _lock_timeout_note(gw, host, url, output)
                              + (f":\n    {tail}" if tail else f": {exc.message}"),
                              host=host.name,
                              hint="fix the migration; the database may hold a failed _prisma_migrations row "
                                   "(see RUNBOOK: failed deploy)") from None
    report.output = res.stdout
    if not gw.dry_run:
        report.after = finished_names(gw, host, url)
    return report


# ---------------------------------------------------------------- before anything runs


def read_db_state(gw: Gateway, host: Host, url: DatabaseURL) -> DbState:
    """``_prisma_migrations``, table sizes and holders of Prisma's migration lock, through ``host``."""
    with connect_via(gw, host, url) as conn:
        return read_state(conn)


def plan_review(gw: Gateway, host: Host, url: DatabaseURL, *, context: Path | None, image: str | None,
                say: Callable[[str], None]) -> MigrationReview:
    """The pending migrations of the release, classified, for the deploy plan.

    Stops (``FailedMigration`` / ``MigratorRunning``) when the database holds a failed
    migration (P3009) or another migrator holds Prisma's lock (P1002): the deploy would
    only fail later, inside the migrate container. ``context``: read from the build
    context (the image does not exist yet); else from ``image`` on this machine.
    """
    env = gw.env
    try:
        state: DbState | None = read_db_state(gw, host, url)
    except OpsError as exc:
        state = None
        notes = [f"could not read _prisma_migrations ({exc.message})"]
    else:
        notes = refuse_failed(state, env.name, under_lock=False)
    if context is not None:
        result = review(migration_source.read_dir(context / env.migrate.path),
                        f"{Path(env.migrate.path)} of the build context", state,
                        big_table_rows=env.migrate.big_table_rows)
    else:
        say(f"reading {env.migrate.path} from {image} (docker create + docker cp; nothing runs)")
        with migration_source.from_image(image, env.migrate.path) as migrations:
            result = review(migrations, f"{env.migrate.path} of {image}", state,
                            big_table_rows=env.migrate.big_table_rows)
    result.notes[:0] = notes
    return result


def image_review(gw: Gateway, image: str, host: Host, url: DatabaseURL) -> MigrationReview:
    """The review again, from the image just built (what the hosts will run), before any host pulls it."""
    env = gw.env
    try:
        state: DbState | None = read_db_state(gw, host, url)
    except OpsError:
        state = None
    with migration_source.from_image(image, env.migrate.path) as migrations:
        return review(migrations, f"{env.migrate.path} of {image}", state, big_table_rows=env.migrate.big_table_rows)


def recheck_under_lock(gw: Gateway, host: Host, url: DatabaseURL) -> None:
    """Under the lock, before anything is pulled: no failed row, and no other migrator (an orphan now)."""
    refuse_failed(read_db_state(gw, host, url), gw.env.name, under_lock=True)


def take_restore_point(gw: Gateway, masker: Masker, say: Callable[[str], None], warnings: list[str] | None = None):
    """``backup.db`` under the deploy's own lock; returns its manifest (id, finished_at). What the
    backup warned of (e.g. its second copy failed: the backup itself is good) goes to ``warnings``."""
    from ops.backup.context import BackupContext  # NOTE: backup imports deploy modules; import at use
    from ops.backup.dump import backup_db

    ctx = BackupContext(gw.env, say=say, masker=masker)
    try:
        manifest = backup_db(ctx, gw, lock=False)
        if warnings is not None:
            warnings.extend(f"restore point {manifest.id}: {w}" for w in ctx.warnings)
        return manifest
    except OpsError as exc:
        raise RestorePointFailed(f"the restore point before the migration failed: {exc.message}; nothing was "
                                 "migrated or switched", host=exc.host,
                                 hint=exc.hint or "fix the backup (inv backup.db), then deploy again") from None


def restore_point_possible(env, masker: Masker) -> None:
    """Raise the ``ConfigError`` ``backup.db`` would raise (no s3, no postgres accessory, no passphrase)."""
    from ops.backup.context import BackupContext
    from ops.postgres import pg_target

    ctx = BackupContext(env, masker=masker)
    pg_target(env, ctx.app_values())
    ctx.passphrase()
