"""ops/backup/verify.py: what a restore drill compares, and how it names differences."""

from __future__ import annotations

import hashlib
import io
import re
from datetime import UTC, datetime

from ops.backup import verify
from ops.backup.manifest import Manifest
from ops.inventory import Host
from ops.postgres import PgTarget

T0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


def manifest(**kw) -> Manifest:
    base = dict(id="db-20261124T030000Z-a1b2c3", kind="db", env="sandbox",
                object_key="backups/sandbox/db/2026/11/24/db-20261124T030000Z-a1b2c3.dump", size=10,
                sha256="0" * 64, started_at=T0, finished_at=T0, newest_migration="20240212141500_add_uploads",
                table_counts={"public.users": 3, "public.uploads": 2},
                table_checksums={"public.users": "hashtext64:42", "public.uploads": "hashtext64:7"})
    base.update(kw)
    return Manifest(**base)


def test_identical_restore_has_no_problems():
    m = manifest()
    assert verify.compare(m, dict(m.table_counts), dict(m.table_checksums), m.newest_migration) == []


def test_a_row_count_difference_names_the_table_and_both_counts():
    m = manifest()
    problems = verify.compare(m, {"public.users": 2, "public.uploads": 2}, dict(m.table_checksums),
                              m.newest_migration)
    assert problems == ["table public.users: 3 rows in the manifest, 2 restored"]


def test_missing_and_unexpected_tables_are_both_reported():
    m = manifest()
    problems = verify.compare(m, {"public.users": 3, "public.extra": 1}, {}, m.newest_migration)
    assert "table public.uploads: 2 rows in the manifest but missing after restore" in problems
    assert "table public.extra: restored with 1 rows but not in the manifest" in problems


def test_same_count_but_different_rows_is_caught_by_the_checksum():
    m = manifest()
    problems = verify.compare(m, dict(m.table_counts), {"public.users": "hashtext64:43", "public.uploads": "hashtext64:7"},
                              m.newest_migration)
    assert problems == ["table public.users: row checksum differs from the manifest's (same row count)"]


def test_checksums_of_an_unknown_scheme_are_not_compared():
    m = manifest(table_checksums={"public.users": "sha1-of-something:abc"})
    assert verify.compare(m, dict(m.table_counts), {}, m.newest_migration) == []


def test_migration_head_mismatch_is_reported():
    m = manifest()
    assert verify.compare(m, dict(m.table_counts), dict(m.table_checksums), "20240105093000_init") == [
        "migration head: 20240212141500_add_uploads in the manifest, 20240105093000_init restored"]
    assert verify.compare(manifest(newest_migration=None), dict(m.table_counts), dict(m.table_checksums), None) == []


def test_scratch_database_names_are_safe_unique_and_short():
    a = verify.scratch_name("db-20261124T030000Z-a1b2c3")
    b = verify.scratch_name("db-20261124T030000Z-a1b2c3")
    assert re.fullmatch(r"ops_verify_db_20261124t030000z_a1b2c3_[0-9a-f]{4}", a)
    assert a != b and len(a.encode()) < 63


def test_hashing_reader_hashes_everything_even_what_is_drained_after_a_failure():
    data = b"0123456789" * 1000
    reader = verify.HashingReader(io.BytesIO(data))
    assert reader.read(100) == data[:100]
    reader.drain()
    assert reader.size == len(data) and reader.sha.hexdigest() == hashlib.sha256(data).hexdigest()


def test_checksum_problems_name_size_and_digest():
    m = manifest(size=5, sha256=hashlib.sha256(b"hello").hexdigest())
    good = verify.HashingReader(io.BytesIO(b"hello"))
    good.drain()
    assert verify._checksum_problems(m, good) == []
    bad = verify.HashingReader(io.BytesIO(b"hellO!"))
    bad.drain()
    problems = verify._checksum_problems(m, bad)
    assert problems[0] == "object is 6 bytes, manifest says 5" and problems[1].startswith("sha256 mismatch")


def test_scratch_database_commands_run_in_the_accessory_without_a_password_and_pg_restore_without_power():
    t = PgTarget(Host("db1", "127.0.0.1"), "athlete-platform-postgres", "athlete", "athlete", "pw-secret-123")
    assert verify.createdb_argv(t, "ops_verify_x") == (
        "docker", "exec", "athlete-platform-postgres", "createdb", "--no-password", "--username=athlete",
        "--template=template0", "--owner=ops_restore", "ops_verify_x")
    assert verify.dropdb_argv(t, "ops_verify_x")[-3:] == ("--if-exists", "--force", "ops_verify_x")
    # The drill's pg_restore connects as the restore role (never the superuser POSTGRES_USER).
    assert verify.pg_restore_argv(t, "ops_verify_x") == (
        "docker", "exec", "-i", "athlete-platform-postgres", "pg_restore", "--no-password",
        "--username=ops_restore", "--dbname=ops_verify_x", "--no-owner", "--exit-on-error")
