"""Prisma's failure states on the real fleet: an orphaned migrator holding Prisma's
migration lock (a migrate would time out with P1002) and a failed migration row (P3009)
each stop ``inv deploy`` at preflight, named, with nothing changed and the lock free."""

from __future__ import annotations

from ops.migrations.state import PRISMA_ADVISORY_LOCK

from . import helpers as h


def test_an_orphaned_migrator_holding_prismas_lock_stops_the_deploy_named_before_anything_changes(fleet):
    old = h.assert_one_version()
    with h.db_conn(fleet.env) as orphan:
        orphan.execute("SET application_name = 'orphaned-migrate'")
        orphan.execute("SELECT pg_advisory_lock(%s)", (PRISMA_ADVISORY_LOCK,))
        pid = orphan.execute("SELECT pg_backend_pid()").fetchone()[0]
        out = h.run_inv("deploy", "--host", "sandbox", "--version", fleet.other(old))
    h.assert_one_clear_error(out, 1, "another migrator holds prisma's migration lock", "P1002", f"pid {pid}",
                             "orphaned-migrate", "pg_terminate_backend")
    assert "pulling" not in out.output and "migrating on" not in out.output, str(out)
    h.assert_one_version({old})
    h.assert_lock_free()


def test_a_failed_migration_row_stops_the_deploy_at_preflight_with_the_resolve_commands(fleet, marker_rows):
    old = h.assert_one_version()
    with h.db_conn(fleet.env) as conn:
        conn.execute("INSERT INTO _prisma_migrations (id, checksum, migration_name, logs, started_at) "
                     "VALUES ('fault-p3009', 'x', '20990101000000_half_done', "
                     "'ERROR: relation \"Nope\" does not exist', now())")
    try:
        out = h.run_inv("deploy", "--host", "sandbox", "--version", fleet.other(old))
        h.assert_one_clear_error(out, 1, "failed migration", "20990101000000_half_done", "P3009",
                                 'relation "nope" does not exist',
                                 "npx prisma migrate resolve --rolled-back 20990101000000_half_done")
        assert "pulling" not in out.output, str(out)
        h.assert_one_version({old})
        h.assert_lock_free()
        h.assert_rows_still_there(fleet.env, marker_rows)
    finally:
        with h.db_conn(fleet.env) as conn:
            conn.execute("DELETE FROM _prisma_migrations WHERE id = 'fault-p3009'")


def test_s3_down_when_the_restore_point_is_due_stops_the_deploy_before_the_destructive_migration(fleet, tmp_path):
    old = h.assert_one_version()
    name = "20990201000000_drop_fault_target"
    overlay = tmp_path / "overlay" / "prisma" / "migrations" / name
    overlay.mkdir(parents=True)
    (overlay / "migration.sql").write_text('DROP TABLE "fault_drop_target";\n')
    destructive = fleet.layer(old, f"faults-destructive-{h.nonce()}", overlay=tmp_path / "overlay")
    with h.db_conn(fleet.env) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS fault_drop_target (v text)")
        conn.execute("INSERT INTO fault_drop_target VALUES ('keep me')")
    try:
        refused = h.run_inv("deploy", "--host", "sandbox", "--version", destructive)
        h.assert_one_clear_error(refused, 2, "need consent", name, "drops table fault_drop_target",
                                 "--allow-destructive")
        h.stop_service(fleet.env, "s3")
        out = h.run_inv("deploy", "--host", "sandbox", "--version", destructive, "--allow-destructive")
        h.assert_one_clear_error(out, 1, "restore point before the migration failed", "nothing was migrated")
        assert "migrating on" not in out.output and "switching" not in out.output, str(out)
        with h.db_conn(fleet.env) as conn:
            assert conn.execute("SELECT v FROM fault_drop_target").fetchall() == [("keep me",)]
            assert conn.execute("SELECT count(*) FROM _prisma_migrations WHERE migration_name = %s",
                                (name,)).fetchone()[0] == 0
        h.assert_one_version({old})
        h.assert_lock_free()
    finally:
        with h.db_conn(fleet.env) as conn:
            conn.execute("DROP TABLE IF EXISTS fault_drop_target")
