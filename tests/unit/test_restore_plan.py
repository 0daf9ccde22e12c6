"""ops/restore/ and ops/traffic.py, pure parts: names, SQL, argv, comparisons, the plan and the confirmation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ops.backup.authenticity import Authenticity
from ops.backup.catalog import Entry
from ops.backup.manifest import Manifest
from ops.cli import confirm
from ops.commands import render
from ops.errors import ConfigError
from ops.inventory import Host, load_environment
from ops.postgres import PgTarget
from ops.restore.database import (
    LiveDatabase,
    allow_connections_sql,
    compare_checksums,
    compare_counts,
    create_database_sql,
    drop_database_sql,
    ident,
    literal,
    pg_restore_argv,
    rename_sql,
    scratch_names,
    stamp,
    terminate_sql,
)
from ops.restore.objects import CheckedObject
from ops.restore.plan import DbPlan
from ops.restore.uploads import EXTRACT_SCRIPT, SWAP_SCRIPT, uploads_argv
from ops.traffic import maintenance_conf

SHA = "ab" * 32


@pytest.fixture
def env():
    return load_environment("sandbox")


def manifest(**kw) -> Manifest:
    data = dict(id="db-20261124T030000Z-a1b2c3", kind="db", env="sandbox",
                object_key="athlete-platform/backups/sandbox/db/2026/11/24/db-20261124T030000Z-a1b2c3.dump",
                size=2048, sha256=SHA, started_at="2026-11-24T03:00:00Z", finished_at="2026-11-24T03:00:05Z",
                database="athlete", server_version="15.10", newest_migration="20240212141500_add_uploads",
                app_release="20261120T100000Z-3f2a9c1", table_counts={"public.User": 3, "public.Message": 7})
    data.update(kw)
    return Manifest(**data)


def test_scratch_names_are_lowercase_digits_and_fit_postgres_63_byte_limit():
    new, before = scratch_names("athlete", "20261124_030000")
    assert (new, before) == ("athlete_restore_20261124_030000", "athlete_before_20261124_030000")
    long_new, long_before = scratch_names("x" * 80, "20261124_030000")
    assert len(long_new.encode()) <= 63 and len(long_before.encode()) <= 63
    assert long_new.endswith("_restore_20261124_030000") and long_before.endswith("_before_20261124_030000")
    assert stamp(datetime(2026, 11, 24, 3, 0, 7, tzinfo=UTC)) == "20261124_030007"


def test_identifiers_and_literals_are_quoted_so_odd_names_cannot_break_out():
    assert ident('we"ird') == '"we""ird"'
    assert literal("it's") == "'it''s'"
    assert rename_sql("app", 'app"; DROP') == 'ALTER DATABASE "app" RENAME TO "app""; DROP"'
    with pytest.raises(ConfigError):
        ident("")


def test_swap_sql_closes_terminates_and_renames():
    assert allow_connections_sql("app", False) == 'ALTER DATABASE "app" WITH ALLOW_CONNECTIONS false'
    assert "pg_terminate_backend(pid, 10000)" in terminate_sql("app")
    assert "datname = 'app' AND pid <> pg_backend_pid()" in terminate_sql("app")
    assert drop_database_sql("app_restore_1") == 'DROP DATABASE IF EXISTS "app_restore_1" WITH (FORCE)'


def test_new_database_copies_owner_encoding_and_locale_from_a_clean_template():
    live = LiveDatabase("app", "UTF8", "C.UTF-8", "C.UTF-8", "athlete", 10, 2, None)
    assert create_database_sql("app_restore_1", live) == (
        'CREATE DATABASE "app_restore_1" WITH TEMPLATE template0 OWNER "athlete" ENCODING \'UTF8\' '
        "LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'")


def test_pg_restore_reads_stdin_inside_the_accessory_as_the_restore_role_and_stops_at_the_first_error():
    argv = pg_restore_argv("athlete-platform-postgres", "ops_restore", "athlete_restore_1")
    assert argv == ("docker", "exec", "-i", "athlete-platform-postgres", "pg_restore", "--no-password",
                    "--username=ops_restore", "--dbname=athlete_restore_1", "--no-owner", "--exit-on-error")
    # NOTE: never --role: a crafted archive could RESET ROLE back to a superuser session user.
    assert not any(a.startswith("--role") for a in argv)


def test_the_restore_role_is_created_without_any_power_and_hands_its_objects_over():
    from ops.restore import role

    create = role.create_role_sql()
    assert create.startswith('CREATE ROLE "ops_restore" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION')
    assert "NOSUPERUSER" in role.harden_role_sql() and "NOBYPASSRLS" in role.harden_role_sql()
    assert role.hand_over_sql("ops_restore", 'app"x') == 'REASSIGN OWNED BY "ops_restore" TO "app""x"'


def test_counts_that_differ_or_exist_on_one_side_only_are_each_named():
    problems = compare_counts({"public.a": 3, "public.b": 1, "public.c": 2},
                                      {"public.a": 3, "public.b": 0, "public.d": 5})
    assert problems == ["public.b: 0 rows restored, the manifest says 1",
                        "public.c: missing after the restore (manifest: 2 rows)",
                        "public.d: not in the backup's manifest (5 rows restored)"]
    assert compare_counts({"public.a": 3}, {"public.a": 3}) == []
    assert compare_checksums({"public.a": "md5sum64:1", "public.b": "md5sum64:2"},
                                     {"public.a": "md5sum64:1", "public.b": "md5sum64:9"}) == [
        "public.b: content checksum differs from the manifest's"]


def test_maintenance_site_answers_503_with_retry_after_on_the_app_port():
    conf = maintenance_conf(3000)
    assert "listen 3000 default_server;" in conf
    assert 'add_header Retry-After "60" always;' in conf
    assert "return 503" in conf


def test_uploads_container_runs_as_root_without_network_with_the_volume_and_stdin_open(env):
    argv = uploads_argv(env, "localhost:5000/athlete-platform/web:abc", EXTRACT_SCRIPT,
                                "20261124_030000", stdin=True)
    assert argv[:3] == ("docker", "run", "-i")
    text = render(argv)
    for part in ("--rm", "--network none", "--user 0", "-v athlete-platform-uploads:/data",
                 "--log-driver none", "--entrypoint sh"):
        assert part in text
    assert argv[-2:] == ("sh", "20261124_030000")
    assert "-i" not in uploads_argv(env, "img", SWAP_SCRIPT, "1")[:3]


def test_plan_names_the_backup_its_check_what_stops_and_what_is_kept(env):
    m = manifest()
    target = PgTarget(host=Host("db1", "127.0.0.1", roles=("db",)), container="athlete-platform-postgres",
                      user="athlete", dbname="athlete", password="x" * 16)
    live = LiveDatabase("athlete", "UTF8", "C.UTF-8", "C.UTF-8", "athlete", 8_000_000, 4,
                                "20240212141500_add_uploads")
    plan = DbPlan(env, datetime(2026, 11, 24, 4, 0, tzinfo=UTC), Entry(m, m.object_key), target, live,
                          "athlete_restore_20261125_090000", "athlete_before_20261125_090000", "athlete",
                          10 * 2**30, {"web1": ["athlete-platform-web-x"], "web2": []},
                          CheckedObject(0.4, '"etag"', Authenticity(True, "manifest authenticated (HMAC)", None)),
                          ["look out"])
    text = "\n".join(plan.lines())
    assert "db-20261124T030000Z-a1b2c3: data as of 2026-11-24T03:00:00Z (its start), finished 2026-11-24T03:00:05Z" \
        in text
    assert "data loss  writes after 2026-11-24T03:00:00Z are not in it: 60m before the target" in text
    assert "authentic  manifest authenticated (HMAC)" in text
    assert f"sha256 {SHA[:16]}... checked just now" in text
    assert "2 tables, 10 rows; migration head 20240212141500_add_uploads" in text
    assert "safety backup of athlete" in text
    assert "web1: athlete-platform-web-x" in text
    assert "rename athlete -> athlete_before_20261125_090000 and athlete_restore_20261125_090000 -> athlete" in text
    assert "keep athlete_before_20261125_090000" in text
    assert "warning: look out" in text
    assert "x" * 16 not in text


def test_confirmation_needs_a_terminal_and_the_exact_environment_name():
    with pytest.raises(ConfigError, match="no terminal"):
        confirm("prod", "Sure?", interactive=lambda: False)
    with pytest.raises(ConfigError, match="not confirmed; nothing was changed"):
        confirm("prod", "Sure?", ask=lambda _q: "yes", interactive=lambda: True)

    def eof(_q):
        raise EOFError

    with pytest.raises(ConfigError, match="not confirmed"):
        confirm("prod", "Sure?", ask=eof, interactive=lambda: True)
    confirm("prod", "Sure?", ask=lambda _q: " prod\n", interactive=lambda: True)
