"""ops/doctor.py pure parts: df parsing, clock skew, the df command, reports."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from ops.commands import ShellLine
from ops.doctor import GIB, Check, HostReport, clock_skew, df_command, parse_df

GNU_DF = """\
Filesystem     1024-blocks     Used Available Capacity Mounted on
/dev/sda1         41152736  9876544  29162440      26% /
"""

# Under -P a long device name never wraps onto a second line (GNU and BusyBox alike).
LONG_NAME_DF = """\
Filesystem                                        1024-blocks     Used Available Capacity Mounted on
/dev/mapper/ubuntu--vg-ubuntu--lv--docker--data--volume  102626232 55555000  41800000      58% /var/lib/docker
"""

BUSYBOX_DF = """\
Filesystem           1024-blocks    Used Available Capacity Mounted on
overlay                 61255492  16234560  41877844  28% /
"""

TMPFS_DF = """\
Filesystem     1024-blocks  Used Available Capacity Mounted on
tmpfs               524288     0    524288       0% /srv/athlete-platform
"""


@pytest.mark.parametrize(
    ("output", "free_kib", "mount"),
    [
        (GNU_DF, 29162440, "/"),
        (LONG_NAME_DF, 41800000, "/var/lib/docker"),
        (BUSYBOX_DF, 41877844, "/"),
        (TMPFS_DF, 524288, "/srv/athlete-platform"),
    ],
    ids=["gnu", "long-filesystem-name", "busybox-overlay", "tmpfs"],
)
def test_parse_df_reads_available_bytes_and_mount_point(output, free_kib, mount):
    assert parse_df(output) == (free_kib * 1024, mount)


def test_parse_df_ignores_surrounding_blank_lines_and_whitespace():
    assert parse_df("\n\n" + GNU_DF + "\n  \n") == (29162440 * 1024, "/")


def test_parse_df_uses_the_last_line():
    two = GNU_DF + "/dev/sdb1 1000 10 900 2% /data\n"
    assert parse_df(two) == (900 * 1024, "/data")


def test_parse_df_of_a_full_disk_is_zero():
    full = "Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/sda1 1000 1000 0 100% /\n"
    assert parse_df(full) == (0, "/")


@pytest.mark.parametrize("output", ["", "\n", "Filesystem     1024-blocks     Used Available Capacity Mounted on\n"])
def test_parse_df_without_a_data_line_raises_value_error(output):
    with pytest.raises(ValueError) as excinfo:
        parse_df(output)
    assert str(excinfo.value) == f"unexpected df output: {output!r}"


def test_parse_df_of_garbage_raises_an_error_doctor_catches():
    # examine() catches (ValueError, IndexError) and reports 'cannot read free space'.
    with pytest.raises((ValueError, IndexError)):
        parse_df("df: /nope: No such file or directory\nsomething odd\n")
    with pytest.raises((ValueError, IndexError)):
        parse_df("Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/sda1 1 2\n")


def test_parse_df_keeps_a_mount_point_with_spaces():
    out = "Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/sdb1 1000 10 900 2% /mnt/backup disk\n"
    assert parse_df(out) == (900 * 1024, "/mnt/backup disk")


# -- clock skew -------------------------------------------------------------------------


def test_clock_skew_is_measured_against_the_round_trip_midpoint():
    assert clock_skew(100.0, 105.0, 102.0) == (4.0, 1.0)


def test_clock_skew_is_negative_when_the_host_is_behind():
    skew, uncertainty = clock_skew(1000.0, 999.5, 1000.2)
    assert skew == pytest.approx(-0.6)
    assert uncertainty == pytest.approx(0.1)


def test_clock_skew_of_an_instant_round_trip_has_no_uncertainty():
    assert clock_skew(1_700_000_000.25, 1_700_000_000.25, 1_700_000_000.25) == (0.0, 0.0)


def test_clock_skew_with_real_epoch_values_keeps_millisecond_precision():
    skew, uncertainty = clock_skew(1_717_000_000.100, 1_717_000_003.350, 1_717_000_000.300)
    assert skew == pytest.approx(3.15, abs=1e-6)
    assert uncertainty == pytest.approx(0.1, abs=1e-6)


# -- df_command --------------------------------------------------------------------


def test_df_command_quotes_the_path():
    cmd = df_command("/srv/my app;rm -rf /")
    assert isinstance(cmd, ShellLine)
    assert cmd == ("d='/srv/my app;rm -rf /'; while [ ! -e \"$d\" ]; do d=$(dirname \"$d\"); done; "
                   "df -Pk \"$d\"")


@pytest.mark.skipif(shutil.which("df") is None or shutil.which("bash") is None, reason="needs df and bash")
def test_df_command_walks_up_to_an_existing_directory_and_parses(tmp_path):
    marker = tmp_path / "pwned"
    missing = tmp_path / "not yet" / f"$(touch {marker})" / "releases"

    res = subprocess.run(["bash", "-c", df_command(str(missing))], capture_output=True, text=True, timeout=10)

    assert res.returncode == 0, res.stderr
    free, mount = parse_df(res.stdout)
    assert free >= 0
    assert mount.startswith("/")
    assert not marker.exists()


# -- reports -------------------------------------------------------------------------


def test_host_report_is_ok_only_with_checks_that_all_pass():
    report = HostReport("web1")
    assert report.ok is False  # no checks means nothing was verified
    report.add("ssh", True, "connect 12 ms")
    assert report.ok is True
    report.add("clock", False, "skew +5.000 s")
    assert report.ok is False


def test_host_report_to_dict_shape():
    report = HostReport("db1", [Check("ssh", True, "ok"), Check("disk app", False, "0.5 GiB free on /")])
    assert report.to_dict() == {
        "host": "db1",
        "ok": False,
        "checks": [
            {"name": "ssh", "ok": True, "detail": "ok"},
            {"name": "disk app", "ok": False, "detail": "0.5 GiB free on /"},
        ],
    }


def test_gib_is_binary():
    assert GIB == 1073741824
