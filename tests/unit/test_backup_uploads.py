"""ops/backup/uploads.py: the one-off tar container and its stats line."""

from __future__ import annotations

import pytest

from ops.backup import uploads
from ops.backup.context import BackupFailed
from ops.inventory import load_environment


def test_tar_container_mounts_the_volume_read_only_without_network_or_logs():
    env = load_environment("sandbox")
    argv = uploads.tar_argv(env, "localhost:5000/athlete-platform/web:abc", name="athlete-platform-backup-x")
    assert argv == (
        "docker", "run", "--rm", "--name", "athlete-platform-backup-x", "--network", "none",
        "-v", "athlete-platform-uploads:/data:ro", "--label", "ops.app=athlete-platform",
        "--label", "ops.role=backup", "--entrypoint", "sh", "--log-driver", "none",
        "localhost:5000/athlete-platform/web:abc", "-c", uploads.SCRIPT)
    # NOTE: not -d and no -i: stdout is the archive; the json-file driver would copy it to disk.
    assert "-d" not in argv and "-i" not in argv


def test_script_archives_then_counts_and_fails_only_on_a_fatal_tar_error():
    assert uploads.SCRIPT.startswith("cd /data || exit 2; tar --exclude='./.restore-*' "
                                     "--exclude='./.before-restore-*' -czf - .; rc=$?; [ $rc -le 1 ] || exit $rc; find")
    assert uploads.SCRIPT.endswith(">&2")


def test_script_leaves_out_the_work_dirs_of_an_uploads_restore(tmp_path):
    import io
    import subprocess
    import tarfile

    data = tmp_path / "data"
    for rel in ("a.txt", ".restore-1/b", ".before-restore-2/c"):
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_text("x")
    proc = subprocess.run(["sh", "-c", uploads.SCRIPT.replace("/data", str(data))], capture_output=True, timeout=30)
    assert tarfile.open(fileobj=io.BytesIO(proc.stdout)).getnames() == [".", "./a.txt"]
    assert uploads.parse_stats(proc.stderr.decode()) == (1, 1)


def test_stats_are_read_from_the_last_stats_line():
    stderr = "tar: ./x: file changed as we read it\nops-uploads-stats files=3 bytes=1200\n"
    assert uploads.parse_stats(stderr) == (3, 1200)


def test_missing_stats_line_fails_the_backup():
    with pytest.raises(BackupFailed, match="file count line is missing"):
        uploads.parse_stats("sh: find: not found\n")
