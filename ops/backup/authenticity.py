"""Manifests nobody without the key can forge: an HMAC over the whole manifest, keyed from the
backup passphrase.

Write access to the bucket is enough to change a manifest (its sha256, its ``encryption``,
the object it names); the MAC is what makes such a change visible. It is HMAC-SHA256 over a
canonical JSON of every field but ``auth`` itself, so it binds the backup id, its kind, its
environment, the object key, size and SHA-256, and the encryption scheme. The key comes
from the passphrase through scrypt with a fixed label (a different key from the one that
encrypts objects, and the same for every manifest, so one derivation serves a whole listing).

Without a passphrase (``backup.encryption_key_var`` unset) there is no key: manifests are
then written and read unauthenticated, and the restore plan says so.

Manifests written before this existed have no ``auth``: with a key configured they are
refused with the way out (re-take, or ``--trust-unauthenticated`` after checking).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from dataclasses import dataclass

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ops.backup import crypto
from ops.backup.manifest import Manifest
from ops.errors import OpsError

SCHEME = "hmac-sha256+scrypt/v1"
_LABEL = b"ops backup manifest authentication v1"
TRUST_FLAG = "--trust-unauthenticated"


class NotAuthentic(OpsError):
    """A backup whose manifest or object cannot be shown to be ours: refused before anything is read."""


@functools.lru_cache(maxsize=4)
def manifest_key(passphrase: str) -> bytes:
    """32 bytes from the passphrase (scrypt, N=2^15: ~0.1 s, once per process and passphrase)."""
    data = passphrase.encode()
    return Scrypt(salt=hashlib.sha256(_LABEL).digest()[:16], length=32, n=2 ** 15, r=8, p=1).derive(data)


def _message(m: Manifest) -> bytes:
    body = {k: v for k, v in m.to_dict().items() if k != "auth"}
    return _LABEL + b"\n" + json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def mac(m: Manifest, key: bytes) -> str:
    return hmac.new(key, _message(m), hashlib.sha256).hexdigest()


def sign(m: Manifest, key: bytes) -> Manifest:
    """Set ``m.auth`` (in place; returns m). Call it last, right before the manifest is written."""
    m.auth = None
    m.auth = {"scheme": SCHEME, "mac": mac(m, key)}
    return m


@dataclass(frozen=True)
class Authenticity:
    """How far a backup can be trusted; ``line`` says it in the restore plan."""

    authenticated: bool
    line: str
    bound_to: str | None  # the id its encrypted object must be bound to (None: format 1 or not encrypted)


def check(m: Manifest, key: bytes | None, *, env_name: str, trust_unauthenticated: bool = False) -> Authenticity:
    """Refuse (NotAuthentic) a backup that cannot be shown to be ours; say how far it is trusted."""
    if key is None:
        return Authenticity(False, "manifest not authenticated (no backup.encryption_key_var configured: nothing "
                                   "to check it with)", _bound(m))
    if m.auth is None:
        if not trust_unauthenticated:
            raise NotAuthentic(f"backup {m.id} predates authenticated manifests (or its authentication was "
                               "removed): refusing it (nothing was changed)",
                               hint=f"re-take it (inv backup.{m.kind} --host {env_name}), or pass {TRUST_FLAG} "
                                    "after checking it")
        return _unauthenticated_but_trusted(m, env_name)
    if m.auth.get("scheme") != SCHEME:
        raise NotAuthentic(f"backup {m.id}: its manifest is authenticated with {m.auth.get('scheme')!r}, which this "
                           "tool does not know: refusing it (nothing was changed)", hint="upgrade the ops tool")
    if not hmac.compare_digest(m.auth.get("mac", ""), mac(m, key)):
        raise NotAuthentic(f"backup {m.id}: its manifest fails authentication (changed by someone without the key, "
                           "or written with another passphrase): refusing it (nothing was changed)",
                           hint=f"pick another backup (inv backup.list --host {env_name}); investigate who can "
                                "write to the bucket")
    if not m.encrypted:
        # NOTE: unreachable with an intact MAC unless the key was configured after the backup was
        # taken unencrypted and then re-signed; still never restore plaintext silently.
        if not trust_unauthenticated:
            raise NotAuthentic(f"backup {m.id} is not encrypted, but backups of {env_name} are: refusing an "
                               "unencrypted object (nothing was changed)",
                               hint=f"pick another backup, or pass {TRUST_FLAG} after checking it")
        return Authenticity(True, f"manifest authenticated; object NOT encrypted (accepted by {TRUST_FLAG})", None)
    return Authenticity(True, "manifest authenticated (HMAC); encrypted object authenticated chunk by chunk"
                        + (f", bound to {m.id}" if _bound(m) else ""), _bound(m))


def status(m: Manifest, key: bytes | None) -> str:
    """One word for ``backup.list``: ok, FORGED, none (predates authentication), - (no key configured)."""
    if key is None:
        return "-"
    if m.auth is None:
        return "none"
    if m.auth.get("scheme") != SCHEME or not hmac.compare_digest(m.auth.get("mac", ""), mac(m, key)):
        return "FORGED"
    return "ok"


def _unauthenticated_but_trusted(m: Manifest, env_name: str) -> Authenticity:
    return Authenticity(False, f"manifest NOT authenticated (accepted by {TRUST_FLAG})"
                        + ("" if m.encrypted else "; object NOT encrypted"), _bound(m))


def _bound(m: Manifest) -> str | None:
    if m.encryption and m.encryption.get("scheme") == crypto.SCHEME:
        return m.id
    return None
