"""An interactive session on a host through the gateway's SSH connection: a PTY on the remote
side, this terminal in raw mode on ours, bytes copied both ways until the remote command ends.

For ``inv app.exec -it`` and ``inv db.psql``. Without a terminal here (a pipe, a test),
input is copied as it is and the remote side still gets its PTY.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import sys
import termios
import tty

import paramiko

from ops.commands import render
from ops.errors import HostUnreachable
from ops.inventory import Host
from ops.remote import Command, Gateway

CHUNK = 32768


@contextlib.contextmanager
def _raw(fd: int):
    """This terminal in raw mode (keys go to the remote side as typed, Ctrl-C included), restored after."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def interactive(gw: Gateway, host: Host, command: Command, *, stdin=None, stdout=None) -> int:
    """Run ``command`` on ``host`` with a PTY, wired to this terminal; its exit status."""
    stdin = stdin if stdin is not None else sys.stdin
    stdout = stdout if stdout is not None else sys.stdout
    text = render(command)
    size = shutil.get_terminal_size((80, 24))
    transport = gw.connection(host).client.get_transport()
    try:
        channel = transport.open_session(timeout=gw.env.ssh.connect_timeout)
        channel.get_pty(term=os.environ.get("TERM", "xterm"), width=size.columns, height=size.lines)
        channel.exec_command(text)
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise HostUnreachable(f"cannot start {gw.mask(text)}: {exc or type(exc).__name__}", host=host.name) from None
    in_fd, out_fd = stdin.fileno(), stdout.fileno()
    stdout.flush()
    with _raw(in_fd), selectors.DefaultSelector() as sel, channel:
        sel.register(channel, selectors.EVENT_READ)
        sel.register(in_fd, selectors.EVENT_READ)
        # NOTE: the exit status arrives with (or right after) the remote side's last output.
        while not channel.closed and not (channel.exit_status_ready() and not channel.recv_ready()):
            for key, _ in sel.select(timeout=0.5):
                if key.fileobj is channel:
                    data = channel.recv(CHUNK)
                    if data:
                        os.write(out_fd, data)
                    continue
                data = os.read(in_fd, CHUNK)
                if data:
                    channel.sendall(data)
                else:  # our input ended (a pipe): the remote side sees EOF
                    sel.unregister(in_fd)
                    channel.shutdown_write()
        while channel.recv_ready():
            os.write(out_fd, channel.recv(CHUNK))
        status = channel.recv_exit_status() if channel.exit_status_ready() else -1
    if status == -1:
        raise HostUnreachable(f"the session ended without an exit status: {gw.mask(text)}", host=host.name)
    return status


__all__ = ["interactive"]
