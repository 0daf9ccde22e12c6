"""ops/commands: every interpolated value reaches the shell as one literal word.

The rendered lines are fed to a local ``bash -c`` (no remote host): if a value
were split, globbed or executed, the output or the marker file would show it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ops.commands import ShellLine, pipeline, render, shell

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


# (id, value); "{m}" stands for the marker file a successful injection would create.
HOSTILE = [
    ("semicolon", "a b;touch {m}"),
    ("dollar-paren", "$(touch {m})"),
    ("backticks", "`touch {m}`"),
    ("and-or", "x && touch {m} || touch {m}"),
    ("single-quote", "'; touch {m}; echo '"),
    ("double-quote", '"; touch {m}; echo "'),
    ("newlines", "line1\ntouch {m}\nline3"),
    ("pipe", "a | tee {m}"),
    ("redirect", "> {m}"),
    ("expansions", "$HOME ${PATH} $((1+1)) !! ~"),
    ("globs", "* ? [a-z] {a,b}"),
    ("backslashes", "back\\slash\\n\\"),
    ("whitespace", "tab\there  two  spaces "),
    ("dash-n", "-n"),
    ("dash-dash", "--help"),
    ("empty", ""),
    ("unicode", "ünïcødé ☃"),
]
HOSTILE_IDS = [name for name, _ in HOSTILE]


def hostile(index: int, marker: Path) -> str:
    return HOSTILE[index][1].replace("{m}", str(marker))


def hostile_values(marker: Path) -> list[str]:
    return [hostile(i, marker) for i in range(len(HOSTILE))]


def bash(line: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", line], cwd=cwd, capture_output=True, text=True, timeout=10)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    # Files for an unquoted '*' or '?' to expand to, should quoting fail.
    (tmp_path / "glob-bait-1").write_text("")
    (tmp_path / "glob-bait-2").write_text("")
    return tmp_path


@pytest.mark.parametrize("index", range(len(HOSTILE_IDS)), ids=HOSTILE_IDS)
def test_shell_value_comes_out_as_one_literal_word(workdir, index):
    marker = workdir / "pwned"
    value = hostile(index, marker)

    line = shell("printf '%s\\n' {value}", value=value)
    res = bash(line, workdir)

    assert res.returncode == 0, res.stderr
    assert res.stdout == value + "\n"
    assert not marker.exists()


@pytest.mark.parametrize("index", range(len(HOSTILE_IDS)), ids=HOSTILE_IDS)
def test_shell_value_is_exactly_one_argument(workdir, index):
    marker = workdir / "pwned"
    value = hostile(index, marker)

    res = bash(shell('set -- {value}; printf "%s\\n" "$#"', value=value), workdir)

    assert res.stdout == "1\n"
    assert not marker.exists()


@pytest.mark.parametrize("index", range(len(HOSTILE_IDS)), ids=HOSTILE_IDS)
def test_render_argv_keeps_each_hostile_part_literal(workdir, index):
    marker = workdir / "pwned"
    value = hostile(index, marker)

    line = render(("printf", "[%s]\\n", value, "after"))
    res = bash(line, workdir)

    assert res.returncode == 0, res.stderr
    assert res.stdout == f"[{value}]\n[after]\n"
    assert not marker.exists()


def test_shell_quotes_every_placeholder_and_leaves_the_template_alone(workdir):
    marker = workdir / "pwned"
    line = shell("printf '%s|%s\\n' {a} {b}", a=f"$(touch {marker})", b="x y")
    assert isinstance(line, ShellLine)
    assert line == f"printf '%s|%s\\n' '$(touch {marker})' 'x y'"
    assert bash(line, workdir).stdout == f"$(touch {marker})|x y\n"
    assert not marker.exists()


def test_shell_stringifies_non_string_values():
    assert shell("sleep {n}; ls {p}", n=5, p=Path("/srv/my app")) == "sleep 5; ls '/srv/my app'"


def test_shell_without_values_returns_the_template():
    assert shell("true") == "true"


def test_render_refuses_a_plain_str():
    with pytest.raises(TypeError, match=r"^a plain str is not a command: pass an argv tuple or build a ShellLine"
                                        r" with shell\(\)$"):
        render("rm -rf /tmp/x")


def test_render_passes_a_shell_line_through_unchanged():
    line = shell("cd {d} && ls", d="/srv/a b")
    assert render(line) == "cd '/srv/a b' && ls"
    assert type(render(line)) is str


def test_render_accepts_lists_and_stringifies_parts():
    assert render(["docker", "run", "--memory", 512, Path("/srv/app")]) == "docker run --memory 512 /srv/app"
    assert render(("echo", "it's")) == "echo 'it'\"'\"'s'"


def test_render_of_an_empty_argv_is_empty():
    assert render(()) == ""


def test_pipeline_adds_pipefail_and_quotes_each_argv():
    line = pipeline(("pg_dump", "--dbname", "my db"), ("gzip", "-c"), ("tee", "/backups/a b.gz"))
    assert isinstance(line, ShellLine)
    assert line == ("bash -o pipefail -c 'pg_dump --dbname '\"'\"'my db'\"'\"' | gzip -c | "
                    "tee '\"'\"'/backups/a b.gz'\"'\"''")


def test_pipeline_of_one_command_has_no_pipefail():
    assert pipeline(("echo", "a b")) == "echo 'a b'"


def test_pipeline_stringifies_parts():
    assert pipeline(("head", "-c", 10), ("wc", "-c")) == "bash -o pipefail -c 'head -c 10 | wc -c'"


def test_pipeline_keeps_pipefail_when_the_login_shell_is_dash(workdir):
    # Debian's useradd gives /bin/sh (dash) by default, which has no pipefail.
    res = subprocess.run(["dash", "-c", pipeline(("sh", "-c", "exit 3"), ("cat",))], capture_output=True, text=True)
    assert res.returncode == 3, res.stderr


def test_pipeline_carries_hostile_values_literally(workdir):
    marker = workdir / "pwned"
    for value in hostile_values(marker):
        res = bash(pipeline(("printf", "%s\\n", value), ("cat",)), workdir)
        assert res.returncode == 0, res.stderr
        assert res.stdout == value + "\n"
    assert not marker.exists()


def test_pipeline_fails_when_an_early_stage_fails(workdir):
    res = bash(pipeline(("sh", "-c", "echo partial; exit 3"), ("cat",)), workdir)
    assert res.stdout == "partial\n"
    assert res.returncode == 3

    without_pipefail = bash("sh -c 'echo partial; exit 3' | cat", workdir)
    assert without_pipefail.returncode == 0


def test_the_harness_would_catch_an_unquoted_value(workdir):
    # Control: the same template filled *without* shell() runs the injection.
    marker = workdir / "pwned"
    value = hostile(0, marker)
    res = bash(f"printf '%s\\n' {value}", workdir)
    assert res.stdout != value + "\n"
    assert marker.exists()
