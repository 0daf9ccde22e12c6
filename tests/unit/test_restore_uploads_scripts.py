"""The shell scripts of restore.uploads, run here with sh on a temp dir standing in for /data."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

from ops.restore.uploads import ASIDE_RE, CLEANUP_SCRIPT, EXTRACT_SCRIPT, STATS_RE, SWAP_SCRIPT

TS = "20261124_030000"


def run(script: str, data: Path, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", script.replace("/data", str(data)), "sh", TS], input=stdin,
                          capture_output=True, timeout=30)


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def archive(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    return buf.getvalue()


def test_extract_unpacks_beside_the_live_files_and_counts_them(tmp_path):
    (tmp_path / "live.txt").write_text("live")
    res = run(EXTRACT_SCRIPT, tmp_path, archive({"a.png": "A", "sub/b.pdf": "B", ".hidden": "H"}))
    assert res.returncode == 0, res.stderr
    assert STATS_RE.findall(res.stdout.decode()) == ["3"]
    assert tree(tmp_path) == {"live.txt": "live", f".restore-{TS}/a.png": "A", f".restore-{TS}/sub/b.pdf": "B",
                              f".restore-{TS}/.hidden": "H"}


def test_extract_of_a_truncated_archive_fails(tmp_path):
    res = run(EXTRACT_SCRIPT, tmp_path, archive({"a.png": "A" * 5000})[:40])
    assert res.returncode != 0
    assert not STATS_RE.findall(res.stdout.decode())


def test_swap_moves_the_live_files_aside_and_the_restored_ones_in(tmp_path):
    (tmp_path / "old.txt").write_text("old")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "x.txt").write_text("x")
    (tmp_path / ".before-restore-earlier").mkdir()
    (tmp_path / ".before-restore-earlier" / "e.txt").write_text("e")
    new = tmp_path / f".restore-{TS}"
    (new / "dir").mkdir(parents=True)
    (new / "new.txt").write_text("new")
    (new / "dir" / "y.txt").write_text("y")
    (tmp_path / "both.txt").write_text("live copy")
    (new / "both.txt").write_text("backup copy")
    res = run(SWAP_SCRIPT, tmp_path)
    assert res.returncode == 0, res.stderr
    assert b"ops-restore-swapped" in res.stdout
    assert tree(tmp_path) == {
        "new.txt": "new", "dir/y.txt": "y", "both.txt": "backup copy",
        f".before-restore-{TS}/old.txt": "old", f".before-restore-{TS}/dir/x.txt": "x",
        f".before-restore-{TS}/both.txt": "live copy", ".before-restore-earlier/e.txt": "e"}
    # Files only in the live uploads (e.g. uploaded through this host after the backup) are named.
    assert sorted(ASIDE_RE.findall(res.stdout.decode())) == ["dir/x.txt", "old.txt"]


def test_swap_refuses_without_an_extracted_copy_and_changes_nothing(tmp_path):
    (tmp_path / "old.txt").write_text("old")
    res = run(SWAP_SCRIPT, tmp_path)
    assert res.returncode != 0
    assert tree(tmp_path) == {"old.txt": "old"}


def test_swap_refuses_when_the_aside_directory_exists_and_changes_nothing(tmp_path):
    (tmp_path / "old.txt").write_text("old")
    (tmp_path / f".restore-{TS}").mkdir()
    (tmp_path / f".restore-{TS}" / "new.txt").write_text("new")
    (tmp_path / f".before-restore-{TS}").mkdir()
    res = run(SWAP_SCRIPT, tmp_path)
    assert res.returncode != 0
    assert tree(tmp_path) == {"old.txt": "old", f".restore-{TS}/new.txt": "new"}


def test_cleanup_removes_only_the_extracted_copy(tmp_path):
    (tmp_path / "old.txt").write_text("old")
    (tmp_path / f".restore-{TS}").mkdir()
    (tmp_path / f".restore-{TS}" / "new.txt").write_text("new")
    assert run(CLEANUP_SCRIPT, tmp_path).returncode == 0
    assert tree(tmp_path) == {"old.txt": "old"}
