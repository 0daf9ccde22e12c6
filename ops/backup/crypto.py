"""Optional client-side encryption of backups: AES-256-GCM in chunks, key from a passphrase.

The bucket (and whoever can read it) sees only ciphertext. Format, version 2::

    header (47 bytes)
      magic       8   b"OPSENC02"  (identifies the scheme and its version)
      log2(N)     1   scrypt cost; r 1 byte, p 1 byte
      chunk_size  4   big-endian, plaintext bytes per chunk
      salt       16   random per stream -> a fresh key per backup
      key_check  16   tells a wrong passphrase from damaged data
    chunks
      AES-256-GCM(plaintext chunk) || 16-byte tag, nonce = 11-byte big-endian
      chunk counter || 1 byte "last chunk" flag, associated data = the header
      followed by b"ops backup " and the backup id the object belongs to

Every chunk but the last holds exactly ``chunk_size`` plaintext bytes; the last
holds fewer (possibly none) and carries the "last" flag. So reordered, dropped,
tampered or truncated data, and a modified header, all fail authentication; a
stream that ends without its last chunk is reported as truncated.

The scrypt output is 64 bytes: the first 32 are the AES key, the other 32 are
hashed into ``key_check`` (independent of the key, so it reveals nothing about it).

Version 2 binds the object to its backup id (through the associated data): a valid
object of another backup, moved under this backup's key, fails on its first chunk, so
not one byte of it is released. Version 1 (``OPSENC01``, written before) is the same
without the binding; it is read only when the caller says the backup's own
authenticated manifest (or the operator) vouches for it (``bound_to=None``).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import struct
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ops.errors import ConfigError, OpsError

SCHEME = "aes-256-gcm-chunked+scrypt/v2"
MAGIC = b"OPSENC02"
# The format before objects were bound to their backup id (still readable, see the module doc).
SCHEME_V1 = "aes-256-gcm-chunked+scrypt/v1"
MAGIC_V1 = b"OPSENC01"
_BINDING = b"ops backup "
_HEADER = struct.Struct(">8sBBBI16s16s")
HEADER_SIZE = _HEADER.size
TAG_SIZE = 16
CHUNK_SIZE = 1024 * 1024
# scrypt N=2^15, r=8, p=1: 32 MiB of memory, ~0.1 s per backup or restore.
LOG_N, R, P = 15, 8, 1
_CHECK_LABEL = b"ops backup key check v1"


class DecryptError(OpsError):
    """Encrypted backup data cannot be decrypted: wrong passphrase, damaged or truncated."""


def _passphrase_bytes(passphrase: str | bytes) -> bytes:
    data = passphrase.encode() if isinstance(passphrase, str) else bytes(passphrase)
    if not data:
        raise ConfigError("the backup encryption passphrase is empty",
                          hint="set the variable named by backup.encryption_key_var in the ops env file")
    return data


def _derive(passphrase: bytes, salt: bytes, log_n: int, r: int, p: int) -> tuple[bytes, bytes]:
    material = Scrypt(salt=salt, length=64, n=2 ** log_n, r=r, p=p).derive(passphrase)
    check = hashlib.sha256(_CHECK_LABEL + material[32:]).digest()[:16]
    return material[:32], check


def _nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def identify(head: bytes) -> str | None:
    """The scheme name when ``head`` (the first bytes of an object) is our encrypted format."""
    return {MAGIC: SCHEME, MAGIC_V1: SCHEME_V1}.get(bytes(head[:len(MAGIC)]))


def _binding(backup_id: str) -> bytes:
    if not isinstance(backup_id, str) or not backup_id:
        raise ValueError("an encrypted backup must be bound to its backup id")
    return _BINDING + backup_id.encode()


class Encryptor:
    """Streaming transform: ``update(bytes) -> bytes`` then ``finalize() -> bytes`` once."""

    def __init__(self, passphrase: str | bytes, backup_id: str, *, chunk_size: int = CHUNK_SIZE,
                 log_n: int = LOG_N, r: int = R, p: int = P):
        if not 1024 <= chunk_size <= 16 * 1024 * 1024:
            raise ValueError(f"chunk_size {chunk_size} out of range")
        binding = _binding(backup_id)
        salt = os.urandom(16)
        key, check = _derive(_passphrase_bytes(passphrase), salt, log_n, r, p)
        self.header = _HEADER.pack(MAGIC, log_n, r, p, chunk_size, salt, check)
        self._ad = self.header + binding
        self.chunk_size = chunk_size
        self.info = {"scheme": SCHEME, "kdf": "scrypt", "log_n": log_n, "r": r, "p": p, "chunk_size": chunk_size,
                     "bound_to": backup_id}
        self._aead = AESGCM(key)
        self._buffer = bytearray()
        self._counter = 0
        self._started = False
        self._finished = False

    def _seal(self, data, last: bool) -> bytes:
        out = self._aead.encrypt(_nonce(self._counter, last), data, self._ad)
        self._counter += 1
        return out

    def update(self, data: bytes) -> bytes:
        if self._finished:
            raise ValueError("update() after finalize()")
        out = []
        if not self._started:
            out.append(self.header)
            self._started = True
        self._buffer += data
        size = self.chunk_size
        full = len(self._buffer) // size
        if full:
            view = memoryview(self._buffer)
            out.extend(self._seal(view[i * size:(i + 1) * size], False) for i in range(full))
            view.release()
            del self._buffer[:full * size]
        return b"".join(out)

    def finalize(self) -> bytes:
        if self._finished:
            raise ValueError("finalize() called twice")
        head = b"" if self._started else self.header
        self._started = self._finished = True
        out = head + self._seal(self._buffer, True)
        self._buffer = bytearray()
        return out


def encryptor(passphrase: str | bytes, backup_id: str) -> Encryptor:
    """A fresh encryptor (new random salt, so a new key) for the stream of backup ``backup_id``."""
    return Encryptor(passphrase, backup_id)


class DecryptReader(io.RawIOBase):
    """Plaintext of an encrypted stream, read chunk by chunk; raises DecryptError on any damage."""

    def __init__(self, reader: BinaryIO, passphrase: str | bytes, *, bound_to: str | None):
        """``bound_to``: the backup id the object must belong to (format 2); None reads format 1 only."""
        super().__init__()
        self._reader = reader
        header = self._read_exact(HEADER_SIZE)
        scheme = identify(header)
        if scheme is None:
            raise DecryptError(f"not a {SCHEME} stream (starts with {header[:8]!r})",
                               hint="this backup is not client-side encrypted, or is damaged")
        if bound_to is not None and scheme != SCHEME:
            raise DecryptError(f"the object is in the older format {scheme}, not bound to backup {bound_to}",
                               hint="its manifest says otherwise: the object was replaced; use another backup")
        if bound_to is None and scheme != SCHEME_V1:
            raise DecryptError(f"the object is in format {scheme} but its manifest says {SCHEME_V1}",
                               hint="the manifest was changed; use another backup")
        if len(header) < HEADER_SIZE:
            raise DecryptError("encrypted backup truncated inside its header")
        _, log_n, r, p, chunk_size, salt, check = _HEADER.unpack(header)
        if not (10 <= log_n <= 22 and 1 <= r <= 32 and 1 <= p <= 16 and 1024 <= chunk_size <= 16 * 1024 * 1024):
            raise DecryptError("encrypted backup header has impossible parameters (damaged)")
        key, expected = _derive(_passphrase_bytes(passphrase), salt, log_n, r, p)
        if not hmac.compare_digest(check, expected):
            raise DecryptError("wrong passphrase for this encrypted backup",
                               hint="use the passphrase it was made with (backup.encryption_key_var "
                                    "in the ops env file)")
        self._ad = header + (_binding(bound_to) if bound_to is not None else b"")
        self._bound_to = bound_to
        self._aead = AESGCM(key)
        self._block = chunk_size + TAG_SIZE
        self._counter = 0
        self._plain = b""
        self._offset = 0
        self._done = False

    def _read_exact(self, n: int) -> bytes:
        parts, have = [], 0
        while have < n:
            data = self._reader.read(n - have)
            if not data:
                break
            parts.append(bytes(data))
            have += len(data)
        return b"".join(parts)

    def _next_chunk(self) -> None:
        block = self._read_exact(self._block)
        last = len(block) < self._block
        if not block:
            raise DecryptError(f"encrypted backup truncated after chunk {self._counter} (no final chunk)",
                               hint="the object is incomplete; use another backup")
        if len(block) < TAG_SIZE:
            raise DecryptError(f"encrypted backup truncated inside chunk {self._counter}",
                               hint="the object is incomplete; use another backup")
        try:
            self._plain = self._aead.decrypt(_nonce(self._counter, last), block, self._ad)
        except InvalidTag:
            what = (f"fails authentication for backup {self._bound_to} (another backup's object, tampered, "
                    "damaged or truncated)" if self._bound_to else "fails authentication (tampered, damaged or "
                    "truncated)")
            raise DecryptError(f"encrypted backup chunk {self._counter} {what}", hint="use another backup") from None
        self._offset = 0
        self._counter += 1
        if last:
            if self._reader.read(1):
                raise DecryptError("encrypted backup has data after its final chunk (damaged)")
            self._done = True

    def prime(self) -> DecryptReader:
        """Authenticate the first chunk now, before any consumer is started: an object that is not
        this backup's fails here, and no byte of it was handed on."""
        if not self._done and self._offset >= len(self._plain):
            self._next_chunk()
        return self

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self._offset >= len(self._plain):
            if self._done:
                return 0
            self._next_chunk()
        n = min(len(buffer), len(self._plain) - self._offset)
        buffer[:n] = self._plain[self._offset:self._offset + n]
        self._offset += n
        return n

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        while self._offset >= len(self._plain):
            if self._done:
                return b""
            self._next_chunk()
        piece = self._plain[self._offset:self._offset + size]
        self._offset += len(piece)
        return piece


def decrypt_stream(reader: BinaryIO, passphrase: str | bytes, *, bound_to: str | None) -> DecryptReader:
    """Readable plaintext of ``reader``; checks the passphrase and authenticates the first chunk
    before returning. ``bound_to``: see ``DecryptReader``."""
    return DecryptReader(reader, passphrase, bound_to=bound_to).prime()


def check_passphrase(head: bytes, passphrase: str | bytes) -> None:
    """Raise DecryptError unless ``head`` (the object's first HEADER_SIZE bytes, e.g. a ranged
    GET) is our format and ``passphrase`` opens it: lets a restore fail before touching anything."""
    head = bytes(head[:HEADER_SIZE])
    bound = "check" if identify(head) == SCHEME else None
    DecryptReader(io.BytesIO(head), passphrase, bound_to=bound)
