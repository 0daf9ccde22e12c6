"""The fault-injection toolkit: break one thing on the real fleet, watch the CLI, check the aftermath.

Every case checks the same four things (see ``assert_*``): the web hosts serve one
version (through nginx), the environment lock is free (or reported stale with the
command to release it), nothing is lost, and the operator saw one clear error.
"""

from __future__ import annotations

import json
import os
import queue
import re
import secrets
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import yaml

from ops.appenv import load_env_file
from ops.inventory import Environment
from ops.sandbox import services
from ops.sandbox.fleet import container_name
from tests.support.fleet import INV, ROOT

WEB_PORTS = {"web1": 8101, "web2": 8102}
DB_PORT = 15432
HOSTS = ("web1", "web2", "db1")
INV_TIMEOUT = 300
FAULT_MARKER_TABLE = "faults_marker"


# ---------------------------------------------------------------- what the site serves


def get(port: int, path: str = "/api/info", timeout: float = 5) -> tuple[int, dict]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            resp.read()
            return resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)
    except (urllib.error.URLError, OSError):
        return 0, {}


def served() -> dict[str, tuple[int, str]]:
    """host -> (HTTP status, X-App-Version) of GET /api/info through that host's nginx."""
    out = {}
    for name, port in WEB_PORTS.items():
        status, headers = get(port)
        out[name] = (status, headers.get("X-App-Version", "?"))
    return out


def wait_serving(timeout: float = 90) -> dict[str, tuple[int, str]]:
    """Wait (bounded) until every web host answers 200; return what each serves."""
    deadline = time.monotonic() + timeout
    while True:
        now = served()
        if all(status == 200 for status, _ in now.values()) or time.monotonic() > deadline:
            return now
        time.sleep(1)


def assert_one_version(allowed: set[str] | None = None, timeout: float = 90) -> str:
    """(a) every web host answers 200 with the same X-App-Version (one of ``allowed``)."""
    now = wait_serving(timeout)
    assert all(status == 200 for status, _ in now.values()), f"a web host does not serve: {now}"
    versions = {v for _, v in now.values()}
    assert len(versions) == 1, f"mixed versions served: {now}"
    version = versions.pop()
    if allowed is not None:
        assert version in allowed, f"serves {version}, expected one of {sorted(allowed)}: {now}"
    return version


# ---------------------------------------------------------------- the CLI


@dataclass
class Outcome:
    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:
        return f"inv {' '.join(self.args)} -> exit {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"

    @property
    def first_error_line(self) -> str:
        for line in self.output.splitlines():
            if "error" in line.lower():
                return line
        lines = [ln for ln in self.output.splitlines() if ln.strip()]
        return lines[-1] if lines else ""


def run_inv(*args: str, timeout: float = INV_TIMEOUT, input: str | None = None, env: dict | None = None) -> Outcome:
    proc = subprocess.run([INV, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          input=input, stdin=None if input is not None else subprocess.DEVNULL,
                          env={**os.environ, **(env or {})})
    return Outcome(tuple(args), proc.returncode, proc.stdout, proc.stderr)


class Running:
    """``inv`` in the background, its output read line by line (so a test can act on a given step)."""

    def __init__(self, *args: str):
        self.args = tuple(args)
        self.proc = subprocess.Popen([INV, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, stdin=subprocess.DEVNULL, start_new_session=False)
        self.lines: list[str] = []
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._q: queue.Queue[str] = queue.Queue()
        self._readers = [threading.Thread(target=self._read, args=(s, sink), daemon=True)
                         for s, sink in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr))]
        for t in self._readers:
            t.start()

    def _read(self, stream, sink) -> None:
        for line in stream:
            sink.append(line)
            self.lines.append(line)
            self._q.put(line)

    def wait_for(self, pattern: str, timeout: float = 240) -> str:
        """Block until a line matches ``pattern`` (regex); fail with what was seen."""
        rx = re.compile(pattern)
        for line in list(self.lines):
            if rx.search(line):
                return line
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._q.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None and self._q.empty():
                    break
                continue
            if rx.search(line):
                return line
        raise AssertionError(f"no line matching {pattern!r} from inv {' '.join(self.args)} "
                             f"(exit {self.proc.poll()}):\n{''.join(self.lines)}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def finish(self, timeout: float = INV_TIMEOUT) -> Outcome:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
            raise AssertionError(
                f"inv {' '.join(self.args)} still running after {timeout}s:\n{''.join(self.lines)}") from None
        for t in self._readers:
            t.join(timeout=10)
        return Outcome(self.args, self.proc.returncode, "".join(self.stdout), "".join(self.stderr))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def assert_one_clear_error(out: Outcome, code: int, *words: str) -> None:
    """(d) no traceback; the exit code says failed (1) or bad input/config (2); the message names the cause."""
    assert "Traceback" not in out.output, str(out)
    assert out.code == code, str(out)
    text = out.output.lower()
    for word in words:
        assert word.lower() in text, f"{word!r} not named in the error:\n{out}"


def error_lines(out: Outcome) -> list[str]:
    return [ln for ln in out.output.splitlines() if ln.lower().startswith("error")]


# ---------------------------------------------------------------- the lock


def lock_status() -> Outcome:
    return run_inv("lock.status", "--host", "sandbox", timeout=120)


def host_rows(out: Outcome) -> dict[str, str]:
    """``inv lock.status`` table row of each host ("" when it has none)."""
    return {name: next((ln for ln in out.stdout.splitlines() if ln.split()[:1] == [name]), "") for name in HOSTS}


def row_free(row: str) -> bool:
    """Every lock on the row (the environment lock, the backup lock) says free."""
    return bool(row.split()[1:]) and all(word == "free" for word in row.split()[1:])


def assert_lock_free() -> None:
    """(b) every lock (environment and backup) is free on every host."""
    out = lock_status()
    assert out.code == 0 and "Traceback" not in out.output, str(out)
    for name, row in host_rows(out).items():
        assert row_free(row), f"lock not free on {name}:\n{out}"


def assert_lock_free_or_stale(timeout: float = 120) -> str:
    """(b) free, or reported stale with the exact command that releases it. Returns which."""
    deadline = time.monotonic() + timeout
    while True:
        out = lock_status()
        assert "Traceback" not in out.output, str(out)
        if all(row_free(row) for row in host_rows(out).values()):
            return "free"
        if "stale" in out.output.lower():
            assert "inv lock.release --host sandbox" in out.output, str(out)
            return "stale"
        if time.monotonic() > deadline:
            raise AssertionError(f"lock neither free nor reported stale after {timeout}s:\n{out}")
        time.sleep(5)


def force_release_lock() -> None:
    run_inv("lock.release", "--host", "sandbox", "--yes", timeout=120)


# ---------------------------------------------------------------- hosts, registry, S3


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=check,
                          stdin=subprocess.DEVNULL)


def stop_host(name: str) -> None:
    docker("stop", "-t", "2", container_name(name), timeout=90)


def host_running(name: str) -> bool:
    res = docker("inspect", "--format", "{{.State.Running}}", container_name(name), check=False, timeout=30)
    return res.stdout.strip() == "true"


def host_has_file(name: str, path: str) -> bool:
    return docker("exec", container_name(name), "test", "-e", path, check=False, timeout=30).returncode == 0


def stop_service(env: Environment, name: str) -> None:
    """Stop the sandbox registry or S3 endpoint (a process on this machine, by its pid file)."""
    services.stop(services.services(env)[name])


def service_running(env: Environment, name: str) -> bool:
    return services.running_pid(services.services(env)[name]) is not None


def registry_tag_exists(env: Environment, tag: str) -> bool:
    repo = env.image.split("/", 1)[1] if "." in env.image.split("/")[0] or ":" in env.image.split("/")[0] \
        else env.image
    req = urllib.request.Request(f"http://{env.registry.url}/v2/{repo}/manifests/{tag}", method="HEAD", headers={
        "Accept": "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=5) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def nonce() -> str:
    return secrets.token_hex(3)


# ---------------------------------------------------------------- the database


def app_values(env: Environment) -> dict[str, str]:
    return load_env_file(env.env_file)


def db_conn(env: Environment, dbname: str | None = None):
    from ops.postgres import DatabaseURL

    url = DatabaseURL.parse(app_values(env)["DATABASE_URL"])
    return psycopg.connect(host="127.0.0.1", port=DB_PORT, user=url.user, password=url.password,
                           dbname=dbname or url.dbname, autocommit=True, connect_timeout=5)


def write_marker_rows(env: Environment, n: int = 5) -> list[str]:
    """Rows written before a fault: they must survive it."""
    values = [f"fault-{nonce()}-{i}" for i in range(n)]
    with db_conn(env) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {FAULT_MARKER_TABLE} (v text PRIMARY KEY, at timestamptz DEFAULT now())")
        conn.cursor().executemany(f"INSERT INTO {FAULT_MARKER_TABLE} (v) VALUES (%s)", [(v,) for v in values])
    return values


def assert_rows_still_there(env: Environment, values: list[str], timeout: float = 120) -> None:
    """(c) the rows written before the fault are still in the live database (waits for Postgres to answer)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with db_conn(env) as conn:
                found = {r[0] for r in conn.execute(f"SELECT v FROM {FAULT_MARKER_TABLE} WHERE v = ANY(%s)",
                                                    (values,)).fetchall()}
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)
    assert found == set(values), f"lost rows: {sorted(set(values) - found)}"


@contextmanager
def ballast(env: Environment, rows: int = 400_000) -> Iterator[None]:
    """A temporary table big enough that a dump takes seconds (room to cut it mid-stream)."""
    with db_conn(env) as conn:
        conn.execute("DROP TABLE IF EXISTS faults_ballast")
        conn.execute("CREATE TABLE faults_ballast AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) || "
                     f"md5((g * 13)::text) AS pad FROM generate_series(1, {int(rows)}) g")
    try:
        yield
    finally:
        deadline = time.monotonic() + 120
        while True:
            try:
                with db_conn(env) as conn:
                    conn.execute("DROP TABLE IF EXISTS faults_ballast")
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(2)


# ---------------------------------------------------------------- the backup catalog


def catalog_ids() -> set[str]:
    """Every backup id ``inv backup.list --json`` lists (envelope or bare list)."""
    out = run_inv("backup.list", "--host", "sandbox", "--json", timeout=120)
    assert out.code == 0 and "Traceback" not in out.output, str(out)
    data = json.loads(out.stdout)
    if isinstance(data, dict) and "data" in data:
        data = data["data"]
    if isinstance(data, dict):
        data = data.get("backups", data.get("manifests", []))
    return {item["id"] for item in data}


def s3_snapshot(env: Environment) -> dict[tuple[str, str], bytes]:
    """Every object of the sandbox's backup buckets, the second copy's (s3.copy) and the pgBackRest
    repositories' included: the S3 endpoint keeps them in memory only. Keyed by (bucket, key)."""
    client = services.s3_client(env)
    out = {}
    buckets = {env.s3.bucket, *([env.s3.copy.bucket] if env.s3.copy else []),
               *(r.bucket for r in (env.pitr.repos if env.pitr else ()))}
    for bucket in sorted(buckets):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                out[bucket, obj["Key"]] = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


def s3_restore(env: Environment, objects: dict[tuple[str, str], bytes]) -> None:
    services.ensure_bucket(env)
    client = services.s3_client(env)
    for (bucket, key), body in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)


# ---------------------------------------------------------------- copied inventories


@contextmanager
def inventory_copy(env: Environment, **changes) -> Iterator[str]:
    """A copy of inventory/sandbox.yml under a throwaway environment name, with top-level keys changed.

    NOTE: ``--host`` only takes names of files in inventory/, so the copy lives there for the
    length of the block (a unique name; removed on every exit path). The real sandbox.yml and
    .sandbox/known_hosts are never touched.
    """
    raw = yaml.safe_load(env.path.read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    name = f"faults-{nonce()}"
    path = ROOT / "inventory" / f"{name}.yml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    try:
        yield name
    finally:
        path.unlink(missing_ok=True)


def assert_interrupted_cleanly(out) -> None:
    """(d) for Ctrl-C: exit 1 or 130, says it was interrupted, no traceback."""
    assert "Traceback" not in out.output, str(out)
    assert out.code in (1, 130), str(out)
    assert "interrupt" in out.output.lower(), str(out)


def interrupt_twice(run: Running, gap: float = 1.0) -> None:
    run.signal(signal.SIGINT)
    time.sleep(gap)
    if run.proc.poll() is None:
        run.signal(signal.SIGINT)


def releases_json(env_name: str = "sandbox") -> dict:
    out = run_inv("releases", "--host", env_name, "--json", timeout=120)
    assert out.code == 0, str(out)
    data = json.loads(out.stdout)
    if isinstance(data, dict) and "data" in data and "ok" in data:
        data = data["data"]
    return data


def release_ids(data: dict) -> dict[str, list[str]]:
    return {host: [r["id"] for r in entry["releases"]] for host, entry in data.items()}


def current_ids(data: dict) -> dict[str, str]:
    return {host: entry["current"] for host, entry in data.items()}


def known_hosts_path(env: Environment) -> Path:
    return env.ssh.known_hosts
