"""What a restore raises: refused before any change, or failed (the message says what it left)."""

from __future__ import annotations

from ops.errors import OpsError


class RestoreFailed(OpsError):
    """The restore stopped; the message says in which state it left the environment."""


class RestoreRefused(OpsError):
    """The restore was refused before anything was changed (damaged object, clash...)."""
