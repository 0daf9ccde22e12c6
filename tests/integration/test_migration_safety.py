"""Migrations judged before they run, on the sandbox fleet: a destructive one is refused
without consent and, with it, a restore point is taken first and named in the release;
a failed migration (P3009) stops the next deploy at preflight with the recovery steps.

The tests run in file order on one temp checkout of the sample app.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import psycopg
import pytest

from ops import s3
from ops.appenv import load_env_file
from ops.deploy import pipeline
from ops.deploy.migrate import MigrationFailed
from ops.deploy.pipeline import DeployRequest, deploy
from ops.migrations.review import ConsentRequired
from ops.migrations.state import FailedMigration
from ops.postgres import DatabaseURL
from ops.remote import Gateway
from tests.support.app_repo import apply_variant, git, make_app_repo

from .conftest import inv

DB_PORT = 15432
DROP_NAME = "20240601000000_drop_user_name"
DROP_SQL = """/*
  Warnings:

  - You are about to drop the column `name` on the `User` table. All the data in the column will be lost.

*/
-- AlterTable
ALTER TABLE "User" DROP COLUMN "name";
"""


def db_conn(values):
    url = DatabaseURL.parse(values["DATABASE_URL"])
    return psycopg.connect(host="127.0.0.1", port=DB_PORT, user=url.user, password=url.password,
                           dbname=url.dbname, autocommit=True, connect_timeout=5)


def commit_migration(repo: Path, name: str, sql: str) -> None:
    folder = repo / "prisma" / "migrations" / name
    folder.mkdir(parents=True)
    (folder / "migration.sql").write_text(sql)
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--no-verify", "-m", f"migration {name}")


def columns(values, table: str) -> set[str]:
    with db_conn(values) as conn:
        return {r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns "
                                           "WHERE table_schema = 'public' AND table_name = %s", (table,))}


class App:
    def __init__(self, base_env, tmp: Path):
        self.repo = make_app_repo(tmp / "app")
        env_file = tmp / "app.env"
        env_file.write_bytes(base_env.env_file.read_bytes())
        os.chmod(env_file, 0o600)
        self.env = dataclasses.replace(base_env, env_file=env_file,
                                       build=dataclasses.replace(base_env.build, source=self.repo))
        self.values = load_env_file(env_file)
        self.lines: list[str] = []

    def deploy(self, **kw):
        return deploy(self.env, DeployRequest(**kw), self.lines.append)

    def plan(self, **kw):
        run, plan = pipeline.plan(self.env, DeployRequest(**kw), self.lines.append)
        run.close()
        return plan


@pytest.fixture(scope="module")
def app(sandbox_env, tmp_path_factory):
    inv("accessory.boot", "--host", "sandbox", "postgres", check=True)
    a = App(sandbox_env, tmp_path_factory.mktemp("migration-safety"))
    with db_conn(a.values) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    a.v1 = a.deploy()
    yield a
    # The sandbox database is shared: put back what the destructive migration took away.
    with db_conn(a.values) as conn:
        conn.execute('ALTER TABLE "User" ADD COLUMN IF NOT EXISTS "name" TEXT')
        conn.execute("DELETE FROM _prisma_migrations WHERE migration_name = %s", (DROP_NAME,))
    # ...and leave the fleet on the module's first release: the image with the destructive
    # migration must not be what the next suite finds serving (it would be "pending" again).
    deploy(a.env, DeployRequest(version=a.v1.release.version), a.lines.append)


def test_the_plan_lists_the_pending_destructive_migration_and_says_the_old_release_breaks(app):
    commit_migration(app.repo, DROP_NAME, DROP_SQL)
    plan = app.plan()
    review = plan.migrations
    assert [r.migration.name for r in review.pending] == [DROP_NAME]
    assert review.applied == 2 and review.level == "destructive" and not review.previous_ok
    text = "\n".join(plan.render())
    assert f"{DROP_NAME}: DESTRUCTIVE" in text
    assert "drops column User.name" in text
    assert "previous release CANNOT run on the new schema" in text
    assert "NEEDS --allow-destructive" in text
    assert "squawk: ban-drop-column" in text      # the real linter ran over the same file
    assert plan.to_dict()["migrations"]["pending"][0]["verdict"] == "destructive"


def test_without_consent_the_deploy_is_refused_and_nothing_changes(app):
    with pytest.raises(ConsentRequired) as err:
        app.deploy()
    assert DROP_NAME in str(err.value) and "--allow-destructive" in str(err.value)
    assert "name" in columns(app.values, "User")
    cli = inv("deploy", "--host", "sandbox", "--allow-destructive", "--dry", "--version", "nope!")
    assert cli.returncode == 2 and "--version 'nope!' is not a valid image tag" in cli.stderr


def test_with_consent_a_restore_point_is_taken_first_and_named_in_the_release_and_audit(app, sandbox_env):
    app.lines.clear()
    result = app.deploy(allow_destructive=True)
    point = result.release.restore_point
    assert point and point.startswith("db-")
    assert "name" not in columns(app.values, "User")
    said = "\n".join(app.lines)
    assert said.index(f"restore point: {point}") < said.index("migrating on web1")
    # The backup exists with its manifest, and holds the column the migration dropped.
    client = s3.client(sandbox_env)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=sandbox_env.s3.bucket,
                                                      Prefix=sandbox_env.s3.prefix).get("Contents", [])]
    manifests = [k for k in keys if point in k and k.endswith(".manifest.json")]
    assert len(manifests) == 1
    manifest = json.loads(client.get_object(Bucket=sandbox_env.s3.bucket, Key=manifests[0])["Body"].read())
    assert manifest["newest_migration"] == "20240212141500_add_uploads"
    with Gateway(sandbox_env) as gw:
        history = gw.query(sandbox_env.hosts["web1"], ("tail", "-n", "1", f"{sandbox_env.app_dir}/history.jsonl"))
    assert json.loads(history.stdout)["restore_point"] == point
    audit = json.loads(inv("audit", "--host", "sandbox", "--json", check=True).stdout)["data"]["web1"]
    deploys = [e for e in audit if e.get("action") == "deploy" and e.get("outcome") == "ok"]
    assert f"restore point {point}" in deploys[-1]["detail"]


def test_a_failed_migration_row_stops_the_next_deploy_at_preflight_with_the_recovery_steps(app):
    apply_variant(app.repo, "failing-migration")
    with pytest.raises(MigrationFailed):
        app.deploy()
    try:
        with pytest.raises(FailedMigration) as err:
            app.plan()
        text = str(err.value)
        assert "20240415120000_add_reactions" in text and "P3009" in text
        assert "inv app.exec --host sandbox -- npx prisma migrate resolve --rolled-back 20240415120000_add_reactions" \
            in text
        assert "--applied 20240415120000_add_reactions" in text
    finally:
        with db_conn(app.values) as conn:
            conn.execute("UPDATE _prisma_migrations SET rolled_back_at = now() "
                         "WHERE finished_at IS NULL AND rolled_back_at IS NULL")
