"""Counting a pgBackRest backup's bytes from its detail lines (bundled and plain repositories)."""

from ops.backup.pgbackrest_progress import BackupBytes
from ops.commands import pgbackrest as pgbr

LINES = (
    b"2026-11-30 02:30:00.001 P00   INFO: backup start archive = 000000010000000000000010, lsn = 0/10000028\n"
    b"2026-11-30 02:30:00.101 P01 DETAIL: backup file /var/lib/postgresql/data/base/5/16400 (1GB, 50.00%) "
    b"checksum 1f2e\n"
    b"2026-11-30 02:30:00.201 P02 DETAIL: backup file /var/lib/postgresql/data/base/5/1259 (bundle 1/0, 512MB, "
    b"75.00%) checksum 3c4d\n"
    b"2026-11-30 02:30:00.301 P01 DETAIL: match file from prior backup /var/lib/postgresql/data/global/1262 "
    b"(256MB, 87.50%) checksum 5e6f\n"
    b"2026-11-30 02:30:00.401 P00   WARN: a warning worth keeping\n"
    b"2026-11-30 02:30:00.501 P02 DETAIL: backup file /var/lib/postgresql/data/PG_VERSION (bundle 1/524288, 256MB, "
    b"100.00%) checksum 7a8b\n"
)


def test_the_sizes_add_up_and_the_total_is_pgbackrests_own():
    counts = BackupBytes()
    seen = []
    for i in range(0, len(LINES), 37):  # lines cut anywhere
        if counts.feed(LINES[i:i + 37]):
            seen.append((counts.done, counts.total))
    gib = 1024**3
    assert seen == [(gib, 2 * gib), (gib + gib // 2, 2 * gib), (gib + 3 * gib // 4, 2 * gib), (2 * gib, 2 * gib)]
    assert counts.last_lines(2)[-1].endswith("WARN: a warning worth keeping")


def test_no_total_before_one_percent_and_none_lines_change_nothing():
    counts = BackupBytes()
    assert not counts.feed(b"P00   INFO: backup start\n") and counts.total is None
    assert counts.feed(b"P01 DETAIL: backup file /d/base/1/2 (8KB, 0.50%) checksum x\n")
    assert counts.done == 8192 and counts.total is None


def test_the_backup_command_asks_for_detail_lines_only_when_counting():
    plain = pgbr.backup_argv("athlete-platform-postgres", "full", repo=2)
    counted = pgbr.backup_argv("athlete-platform-postgres", "full", repo=2, console="detail")
    assert "--log-level-console=detail" not in plain
    assert counted[-4:] == ("--log-level-console=detail", "--type=full", "--repo=2", "backup")


def test_a_restores_file_lines_count_the_same_way():
    counts = BackupBytes()
    assert counts.feed(b"P01 DETAIL: restore file /var/lib/postgresql/data/base/5/16400 (bundle 1/0, 3MB, 75.00%) "
                       b"checksum ab\n")
    assert (counts.done, counts.total) == (3 * 2**20, 4 * 2**20)
