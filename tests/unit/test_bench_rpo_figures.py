"""The backup benchmark's RPO and archive-lag arithmetic (bench/steady_writer.py): which rows a
restore to T must bring back, and how old the oldest not-yet-archived commit was."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bench.http_probe import Probe
from bench.steady_writer import Row, Sample, archive_lag, classify, wal_after

T0 = datetime(2026, 11, 30, 2, 0, 0, tzinfo=UTC)
SEG = "000000010000000000000{:03X}"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def row(i: int, began: float, acked: float, segment: int) -> Row:
    return Row(i, at(began), SEG.format(segment), at(acked))


def test_rows_acknowledged_before_t_must_come_back_and_rows_begun_after_it_must_not():
    rows = [row(1, 8.0, 8.01, 1), row(2, 9.99, 10.02, 1), row(3, 10.0, 10.0, 1), row(4, 10.3, 10.31, 1)]
    before, after, straddling = classify(rows, at(10))
    assert before == [1]
    assert after == [4]
    assert straddling == [2, 3]  # began by T, acknowledged at or after it: either outcome is right


def test_wal_files_compare_by_position_within_a_timeline():
    assert wal_after(SEG.format(0x10), SEG.format(0x0F))
    assert not wal_after(SEG.format(0x0F), SEG.format(0x0F))
    assert wal_after(SEG.format(1), None)  # nothing archived yet: everything waits


def test_archive_lag_is_the_age_of_the_oldest_commit_whose_wal_is_not_archived_yet():
    rows = [row(1, 0, 0.1, 5), row(2, 1, 1.1, 6), row(3, 2, 2.1, 6)]
    samples = [Sample(at(3), SEG.format(5), at(-20)),   # segment 6 waits since row 2 (1.9 s)
               Sample(at(30), SEG.format(5), at(-20)),  # still waiting: 28.9 s; newest archived is 50 s old
               Sample(at(31), SEG.format(6), at(30.5))]  # archived: nothing waits
    newest_age, oldest_unarchived = archive_lag(rows, samples)
    assert round(oldest_unarchived, 1) == 28.9
    assert round(newest_age, 1) == 50.0


def test_rows_acknowledged_after_a_sample_do_not_count_as_waiting_at_it():
    rows = [row(1, 5, 5.1, 9)]
    assert archive_lag(rows, [Sample(at(4), SEG.format(8), at(3))])[1] == 0.0


def test_an_outage_runs_from_the_first_bad_answer_to_the_next_good_one_per_host():
    p = Probe(0)
    p.records = [(0.0, "web1", "200"), (0.0, "web2", "200"), (1.0, "web1", "503"), (1.0, "web2", "200"),
                 (2.0, "web1", "ConnectionRefusedError"), (3.5, "web1", "200"), (4.0, "web1", "503"),
                 (4.5, "web1", "503")]
    assert p.outages("web1") == [(1.0, 3.5), (4.0, 4.5)]  # the last one still open at the last sample
    assert p.unavailable_seconds("web1") == 3.0
    assert p.outages("web2") == [] and p.unavailable_seconds("web2") == 0
