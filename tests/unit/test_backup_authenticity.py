"""ops/backup/authenticity.py: the manifest HMAC survives the JSON round trip and catches every change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ops.backup import authenticity
from ops.backup.manifest import Manifest

KEY = authenticity.manifest_key("correct horse battery staple")
OTHER = authenticity.manifest_key("another passphrase entirely")


def manifest(**fields) -> Manifest:
    started = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    base = dict(id="db-20261124T030000Z-a1b2c3", kind="db", env="prod",
                object_key="b/db/2026/11/24/db-20261124T030000Z-a1b2c3.dump.enc", size=10, sha256="a" * 64,
                started_at=started, finished_at=started + timedelta(minutes=5),
                # a server clock in another zone, microseconds: must read back to the same bytes
                snapshot_at=datetime(2026, 11, 24, 4, 0, 1, 123456, tzinfo=timezone(timedelta(hours=1))),
                encryption={"scheme": "aes-256-gcm-chunked+scrypt/v2", "bound_to": "db-20261124T030000Z-a1b2c3"},
                table_counts={"public.t": 3}, extra={"reason": "pre-restore safety backup"})
    base.update(fields)
    return Manifest(**base)


def test_a_signed_manifest_reads_back_authentic_and_the_wrong_key_or_none_says_so():
    m = authenticity.sign(manifest(), KEY)
    back = Manifest.from_json(m.to_json())
    assert authenticity.status(back, KEY) == "ok"
    assert authenticity.check(back, KEY, env_name="prod").authenticated
    assert authenticity.status(back, OTHER) == "FORGED"
    assert authenticity.status(back, None) == "-"
    assert authenticity.status(manifest(), KEY) == "none"


@pytest.mark.parametrize("field, value", [
    ("id", "db-20261124T030000Z-ffffff"), ("kind", "uploads"), ("env", "staging"), ("size", 11),
    ("sha256", "b" * 64), ("encryption", None), ("extra", {}), ("table_counts", {"public.t": 4}),
])
def test_any_change_after_signing_fails(field, value):
    m = authenticity.sign(manifest(), KEY)
    setattr(m, field, value)
    with pytest.raises(authenticity.NotAuthentic, match="fails authentication"):
        authenticity.check(m, KEY, env_name="prod")
