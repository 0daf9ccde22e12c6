"""Typed, one-line errors.

Every expected failure is an ``OpsError``: it names what failed, where (the host,
when there is one) and what to do next. The task layer prints ``str(err)`` and exits
non-zero; no traceback is shown for these.
"""

from __future__ import annotations


class OpsError(Exception):
    """An expected failure with a message an operator can act on."""

    def __init__(self, message: str, *, host: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.host = host
        self.hint = hint
        self.followups: list[str] = []

    def also(self, what: str) -> None:
        """Something that went wrong while cleaning up after this error: shown after it, never instead."""
        self.followups.append(what)

    def __str__(self) -> str:
        text = f"{self.host}: {self.message}" if self.host else self.message
        if self.hint:
            text = f"{text} — {self.hint}"
        for line in getattr(self, "followups", ()):
            text = f"{text}\n  also: {line}"
        return text


class ConfigError(OpsError):
    """Inventory, env file or command-line input is wrong."""


class InventoryError(ConfigError):
    """One or more problems in an inventory file; ``problems`` holds one line each."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class HostError(OpsError):
    """Something went wrong on (or on the way to) one host."""


class HostUnreachable(HostError):
    """No SSH session could be opened: host down, port closed, DNS, auth."""


class HostKeyError(HostError):
    """The host's SSH key is unknown or differs from the project's known_hosts."""


class RemoteCommandFailed(HostError):
    """A remote command exited non-zero."""

    def __init__(self, message: str, *, host: str, exit_code: int | None,
                 stderr: str = "", hint: str | None = None):
        super().__init__(message, host=host, hint=hint)
        self.exit_code = exit_code
        self.stderr = stderr


class CommandTimeout(HostError):
    """A remote command ran longer than its timeout."""


class LocalToolError(OpsError):
    """A tool on the operator's machine (docker, debootstrap...) is missing or failed."""
