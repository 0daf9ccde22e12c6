"""Fault injection on the sandbox fleet.

One version pair is built once per session (``fleet.a`` / ``fleet.b``: the same image
under two tags, so a deploy is a pull-free switch); variants (broken health, failing
migration, a fresh image that must be pulled) are thin layers on top of it. Every test
leaves the fleet as it found it: hosts, registry and S3 running, the site served, the
lock free.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ops import sandbox
from ops.deploy import image as images
from ops.inventory import Environment
from ops.registry import app_refs
from ops.sandbox import services
from tests.support import fleet as shared
from tests.support.app_repo import VARIANTS_DIR, make_app_repo

from . import helpers as h

# The shared fleet fixtures (tests/support/fleet.py), under their names.
sandbox_env = shared.sandbox_env
gw = shared.gw


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "/faults/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@dataclass
class Fleet:
    env: Environment
    a: str
    b: str
    broken_health: str
    failing_migration: str
    workdir: Path
    made: list[str] = field(default_factory=list)

    def ref(self, tag: str) -> str:
        return app_refs(self.env, tag)[0]

    def host_ref(self, tag: str) -> str:
        return app_refs(self.env, tag)[1]

    def other(self, version: str) -> str:
        """The version of the pair that is not ``version``."""
        return self.b if version == self.a else self.a

    def retag(self, tag: str, new_tag: str) -> str:
        h.docker("tag", self.ref(tag), self.ref(new_tag))
        h.docker("push", "--quiet", self.ref(new_tag), timeout=300)
        self.made.append(new_tag)
        return new_tag

    def layer(self, base: str, new_tag: str, *, overlay: Path | None = None, run: str | None = None) -> str:
        """A thin image on top of ``base``: files copied into /app and/or one RUN step; pushed."""
        ctx = self.workdir / new_tag
        ctx.mkdir()
        lines = [f"FROM {self.ref(base)}"]
        if overlay is not None:
            shutil.copytree(overlay, ctx / "overlay")
            lines.append("COPY overlay/ /app/")
        if run:
            lines.append(f"RUN {run}")
        (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")
        h.docker("build", "--quiet", "--tag", self.ref(new_tag), str(ctx), timeout=600)
        h.docker("push", "--quiet", self.ref(new_tag), timeout=600)
        self.made.append(new_tag)
        return new_tag

    def fresh(self, base: str, mib: int = 0) -> str:
        """A tag no host has pulled yet (``mib`` > 0: with a new layer of that many random MiB)."""
        tag = f"{base}-x{h.nonce()}"
        if mib:
            return self.layer(base, tag, run=f"head -c {mib * 1024 * 1024} /dev/urandom > /tmp/ballast")
        return self.retag(base, tag)


def _boot_postgres() -> None:
    for attempt in range(3):
        out = h.run_inv("accessory.boot", "--host", "sandbox", "postgres", timeout=600)
        if out.code == 0:
            return
        time.sleep(3 + 3 * attempt)
    raise AssertionError(f"accessory.boot failed:\n{out}")


def _resolve_failed_migrations(env: Environment) -> None:
    """A failed migration left by an earlier aborted run blocks every migrate (P3009)."""
    with h.db_conn(env) as conn:
        if conn.execute("SELECT to_regclass('_prisma_migrations')").fetchone()[0]:
            conn.execute("UPDATE _prisma_migrations SET rolled_back_at = now() "
                         "WHERE finished_at IS NULL AND rolled_back_at IS NULL")


@pytest.fixture(scope="session")
def fleet(sandbox_env, tmp_path_factory) -> Fleet:
    env = sandbox_env
    _boot_postgres()
    _resolve_failed_migrations(env)
    work = tmp_path_factory.mktemp("faults")
    repo = make_app_repo(work / "app")
    source = images.git_source(repo)
    run = h.nonce()
    a = f"faults-a-{run}"
    images.build_and_push(env, source, a, lambda _: None, None)
    f = Fleet(env, a, "", "", "", work)
    f.b = f.retag(a, f"faults-b-{run}")
    f.broken_health = f.layer(a, f"faults-broken-health-{run}", overlay=VARIANTS_DIR / "broken-health")
    f.failing_migration = f.layer(a, f"faults-failing-migration-{run}", overlay=VARIANTS_DIR / "failing-migration")
    out = h.run_inv("deploy", "--host", "sandbox", "--version", a, timeout=600)
    assert out.code == 0, f"the session's first deploy failed:\n{out}"
    h.assert_one_version({a})
    return f


def _heal(env: Environment) -> None:
    for name in ("registry", "s3"):
        svc = services.services(env)[name]
        if services.running_pid(svc) is None:
            services.ensure(svc)
    services.ensure_bucket(env)
    if not all(h.host_running(name) for name in h.HOSTS):
        sandbox.up(env)
    h.wait_serving(120)


@pytest.fixture(autouse=True)
def leave_the_fleet_as_found(sandbox_env):
    """Teardown: registry and S3 up, every host up and serving, the lock free."""
    yield
    _heal(sandbox_env)
    status = h.lock_status()
    if status.code != 0 or not all(h.row_free(row) for row in h.host_rows(status).values()):
        h.force_release_lock()


@pytest.fixture
def heal(sandbox_env):
    """Call to bring stopped hosts/services back now (also done after every test)."""
    return lambda: _heal(sandbox_env)


@pytest.fixture
def marker_rows(sandbox_env):
    return h.write_marker_rows(sandbox_env)
