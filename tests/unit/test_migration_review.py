"""Pending migrations: what counts as pending, the plan's lines, consent, squawk's findings
(the real binary from the squawk-cli wheel), and Prisma's failure states as errors."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from ops.deploy import migrate
from ops.migrations import squawk
from ops.migrations.review import ConsentRequired, check_consent, review
from ops.migrations.source import MigrationsNotFound, image_path, read_dir
from ops.migrations.state import DbState, FailedMigration, LockHolder, MigratorRunning, refuse_failed

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)


def write(root: Path, name: str, sql: str) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "migration.sql").write_text(sql)


@pytest.fixture
def migrations(tmp_path):
    root = tmp_path / "prisma" / "migrations"
    write(root, "20240105093000_init", 'CREATE TABLE "User" ("id" TEXT NOT NULL, "name" TEXT);\n')
    write(root, "20240601000000_drop_name", 'ALTER TABLE "User" DROP COLUMN "name";\n')
    write(root, "20240602000000_add_bio", 'ALTER TABLE "User" ADD COLUMN "bio" TEXT;\n')
    (root / "migration_lock.toml").write_text('provider = "postgresql"\n')
    return read_dir(root)


def row(name: str, *, finished=True, rolled_back=False, logs=None) -> dict:
    return {"migration_name": name, "checksum": "x", "started_at": NOW, "finished_at": NOW if finished else None,
            "rolled_back_at": NOW if rolled_back else None, "applied_steps_count": 1, "logs": logs}


def test_pending_are_the_migrations_the_database_has_not_finished_and_rolled_back_ones_count_as_pending(migrations):
    state = DbState(rows=[row("20240105093000_init"), row("20240601000000_drop_name", rolled_back=True)],
                    table_rows={"User": 50})
    result = review(migrations, "prisma/migrations of img", state, big_table_rows=10_000)
    assert [r.migration.name for r in result.pending] == ["20240601000000_drop_name", "20240602000000_add_bio"]
    assert result.applied == 1
    assert [r.verdict.level for r in result.pending] == ["destructive", "safe"]
    assert result.needs_consent and not result.previous_ok
    lines = result.lines()
    assert lines[0].startswith("migrations: 2 pending in prisma/migrations of img — overall DESTRUCTIVE")
    assert "  20240601000000_drop_name: DESTRUCTIVE — previous release breaks: it still reads or writes User.name" \
        in lines
    assert "  20240602000000_add_bio: SAFE" in lines


def test_nothing_pending_needs_no_consent(migrations):
    state = DbState(rows=[row(m.name) for m in migrations])
    result = review(migrations, "ctx", state, big_table_rows=10)
    assert not result.pending and not result.needs_consent
    assert result.lines() == ["migrations: none pending (3 in ctx already applied)"]
    check_consent(result, allowed=False, policy="ask", env_name="prod")


def test_an_unreadable_database_lists_everything_as_pending_and_says_so(migrations):
    result = review(migrations, "ctx", None, big_table_rows=10)
    assert len(result.pending) == 3
    assert any("could not be read" in note for note in result.notes)


def test_consent_comes_from_the_flag_or_the_inventory_policy(migrations):
    result = review(migrations, "ctx", DbState(rows=[row("20240105093000_init")]), big_table_rows=10)
    with pytest.raises(ConsentRequired) as err:
        check_consent(result, allowed=False, policy="ask", env_name="prod")
    assert "20240601000000_drop_name (destructive: drops column User.name" in str(err.value)
    assert "--allow-destructive" in str(err.value) and "migrate.policy: allow" in str(err.value)
    check_consent(result, allowed=True, policy="ask", env_name="prod")
    check_consent(result, allowed=False, policy="allow", env_name="prod")


def test_squawk_from_the_wheel_lints_the_pending_files(migrations):
    assert squawk.binary(), "squawk-cli is a dependency: its binary must be installed"
    found, why_not = squawk.lint({m.name: m.path for m in migrations})
    assert why_not is None
    assert [str(f) for f in found["20240601000000_drop_name"]] == ["ban-drop-column (line 1)"]
    assert found["20240602000000_add_bio"] == []


def test_squawk_output_maps_to_migrations_with_one_based_lines_and_skips_style_rules(tmp_path):
    files = {"m1": tmp_path / "a.sql"}
    out = json.dumps([{"file": str(files["m1"]), "line": 4, "level": "Warning", "message": "x",
                       "rule_name": "require-concurrent-index-creation"},
                      {"file": str(files["m1"]), "line": 0, "level": "Warning", "message": "y",
                       "rule_name": "prefer-robust-stmts"}])
    assert [str(f) for f in squawk.parse(out, files)["m1"]] == ["require-concurrent-index-creation (line 5)"]


def test_a_failed_row_stops_with_both_resolve_commands_runnable_through_app_exec():
    state = DbState(rows=[row("20240105093000_init"),
                          row("20240415120000_add_reactions", finished=False,
                              logs='Database error code: 42P01\n\nDatabase error:\nERROR: relation "X" does not exist')])
    with pytest.raises(FailedMigration) as err:
        refuse_failed(state, "prod")
    text = str(err.value)
    assert 'ERROR: relation "X" does not exist' in text and "P3009" in text
    assert "inv app.exec --host prod -- npx prisma migrate resolve --rolled-back 20240415120000_add_reactions" in text
    assert "inv app.exec --host prod -- npx prisma migrate resolve --applied 20240415120000_add_reactions" in text


def test_a_session_holding_prismas_advisory_lock_is_named_as_an_orphaned_migrator():
    holder = LockHolder(4242, "migrate", "172.31.250.11", "2026-11-29 11:00:00", "idle in transaction", "")
    with pytest.raises(MigratorRunning) as err:
        refuse_failed(DbState(lock_holders=[holder]), "prod")
    assert "pid 4242 'migrate' from 172.31.250.11" in str(err.value)
    assert "P1002" in str(err.value) and "pg_terminate_backend" in str(err.value)


def test_p1002_in_the_migrators_output_names_who_holds_the_lock(monkeypatch):
    holder = LockHolder(77, "", "local", "2026-11-29 11:00:00", "idle", "")
    monkeypatch.setattr(migrate, "read_db_state", lambda gw, host, url: DbState(lock_holders=[holder]))
    note = migrate._lock_timeout_note(None, None, None, "Error: P1002\n\nThe database server ... timed out.")
    assert "held by an orphaned migrator: pid 77 from local" in note
    assert migrate._lock_timeout_note(None, None, None, "Error: P3018") == ""


def test_migrations_are_read_in_name_order_with_prismas_checksum(migrations, tmp_path):
    assert [m.name for m in migrations] == ["20240105093000_init", "20240601000000_drop_name", "20240602000000_add_bio"]
    import hashlib
    assert migrations[1].checksum == hashlib.sha256(migrations[1].path.read_bytes()).hexdigest()
    with pytest.raises(MigrationsNotFound) as err:
        read_dir(tmp_path / "nope")
    assert "migrate.path" in str(err.value)


def test_a_relative_migrate_path_starts_at_the_images_workdir():
    assert image_path("/app", "prisma/migrations") == "/app/prisma/migrations"
    assert image_path("", "prisma/migrations") == "/prisma/migrations"
    assert image_path("/app", "/srv/db/migrations") == "/srv/db/migrations"


def test_inventory_migrate_path_policy_and_big_table_rows_are_validated(tmp_path):
    import yaml

    from ops.errors import InventoryError
    from ops.inventory import load_environment

    base = {"app": "shop", "image": "registry.example.com/team/shop", "registry": {"url": "registry.example.com"},
            "ssh": {"user": "ops", "known_hosts": "inventory/prod.known_hosts"},
            "hosts": {"web1": {"address": "10.0.0.11", "roles": ["web"]}}}
    inv = tmp_path / "inventory"
    inv.mkdir()
    (inv / "prod.yml").write_text(yaml.safe_dump({**base, "migrate": {"path": "db/migrations", "policy": "allow",
                                                                       "big_table_rows": 500}}))
    m = load_environment("prod", inv).migrate
    assert (m.path, m.policy, m.big_table_rows) == ("db/migrations", "allow", 500)
    (inv / "prod.yml").write_text(yaml.safe_dump({**base, "migrate": {"path": "../x", "policy": "yes",
                                                                       "big_table_rows": 0}}))
    with pytest.raises(InventoryError) as err:
        load_environment("prod", inv)
    text = str(err.value)
    assert "migrate.path: '../x' holds '..'" in text
    assert "migrate.policy: 'yes' is not valid — use ask (destructive or locking migrations need" in text
    assert "migrate.big_table_rows: must be an integer 1-1e+12, got 0" in text


def test_before_the_lock_a_lock_holder_is_only_noted_its_unfinished_row_may_be_a_deploy_migrating_now():
    holder = LockHolder(99, "", "172.31.250.11", "2026-11-29 11:00:00", "active", "")
    state = DbState(rows=[row("20240415120000_add_reactions", finished=False)], lock_holders=[holder])
    notes = refuse_failed(state, "prod", under_lock=False)
    assert len(notes) == 1 and "pid 99" in notes[0] and "checked again once the environment lock is held" in notes[0]
    with pytest.raises(MigratorRunning):
        refuse_failed(state, "prod", under_lock=True)
    with pytest.raises(FailedMigration):
        refuse_failed(DbState(rows=state.rows), "prod", under_lock=False)
