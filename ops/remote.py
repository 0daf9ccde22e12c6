"""THE gateway to hosts. Every remote command in this project goes through here.

Why one place:
- the session: no Fabric/Invoke config file or FABRIC_* variable, no ~/.ssh/config,
  no agent (used or forwarded), no gateway; keepalives on; timeouts everywhere;
- host keys: Fabric auto-accepts unknown host keys and ignores known_hosts by
  default. Here every connection loads the project's known_hosts and refuses any
  key that is not in it (paramiko RejectPolicy), with the fingerprint in the error;
- quoting: commands are argv tuples or ``ShellLine``s (see ``ops.commands``);
- secrets: everything printed or put in an error passes through the ``Masker``;
- dry-run: mutating calls are recorded and printed as the plan, never run;
- parallelism: ``map`` runs a function over hosts with a bound, and aggregates
  results and errors per host, so one dead host never hides the others.
"""

from __future__ import annotations

import contextlib
import io
import logging
import selectors
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import fabric
import invoke
import paramiko

from ops.commands import ShellLine, render
from ops.errors import (
    CommandTimeout,
    ConfigError,
    HostError,
    HostKeyError,
    HostUnreachable,
    OpsError,
    RemoteCommandFailed,
)
from ops.interrupts import deferred_ctrl_c
from ops.inventory import Environment, Host
from ops.known_hosts import fingerprint, host_pattern
from ops.masking import Masker

T = TypeVar("T")
Command = Sequence[str] | ShellLine

STDERR_TAIL_BYTES = 16 * 1024
PIPE_CHUNK = 1024 * 1024
# A restore of a large database may legitimately run for hours after its input ends.
PIPE_FINISH_TIMEOUT = 6 * 3600.0

# NOTE: paramiko's transport thread logs a full traceback for a host that drops the
# connection (e.g. during boot). We report that failure ourselves, on one line; its
# log stays available to whoever configures logging for "paramiko" on purpose.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").propagate = False


class SealedConfig(fabric.Config):
    """A Fabric config made of Fabric's defaults and our overrides, nothing else.

    NOTE: ``fabric.Config()`` reads /etc/fabric.* and ~/.fabric.{yaml,yml,json,py} in
    its constructor and again in ``clone()``; a ``forward_agent: true`` or an
    ``authentication.strategy_class`` there would reach every host we open. Every
    loader (system, user, project, runtime files, FABRIC_* env vars, ssh_config) is
    a no-op here, so the session is exactly what the inventory says.
    """

    def load_base_conf_files(self) -> None:
        pass

    def load_system(self, merge: bool = True) -> None:
        pass

    def load_user(self, merge: bool = True) -> None:
        pass

    def load_project(self, merge: bool = True) -> None:
        pass

    def load_runtime(self, merge: bool = True) -> None:
        pass

    def load_shell_env(self) -> None:
        pass

    def load_ssh_config(self) -> None:
        pass


def sealed_config(connect_timeout: float) -> SealedConfig:
    return SealedConfig(
        lazy=True, ssh_config=paramiko.SSHConfig(),
        overrides={"load_ssh_configs": False, "forward_agent": False, "gateway": None,
                   "connect_kwargs": {}, "authentication": {"identities": [], "strategy_class": None},
                   "timeouts": {"connect": connect_timeout}, "run": {"in_stream": False}})


def check_key_file(path: Path, inventory: str) -> None:
    """Raise a ``ConfigError`` naming the real problem with ``ssh.key``, before any connect.

    NOTE: paramiko reports a missing, unreadable or passphrase-protected key as a
    generic connect/auth failure ("is the host up?"), which sends people the wrong way.
    """
    fix = f"set ssh.key in {inventory} to the deploy key's private key file"
    if not path.exists():
        raise ConfigError(f"SSH key file {path} not found", hint=fix)
    if not path.is_file():
        raise ConfigError(f"SSH key file {path} is not a regular file", hint=fix)
    try:
        paramiko.PKey.from_path(path)
    except PermissionError:
        raise ConfigError(f"SSH key file {path} is not readable by this user (permission denied)",
                          hint=f"chmod 600 {path} as its owner, or {fix}") from None
    except (paramiko.PasswordRequiredException, TypeError):
        # NOTE: cryptography raises TypeError for "encrypted but no password given".
        raise ConfigError(f"SSH key file {path} is encrypted (passphrase-protected); ops uses no SSH agent "
                          "and cannot ask for a passphrase",
                          hint=f"use a deploy key without a passphrase (0600, on this machine only), or {fix}") from None
    except (paramiko.SSHException, ValueError, OSError) as exc:
        raise ConfigError(f"SSH key file {path} is not a private key ops can read ({exc or type(exc).__name__})",
                          hint=fix) from None


class UnknownHostKey(paramiko.SSHException):
    """Raised by ``StrictHostKeyPolicy``; carries the key so we can show its fingerprint."""

    def __init__(self, hostname: str, key: paramiko.PKey):
        super().__init__(f"host key for {hostname} not in known_hosts")
        self.hostname = hostname
        self.key = key


class StrictHostKeyPolicy(paramiko.RejectPolicy):
    """RejectPolicy that keeps the offered key for the error message."""

    def missing_host_key(self, client, hostname, key):
        raise UnknownHostKey(hostname, key)


@dataclass
class RunResult:
    host: str
    command: str  # masked
    stdout: str = ""
    stderr: str = ""
    exit_code: int = 0
    elapsed: float = 0.0
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass
class HostResults(Generic[T]):
    """Per-host outcome of ``Gateway.map``, in the order hosts were given."""

    ok: dict[str, T] = field(default_factory=dict)
    failed: dict[str, OpsError] = field(default_factory=dict)

    def raise_if_failed(self, what: str) -> None:
        if self.failed:
            raise FleetError(what, self.failed, total=len(self.ok) + len(self.failed))


class FleetError(OpsError):
    """Some hosts failed; the message has one line per failed host."""

    def __init__(self, what: str, failed: dict[str, OpsError], *, total: int):
        self.failed = failed
        lines = [f"{what}: {len(failed)} of {total} host(s) failed"]
        lines += [f"  {err if err.host else f'{name}: {err}'}" for name, err in failed.items()]
        super().__init__("\n".join(lines))


def _keep_alive(conn: fabric.Connection, interval: int) -> None:
    """Send an SSH keepalive every ``interval`` seconds while the session is idle.

    NOTE: without it a NAT or firewall silently drops an idle session (e.g. during a
    long migration) and the next read waits on a connection that no longer exists.
    """
    transport = conn.client.get_transport()
    if transport is not None:
        transport.set_keepalive(interval)


def _stderr_echo(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Gateway:
    """Connections to the hosts of one environment."""

    def __init__(self, env: Environment, *, dry_run: bool = False, masker: Masker | None = None,
                 parallel: int | None = None, echo: Callable[[str], None] = _stderr_echo):
        self.env = env
        self.dry_run = dry_run
        self.mask = masker or Masker()
        self.parallel = parallel or env.ssh.parallel
        self._echo_lock = threading.Lock()
        self._echo = echo
        # (host, masked command) for every mutating call seen in dry-run mode.
        self.plan: list[tuple[str, str]] = []
        self._conns: dict[str, fabric.Connection] = {}
        self._lock = threading.Lock()
        self._key_checked = False

    def echo(self, line: str) -> None:
        """Print one line (masked); lines from parallel hosts never interleave."""
        with self._echo_lock:
            self._echo(self.mask(line))

    # -- connections -----------------------------------------------------
    def connection(self, host: Host) -> fabric.Connection:
        with self._lock:
            conn = self._conns.get(host.name)
            if conn is None:
                conn = self._conns[host.name] = self._new_connection(host)
        if not conn.is_connected:
            self._open(host, conn)
        return conn

    def _new_connection(self, host: Host) -> fabric.Connection:
        ssh = self.env.ssh
        # NOTE: no ~/.ssh/config, no ~/.fabric.yaml, no agent (neither used nor
        # forwarded), no default keys, no ProxyCommand/gateway: what connects is what
        # the inventory says, on every operator's machine alike.
        config = sealed_config(ssh.connect_timeout)
        connect_kwargs = {
            "allow_agent": False,
            "look_for_keys": False,
            "banner_timeout": ssh.connect_timeout,
            "auth_timeout": ssh.connect_timeout,
            "channel_timeout": ssh.connect_timeout,
        }
        if ssh.key:
            connect_kwargs["key_filename"] = str(ssh.key)
        conn = fabric.Connection(host.address, user=host.user, port=host.port, config=config,
                                 connect_timeout=ssh.connect_timeout, connect_kwargs=connect_kwargs,
                                 forward_agent=False, gateway=False, inline_ssh_env=True)
        client = conn.client
        # Fabric installs AutoAddPolicy; replace it and load only the project's file.
        client.set_missing_host_key_policy(StrictHostKeyPolicy())
        client.get_host_keys().clear()
        client._system_host_keys.clear()  # noqa: SLF001 - no user-wide known_hosts either
        if ssh.known_hosts.exists():
            client.load_host_keys(str(ssh.known_hosts))
        return conn

    def _open(self, host: Host, conn: fabric.Connection) -> None:
        trust = f"inv hosts.trust --host {self.env.name}:{host.name}"
        where = f"{host.user}@{host.address}:{host.port}"
        self._check_key()
        try:
            conn.open()
            _keep_alive(conn, self.env.ssh.keepalive)
        except UnknownHostKey as exc:
            raise HostKeyError(
                f"host key {exc.key.get_name()} {fingerprint(exc.key)} is not in "
                f"{self.env.ssh.known_hosts.name} ({where}); refusing to connect",
                host=host.name, hint=f"verify the fingerprint out of band, then run: {trust}") from None
        except paramiko.BadHostKeyException as exc:
            raise HostKeyError(
                f"HOST KEY CHANGED for {where}: got {exc.key.get_name()} {fingerprint(exc.key)}, "
                f"known_hosts has {fingerprint(exc.expected_key)}; refusing to connect (possible "
                "man-in-the-middle, or the host was rebuilt)",
                host=host.name,
                hint=f"if the host was rebuilt, confirm the new fingerprint out of band, then: {trust} --replace",
            ) from None
        except paramiko.PasswordRequiredException:
            raise ConfigError(f"SSH key file {self.env.ssh.key} is encrypted (passphrase-protected); ops uses "
                              "no SSH agent and cannot ask for a passphrase", host=host.name,
                              hint="use a deploy key without a passphrase, or set ssh.key in "
                                   f"{self.env.path.name}") from None
        except paramiko.AuthenticationException as exc:
            raise HostUnreachable(f"SSH authentication failed for {where} ({exc})", host=host.name,
                                  hint=f"check ssh.key in {self.env.path.name} and the host's authorized_keys") from None
        except TimeoutError as exc:
            raise HostUnreachable(f"SSH connect to {where} timed out ({exc or 'no answer'})", host=host.name,
                                  hint="is the host up and the port open? check with: inv doctor") from None
        except paramiko.ssh_exception.NoValidConnectionsError as exc:
            reason = "; ".join(sorted({e.strerror or str(e) for e in exc.errors.values()}))
            raise HostUnreachable(f"cannot reach {where}: {reason}", host=host.name,
                                  hint="is the host up and sshd running? check with: inv doctor") from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise HostUnreachable(f"SSH to {where} failed: {exc or type(exc).__name__}", host=host.name,
                                  hint="is the host up and sshd running? check with: inv doctor") from None

    def _check_key(self) -> None:
        # Once per gateway: every host uses the same key, and the answer does not change.
        if self._key_checked or self.env.ssh.key is None:
            return
        check_key_file(self.env.ssh.key, self.env.path.name)
        self._key_checked = True

    def close(self) -> None:
        with self._lock:
            conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            conn.close()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- commands --------------------------------------------------------
    def run(self, host: Host, command: Command, *, mutating: bool = True, check: bool = True,
            timeout: float | None = None, stdin: str | None = None) -> RunResult:
        """Run ``command`` on ``host``; mutating commands are only planned in dry-run.

        ``stdin`` is how secrets reach a remote command: never argv, never logs.
        """
        text = render(command)
        shown = self.mask(text)
        if self.dry_run and mutating:
            self.plan.append((host.name, shown))
            self.echo(f"[dry-run] {host.name}$ {shown}")
            return RunResult(host.name, shown, dry_run=True)
        conn = self.connection(host)
        started = time.monotonic()
        try:
            res = conn.run(text, hide=True, warn=True, pty=False,
                           in_stream=io.StringIO(stdin) if stdin is not None else False,
                           timeout=timeout or self.env.ssh.command_timeout)
        except invoke.exceptions.CommandTimedOut as exc:
            raise CommandTimeout(f"command timed out after {exc.timeout:g}s: {shown}", host=host.name,
                                 hint="raise ssh.command_timeout or look at the host's load") from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise HostUnreachable(f"SSH session lost while running {shown}: {exc or type(exc).__name__}",
                                  host=host.name, hint="check the host and re-run") from None
        result = RunResult(host.name, shown, self.mask(res.stdout), self.mask(res.stderr),
                           res.exited, time.monotonic() - started)
        if check and not result.ok:
            err = RemoteCommandFailed(
                f"exit {result.exit_code}: {shown}" + (f": {_last_line(result.stderr)}" if result.stderr else ""),
                host=host.name, exit_code=result.exit_code, stderr=result.stderr)
            err.stdout = result.stdout
            raise err
        return result

    def query(self, host: Host, command: Command, **kwargs) -> RunResult:
        """A read-only command: runs in dry-run mode too."""
        return self.run(host, command, mutating=False, **kwargs)

    def put(self, host: Host, data: bytes, path: str, *, mode: int = 0o600) -> None:
        """Write ``data`` to ``path`` atomically with ``mode`` set before any byte lands."""
        shown = self.mask(path)
        if self.dry_run:
            self.plan.append((host.name, f"put {len(data)} bytes -> {shown} (mode {mode:o})"))
            self.echo(f"[dry-run] {host.name}: would write {len(data)} bytes to {shown} (mode {mode:o})")
            return
        timeout = self.env.ssh.command_timeout
        try:
            sftp = self.connection(host).sftp()
            # NOTE: an SFTP request to a dead host otherwise waits forever for its reply.
            sftp.get_channel().settimeout(timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise HostUnreachable(f"cannot open SFTP to write {shown}: {exc or type(exc).__name__}",
                                  host=host.name, hint="check the host and re-run") from None
        tmp = f"{path}.tmp-{time.time_ns()}"
        try:
            with sftp.open(tmp, "wb") as fh:
                sftp.chmod(tmp, mode)
                fh.write(data)
            sftp.posix_rename(tmp, path)
        except TimeoutError:
            raise CommandTimeout(f"no answer for {timeout:g}s while writing {shown} over SFTP", host=host.name,
                                 hint="check the host (load, disk) and re-run; raise ssh.command_timeout "
                                      "if it is just slow") from None
        except (paramiko.SSHException, EOFError) as exc:
            raise HostUnreachable(f"SSH session lost while writing {shown}: {exc or type(exc).__name__}",
                                  host=host.name, hint="check the host and re-run") from None
        except OSError as exc:
            with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                sftp.remove(tmp)
            raise HostError(f"cannot write {shown}: {self.mask(str(exc))}", host=host.name,
                            hint="check the directory exists and the SSH user may write there") from None

    def stream(self, host: Host, command: Command, *, idle_timeout: float | None = None) -> RemoteStream:
        """Remote stdout as a binary file-like; stderr drained in parallel.

        Use as a context manager: leaving it normally checks the exit status;
        leaving it on an exception closes the channel (the remote command gets
        SIGPIPE/EOF) and the exception propagates.
        """
        text = render(command)
        shown = self.mask(text)
        transport = self.connection(host).client.get_transport()
        try:
            channel = transport.open_session(timeout=self.env.ssh.connect_timeout)
            channel.settimeout(idle_timeout or self.env.ssh.command_timeout)
            channel.exec_command(text)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise HostUnreachable(f"cannot start {shown}: {exc or type(exc).__name__}", host=host.name) from None
        return RemoteStream(channel, host.name, shown, self.mask)

    @contextlib.contextmanager
    def tunnel(self, host: Host, *, remote_port: int, local_host: str, local_port: int):
        """Reverse tunnel: ``localhost:remote_port`` on the host reaches ``local_host:local_port`` here.

        How hosts pull from a registry that lives on the operator's machine; Docker
        treats ``localhost:PORT`` registries as insecure-allowed, so no TLS is needed.
        """
        if self.dry_run:
            self.echo(f"[dry-run] {host.name}: tunnel localhost:{remote_port} -> {local_host}:{local_port}")
            yield
            return
        conn = self.connection(host)
        try:
            with conn.forward_remote(remote_port, local_port=local_port, local_host=local_host):
                yield
        except paramiko.SSHException as exc:
            raise HostError(f"cannot open reverse tunnel on port {remote_port}: {exc}", host=host.name,
                            hint="is that port taken on the host, or AllowTcpForwarding off in sshd_config?") from None

    @contextlib.contextmanager
    def forward_local(self, host: Host, *, remote_host: str, remote_port: int):
        """Local forward: yields a port on 127.0.0.1 here that reaches ``remote_host:remote_port``
        as seen from ``host`` (e.g. a database on the private network).

        NOTE: not Fabric's forward_local, which binds its listener in a background
        thread (a client connecting right away races it) and needs a fixed port;
        here the listener is bound on an ephemeral port before we yield it.
        """
        transport = self.connection(host).client.get_transport()
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.settimeout(0.2)
        stop = threading.Event()

        def pump(client: socket.socket) -> None:
            try:
                channel = transport.open_channel("direct-tcpip", (remote_host, remote_port),
                                                 client.getpeername(), timeout=self.env.ssh.connect_timeout)
            except (paramiko.SSHException, OSError):
                client.close()
                return
            with client, channel:
                _splice(client, channel, stop)

        def accept() -> None:
            while not stop.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                threading.Thread(target=pump, args=(client,), daemon=True, name=f"fwd-{host.name}").start()

        acceptor = threading.Thread(target=accept, daemon=True, name=f"fwd-accept-{host.name}")
        acceptor.start()
        try:
            yield listener.getsockname()[1]
        finally:
            stop.set()
            acceptor.join(timeout=2)
            listener.close()

    # -- fleet -----------------------------------------------------------
    def map(self, fn: Callable[[Host], T], hosts: Iterable[Host] | None = None) -> HostResults[T]:
        """Run ``fn(host)`` for each host, at most ``parallel`` at once."""
        hosts = list(self.env.hosts.values() if hosts is None else hosts)
        results: HostResults[T] = HostResults()
        if not hosts:
            return results

        def call(host: Host) -> tuple[bool, object]:
            try:
                return True, fn(host)
            except OpsError as exc:
                if exc.host is None:
                    exc.host = host.name
                return False, exc
            except Exception as exc:  # an unexpected bug must not hide other hosts' results
                err = HostError(f"unexpected {type(exc).__name__}: {self.mask(str(exc))}", host=host.name)
                err.__cause__ = exc
                return False, err

        # NOTE: Ctrl-C reaches only the main thread; the host threads would go on working
        # (switching containers, say) while the caller's cleanup starts on the same hosts.
        # So from before the first thread starts until the last one ends, Ctrl-C is
        # deferred: hosts not yet started never start, running ones finish their current
        # step (each bounded by its own timeout), then the interrupt goes on.
        futures: list = []
        interrupted: list[bool] = []

        def on_ctrl_c(*_):
            if interrupted:
                self.echo("Ctrl-C again: still waiting for the hosts to finish their step; cleanup follows")
                return
            interrupted.append(True)
            for f in futures:
                f.cancel()
            busy = [h.name for h, f in zip(hosts, futures, strict=False) if not f.done()]
            self.echo("Ctrl-C: " + (f"letting {', '.join(busy)} finish the current step, then cleaning up "
                                    "(each step has its own timeout)" if busy else "stopping"))

        pool = ThreadPoolExecutor(max_workers=min(self.parallel, len(hosts)), thread_name_prefix="ops-host")
        with deferred_ctrl_c(on_ctrl_c):
            futures.extend(pool.submit(call, host) for host in hosts)
            wait(futures)
        pool.shutdown(wait=False)
        if interrupted:
            raise KeyboardInterrupt
        outcomes = [f.result() for f in futures]
        for host, (ok, value) in zip(hosts, outcomes, strict=True):
            if ok:
                results.ok[host.name] = value
            else:
                results.failed[host.name] = value
        return results


class RemoteStream(io.RawIOBase):
    """Bytes of a remote command's stdout, read straight off the SSH channel."""

    def __init__(self, channel: paramiko.Channel, host: str, command: str, mask: Masker):
        super().__init__()
        self.channel = channel
        self.host = host
        self.command = command
        self._mask = mask
        # NOTE: if nobody reads stderr, the channel window fills and the remote
        # command blocks forever; a thread keeps draining it (bounded tail kept).
        self._err = _Tail()
        self._drain = threading.Thread(target=_drain, args=(channel.recv_stderr, self._err), daemon=True,
                                       name=f"stderr-{host}")
        self._drain.start()

    @property
    def stderr(self) -> str:
        return self._mask(self._err.text())

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            data = self.channel.recv(len(buffer))
        except TimeoutError:
            raise CommandTimeout(f"no output for {self.channel.gettimeout():g}s from {self.command}",
                                 host=self.host) from None
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise HostUnreachable(f"SSH stream lost during {self.command}: {exc or type(exc).__name__}",
                                  host=self.host) from None
        n = len(data)
        buffer[:n] = data
        if n == 0 and self.channel.closed and not self.channel.eof_received:
            raise HostUnreachable(f"SSH stream closed before the end of {self.command}", host=self.host)
        return n

    def finish(self) -> int:
        """Wait for the command to end; raise with its stderr if it failed."""
        # Drain any stdout left so the remote side can exit.
        while self.channel.recv(65536):
            pass
        status = self.channel.recv_exit_status()
        self._drain.join(timeout=5)
        self.channel.close()
        if status != 0:
            tail = self.stderr.strip()
            raise RemoteCommandFailed(
                f"exit {status}: {self.command}" + (f": {_last_line(tail)}" if tail else ""),
                host=self.host, exit_code=status, stderr=tail)
        return status

    def __enter__(self) -> RemoteStream:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.channel.close()
            self._drain.join(timeout=5)


# -- streaming bytes INTO a remote command --------------------------------------------
# Gateway.stream reads a remote command's stdout; pipe_into feeds one's stdin
# (pg_restore from a backup streamed out of S3, tar extracting an archive).
class _Tail:
    """The last ``limit`` bytes of a stream, read off a channel by a thread."""

    def __init__(self, limit: int = STDERR_TAIL_BYTES):
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self.limit = limit

    def add(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        while self.size > self.limit and len(self.chunks) > 1:
            self.size -= len(self.chunks.popleft())

    def text(self) -> str:
        return b"".join(self.chunks).decode("utf-8", "replace")


def _drain(recv: Callable[[int], bytes], tail: _Tail) -> None:
    try:
        while data := recv(32768):
            tail.add(data)
    except (OSError, EOFError, paramiko.SSHException):
        pass


@dataclass
class PipeResult:
    sent: int
    stdout: str
    stderr: str


def pipe_into(gw: Gateway, host: Host, command, reader, *, chunk_size: int = PIPE_CHUNK,
              idle_timeout: float | None = None, finish_timeout: float = PIPE_FINISH_TIMEOUT) -> PipeResult:
    """Feed everything ``reader`` yields to ``command``'s stdin on ``host``; raise unless it exits 0.

    Memory stays at one chunk. stdout and stderr are drained by threads (or the remote
    command blocks once the channel window fills) and their tails kept for the error.
    A local failure (reader error, Ctrl-C) closes the channel: the remote command sees
    its input end early. The caller must treat that as failed, whatever it exits with.
    """
    text = render(command)
    shown = gw.mask(text)
    idle = idle_timeout or gw.env.ssh.command_timeout
    transport = gw.connection(host).client.get_transport()
    try:
        channel = transport.open_session(timeout=gw.env.ssh.connect_timeout)
        channel.settimeout(idle)
        channel.exec_command(text)
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise HostUnreachable(f"cannot start {shown}: {exc or type(exc).__name__}", host=host.name) from None
    out, err = _Tail(), _Tail()
    drains = [threading.Thread(target=_drain, args=(channel.recv, out), daemon=True, name=f"stdout-{host.name}"),
              threading.Thread(target=_drain, args=(channel.recv_stderr, err), daemon=True,
                               name=f"stderr-{host.name}")]
    for t in drains:
        t.start()

    def failed(status: int | None, why: str) -> RemoteCommandFailed:
        tail = gw.mask(err.text().strip() or out.text().strip())
        last = [ln for ln in tail.splitlines() if ln.strip()][-3:]
        return RemoteCommandFailed(f"{why}: {shown}" + (f": {' | '.join(last)}" if last else ""),
                                   host=host.name, exit_code=status, stderr=tail)

    sent = 0
    early = False
    try:
        while True:
            data = reader.read(chunk_size)  # a reader failure propagates as it is
            if not data:
                break
            if channel.exit_status_ready():
                early = True
                break
            try:
                channel.sendall(data)
            except TimeoutError:
                raise CommandTimeout(f"no progress for {idle:g}s writing to {shown}", host=host.name) from None
            except (OSError, EOFError, paramiko.SSHException) as exc:
                if channel.status_event.wait(2):
                    early = True  # the command ended (closing its stdin) while we were still sending
                    break
                raise HostUnreachable(f"SSH stream lost during {shown}: {exc or type(exc).__name__}",
                                      host=host.name) from None
            sent += len(data)
        if not early:
            channel.shutdown_write()
        if not channel.status_event.wait(finish_timeout):
            raise CommandTimeout(f"{shown} did not finish within {finish_timeout:g}s after its input ended",
                                 host=host.name)
        status = channel.recv_exit_status()
        for t in drains:
            t.join(timeout=5)
        if status == -1:
            raise HostUnreachable(f"SSH stream lost during {shown}: no exit status", host=host.name)
        if status != 0:
            raise failed(status, f"exit {status}" + (" before reading all its input" if early else ""))
        if early:
            raise failed(status, "exited 0 before reading all its input")
        return PipeResult(sent, gw.mask(out.text()), gw.mask(err.text()))
    finally:
        channel.close()



def _splice(sock: socket.socket, channel: paramiko.Channel, stop: threading.Event) -> None:
    """Copy bytes both ways between a local socket and an SSH channel until either closes."""

    with selectors.DefaultSelector() as sel:
        sel.register(sock, selectors.EVENT_READ)
        sel.register(channel, selectors.EVENT_READ)
        while not stop.is_set():
            for key, _ in sel.select(timeout=0.5):
                src, dst = (sock, channel) if key.fileobj is sock else (channel, sock)
                try:
                    data = src.recv(65536)
                    if not data:
                        return
                    dst.sendall(data)
                except OSError:
                    # NOTE: a peer that resets (a client giving up, a proxy reloading) ends
                    # this one forwarded connection, never the thread with a traceback.
                    return


def _last_line(text: str) -> str:
    # docker ends its errors with a "See 'docker run --help'." line: not the reason.
    lines = [line for line in text.strip().splitlines() if line.strip() and not line.startswith("See '")]
    return lines[-1] if lines else ""


def fetch_host_keys(host: Host, *, timeout: float = 10.0) -> list[paramiko.PKey]:
    """Every host key type the server offers, for ``inv hosts.trust``.

    Opens a bare transport per key type (no authentication, nothing run).
    """
    keys: list[paramiko.PKey] = []
    errors: list[str] = []
    for key_type in ("ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512"):
        try:
            sock = socket.create_connection((host.address, host.port), timeout=timeout)
        except OSError as exc:
            raise HostUnreachable(f"cannot reach {host.address}:{host.port}: {exc.strerror or exc}",
                                  host=host.name, hint="is the host up and sshd running?") from None
        transport = paramiko.Transport(sock)
        transport.banner_timeout = timeout
        try:
            transport.get_security_options().key_types = [key_type]
            transport.start_client(timeout=timeout)
            keys.append(transport.get_remote_server_key())
        except paramiko.SSHException as exc:
            errors.append(f"{key_type}: {exc}")
        finally:
            transport.close()
    if not keys:
        raise HostKeyError(f"no host key offered by {host.address}:{host.port} ({'; '.join(errors)})",
                           host=host.name)
    return keys


__all__ = ["PipeResult", "pipe_into", "Gateway", "HostResults", "FleetError", "RemoteStream", "RunResult", "fetch_host_keys",
           "host_pattern", "SealedConfig", "StrictHostKeyPolicy", "UnknownHostKey", "check_key_file", "sealed_config"]
