"""ops/backup/crypto.py: chunked AES-256-GCM with a scrypt key; authenticated end to end and bound to
the backup id."""

from __future__ import annotations

import io
import os
import random

import pytest

from ops.backup import crypto
from ops.backup.crypto import (
    HEADER_SIZE,
    MAGIC,
    SCHEME,
    TAG_SIZE,
    DecryptError,
    Encryptor,
    decrypt_stream,
    encryptor,
    identify,
)
from ops.errors import ConfigError

CHUNK = 4096
PASS = "correct horse battery staple"
ID = "db-20261124T030000Z-a1b2c3"


def encrypt(data: bytes, passphrase: str = PASS, *, chunk_size: int = CHUNK, pieces: int = 7,
            backup_id: str = ID) -> bytes:
    """Encrypt, feeding ``data`` in uneven pieces as a stream would."""
    enc = Encryptor(passphrase, backup_id, chunk_size=chunk_size, log_n=10)
    rng = random.Random(pieces)
    out, i = [], 0
    while i < len(data):
        n = rng.randint(1, max(1, len(data) // pieces))
        out.append(enc.update(data[i:i + n]))
        i += n
    out.append(enc.finalize())
    return b"".join(out)


def decrypt(blob: bytes, passphrase: str = PASS, read_size: int = 1000, bound_to: str | None = ID) -> bytes:
    reader = decrypt_stream(io.BytesIO(blob), passphrase, bound_to=bound_to)
    out = []
    while piece := reader.read(read_size):
        out.append(piece)
    return b"".join(out)


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 10 * CHUNK + 1234])
def test_round_trip_of_multi_chunk_data(size):
    data = os.urandom(size)
    blob = encrypt(data)
    full_chunks = size // CHUNK  # the final chunk always holds < CHUNK bytes, possibly none
    assert len(blob) == HEADER_SIZE + size + (full_chunks + 1) * TAG_SIZE
    assert decrypt(blob) == data
    assert decrypt(blob, read_size=CHUNK * 3) == data
    assert decrypt_stream(io.BytesIO(blob), PASS, bound_to=ID).read() == data  # read all


def test_default_encryptor_round_trip_through_readinto():
    data = os.urandom(3 * crypto.CHUNK_SIZE + 17)
    enc = encryptor(PASS, ID)
    assert enc.info == {"scheme": SCHEME, "kdf": "scrypt", "log_n": 15, "r": 8, "p": 1, "chunk_size": crypto.CHUNK_SIZE,
                        "bound_to": ID}
    blob = enc.update(data) + enc.finalize()
    reader = io.BufferedReader(decrypt_stream(io.BytesIO(blob), PASS, bound_to=ID), buffer_size=65536)
    assert reader.read() == data


def test_header_identifies_the_scheme_and_each_stream_gets_its_own_key():
    data = b"the same plaintext " * 500
    one, two = encrypt(data), encrypt(data)
    assert one[:8] == MAGIC == b"OPSENC02"
    assert identify(one[:16]) == SCHEME and identify(data) is None
    assert one != two and one[HEADER_SIZE:] != two[HEADER_SIZE:]  # random salt -> different key
    assert b"the same plaintext" not in one


def test_wrong_passphrase_is_a_clear_error_before_any_data():
    blob = encrypt(os.urandom(10_000))
    with pytest.raises(DecryptError) as info:
        decrypt_stream(io.BytesIO(blob), "wrong horse", bound_to=ID)
    assert "wrong passphrase" in str(info.value) and "encryption_key_var" in str(info.value)
    assert "\n" not in str(info.value)


def test_passphrase_can_be_checked_from_the_header_alone():
    blob = encrypt(os.urandom(3 * CHUNK))
    crypto.check_passphrase(blob[:HEADER_SIZE], PASS)
    crypto.check_passphrase(blob, PASS)
    with pytest.raises(DecryptError, match="wrong passphrase"):
        crypto.check_passphrase(blob[:HEADER_SIZE], "nope")
    with pytest.raises(DecryptError, match="not a"):
        crypto.check_passphrase(b"PGDMP" + bytes(60), PASS)


def test_empty_passphrase_is_refused():
    with pytest.raises(ConfigError, match="passphrase is empty"):
        encryptor("", ID)
    with pytest.raises(ConfigError, match="passphrase is empty"):
        decrypt_stream(io.BytesIO(encrypt(b"x")), "", bound_to=ID)


def test_truncation_at_a_chunk_boundary_is_detected():
    data = os.urandom(5 * CHUNK + 100)
    blob = encrypt(data)
    cut = HEADER_SIZE + 3 * (CHUNK + TAG_SIZE)  # three whole chunks, final chunk missing
    with pytest.raises(DecryptError, match="truncated after chunk 3 \\(no final chunk\\)"):
        decrypt(blob[:cut])


@pytest.mark.parametrize("cut", [1, 10, TAG_SIZE + 5, CHUNK, CHUNK + TAG_SIZE + 1])
def test_truncation_anywhere_is_detected(cut):
    blob = encrypt(os.urandom(4 * CHUNK + 100))
    with pytest.raises(DecryptError, match="truncated|fails authentication"):
        decrypt(blob[:-cut])


def test_truncated_header_and_plain_data_are_refused():
    blob = encrypt(b"x" * 100)
    with pytest.raises(DecryptError, match="truncated inside its header"):
        decrypt(blob[:HEADER_SIZE - 1])
    with pytest.raises(DecryptError, match="not a aes-256-gcm-chunked\\+scrypt/v2 stream"):
        decrypt(b"PGDMP\x01\x0e" + b"\x00" * 100)
    with pytest.raises(DecryptError, match="not a"):
        decrypt(b"")


@pytest.mark.parametrize("where", ["first-chunk", "middle-chunk", "last-tag", "chunk-size-field"])
def test_tampering_is_detected(where):
    data = os.urandom(6 * CHUNK + 77)
    blob = bytearray(encrypt(data))
    offset = {
        "first-chunk": HEADER_SIZE + 5,
        "middle-chunk": HEADER_SIZE + 3 * (CHUNK + TAG_SIZE) + 100,
        "last-tag": len(blob) - 1,
        "chunk-size-field": 8 + 3 + 2,  # the header is authenticated as associated data
    }[where]
    blob[offset] ^= 0x01
    with pytest.raises(DecryptError, match="fails authentication|truncated"):
        decrypt(bytes(blob))


def test_reordered_chunks_are_detected():
    blob = encrypt(os.urandom(4 * CHUNK + 10))
    block = CHUNK + TAG_SIZE
    head, body = blob[:HEADER_SIZE], blob[HEADER_SIZE:]
    swapped = head + body[block:2 * block] + body[:block] + body[2 * block:]
    with pytest.raises(DecryptError, match="chunk 0 fails authentication"):
        decrypt(swapped)


def test_data_after_the_final_chunk_is_refused():
    blob = encrypt(os.urandom(CHUNK + 10))
    # The final chunk is authenticated as final: anything appended changes where it ends.
    for extra in (b"x", b"extra" * 2000):
        with pytest.raises(DecryptError, match="chunk 1 fails authentication"):
            decrypt(blob + extra)


def test_salt_or_cost_tampering_reads_as_wrong_key():
    blob = bytearray(encrypt(b"y" * 100))
    blob[8] = 11  # scrypt log2(N) 10 -> 11
    with pytest.raises(DecryptError, match="wrong passphrase"):
        decrypt(bytes(blob))
    blob = bytearray(encrypt(b"y" * 100))
    blob[8] = 40  # absurd cost: refused before deriving anything
    with pytest.raises(DecryptError, match="impossible parameters"):
        decrypt(bytes(blob))


def test_encryptor_misuse():
    enc = Encryptor(PASS, ID, chunk_size=CHUNK, log_n=10)
    enc.finalize()
    with pytest.raises(ValueError):
        enc.update(b"x")
    with pytest.raises(ValueError):
        enc.finalize()
    with pytest.raises(ValueError):
        Encryptor(PASS, ID, chunk_size=10)
    with pytest.raises(ValueError, match="bound to its backup id"):
        Encryptor(PASS, "", chunk_size=CHUNK)


def test_another_backups_object_fails_on_its_first_chunk_before_any_byte_is_released():
    other = encrypt(b"secret rows " * 5000, backup_id="db-20261123T030000Z-ffffff")
    handed_on = []
    with pytest.raises(DecryptError, match=f"chunk 0 fails authentication for backup {ID}"):
        handed_on.append(decrypt_stream(io.BytesIO(other), PASS, bound_to=ID))
    assert handed_on == []  # the first chunk is checked before the reader is returned


def test_an_old_format_object_is_read_only_when_the_caller_vouches_for_it():
    legacy = _legacy_v1(b"old rows" * 100)
    assert identify(legacy) == crypto.SCHEME_V1
    with pytest.raises(DecryptError, match="older format .* not bound to backup"):
        decrypt(legacy)
    assert decrypt(legacy, bound_to=None) == b"old rows" * 100
    with pytest.raises(DecryptError, match="manifest says"):  # a bound object passed off as an old one
        decrypt(encrypt(b"x"), bound_to=None)


def _legacy_v1(data: bytes) -> bytes:
    """An object as the tool wrote it before binding (format 1: associated data = the header)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    salt = os.urandom(16)
    key, check = crypto._derive(PASS.encode(), salt, 10, 8, 1)
    header = crypto._HEADER.pack(crypto.MAGIC_V1, 10, 8, 1, CHUNK, salt, check)
    return header + AESGCM(key).encrypt(crypto._nonce(0, True), data, header)
