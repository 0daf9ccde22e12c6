"""Run the app's migrate command once, in a one-off container of the new release.

It runs before any traffic moves, with the new image and the new env, so a failed
migration stops the deploy while every host still serves the old release. Prisma's
``_prisma_migrations`` table is read before and after, to report what was applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ops.commands import docker
from ops.db import DatabaseURL, applied_migrations, connect_via
from ops.deploy.release import Release
from ops.errors import HostError, OpsError
from ops.inventory import Host
from ops.layout import Layout
from ops.remote import Gateway


class MigrationFailed(HostError):
    """The migrate command exited non-zero; nothing was switched."""


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


def migrate_argv(gw: Gateway, release: Release) -> tuple[str, ...]:
    layout = Layout(gw.env)
    return docker.run_argv(
        f"{layout.migrate_container}-{release.id.lower()}", release.image, network=layout.network,
        env_file=layout.release_env(release.id), env={"APP_VERSION": release.version},
        labels={"ops.app": gw.env.app, "ops.role": "migrate"}, restart=None, detach=False, remove=True,
        # The migrate command is the operator's own config (inventory), run by a shell
        # inside the container, passed as one argument: nothing of it reaches ours.
        command=("sh", "-c", gw.env.migrate.command))


def run_migrations(gw: Gateway, host: Host, release: Release, url: DatabaseURL) -> MigrationReport:
    report = MigrationReport()
    if not gw.dry_run:
        report.before = finished_names(gw, host, url)
    try:
        res = gw.run(host, migrate_argv(gw, release), timeout=gw.env.migrate.timeout)
    except OpsError as exc:
        output = (getattr(exc, "stdout", "") or "") + (getattr(exc, "stderr", "") or "")
        tail = "\n    ".join(output.strip().splitlines()[-15:])
        raise MigrationFailed(f"migration failed ({gw.env.migrate.command}); nothing was switched"
                              + (f":\n    {tail}" if tail else f": {exc.message}"),
                              host=host.name,
                              hint="fix the migration; the database may hold a failed _prisma_migrations row "
                                   "(see RUNBOOK: failed deploy)") from None
    report.output = res.stdout
    if not gw.dry_run:
        report.after = finished_names(gw, host, url)
    return report
