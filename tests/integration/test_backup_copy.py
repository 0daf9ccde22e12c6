"""The second copy of logical backups (``s3.copy``) on the sandbox fleet: a backup exists in both buckets
with the same authenticated manifest; when the primary loses the object, a restore reads the copy
(pg_restore from it into a new database, checked against the manifest) and so does a drill; a copy
whose manifest was changed without the key is refused.

One backup of a tiny database of ours (``scratch`` from test_backup: its own database and S3 prefix).
"""

from __future__ import annotations

import dataclasses
import os

import pytest

from ops.backup import dump, second_copy, verify
from ops.backup.catalog import list_backups
from ops.backup.context import BackupContext
from ops.backup.manifest import Manifest, manifest_key
from ops.postgres import pg_target
from ops.remote import Gateway
from ops.restore import database
from ops.restore.errors import RestoreRefused
from ops.restore.plan import prepare_db
from tests.integration.test_backup import admin, base, connect, scratch  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration


@pytest.fixture
def enc_ctx(scratch, tmp_path):  # noqa: F811 - fixture
    env, _, _ = scratch
    assert env.s3.copy is not None, "inventory/sandbox.yml sets s3.copy"
    ops_env = tmp_path / "ops.env"
    ops_env.write_text("BACKUP_PASSPHRASE=second-copy-passphrase-for-the-sandbox\n")
    os.chmod(ops_env, 0o600)
    return BackupContext(dataclasses.replace(
        env, ops_env_file=ops_env, backup=dataclasses.replace(env.backup, encryption_key_var="BACKUP_PASSPHRASE")))


def stored(client, bucket: str, key: str) -> bytes:
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def test_a_backup_in_both_buckets_restores_from_the_copy_and_a_forged_copy_is_refused(enc_ctx, scratch):  # noqa: F811
    ctx = enc_ctx
    env, values, dbname = scratch
    cc = ctx.copy_context()
    with Gateway(ctx.env) as gw:
        m = dump.backup_db(ctx, gw, checksums=False, lock_wait=60)
        assert ctx.warnings == []
        # 1. in both buckets, the same bytes; the same manifest (same HMAC)
        mkey = manifest_key(m.object_key)
        assert stored(cc.client, cc.bucket, mkey) == stored(ctx.client, ctx.bucket, mkey)
        assert stored(cc.client, cc.bucket, m.object_key) == stored(ctx.client, ctx.bucket, m.object_key)
        located = second_copy.locate(list_backups(ctx.env, ctx.client), list_backups(cc.env, cc.client),
                                     ctx.manifest_key())
        assert [(loc.id, loc.where) for loc in located] == [(m.id, "both")]

        # 2. the primary loses the object: the restore plan reads the copy, says so, and pg_restore is fed
        # from the copy into a new database that matches the manifest
        ctx.client.delete_object(Bucket=ctx.bucket, Key=m.object_key)
        plan = prepare_db(ctx, gw, backup_id=m.id)
        assert plan.checked.source == "copy" and plan.checked.bucket == cc.bucket
        assert any("from the second copy" in w for w in plan.warnings)
        assert any("from the SECOND COPY" in line for line in plan.lines())
        target = pg_target(ctx.env, ctx.app_values())
        database.create_database(gw, target, plan.new_db, plan.live)
        try:
            database.restore_into(ctx, gw, target, m, plan.new_db, plan.role, plan.checked,
                                  db_owner=plan.live.owner if plan.live else target.user)
            assert database.verify_restored(gw, target, plan.new_db, m) == []
            with connect(values, plan.new_db) as conn:
                assert conn.execute("SELECT count(*) FROM ops_bk_items").fetchone()[0] == 3
        finally:
            database.drop_database(gw, target, plan.new_db)
        # a drill of it reads the copy too (and records its outcome there)
        assert verify.verify(ctx, gw, m.id).ok
        assert Manifest.from_json(stored(cc.client, cc.bucket, mkey)).verified_ok

        # 3. the copy's manifest changed by someone without the key: refused before anything is read
        data = Manifest.from_json(stored(cc.client, cc.bucket, mkey))
        data.table_counts = {**data.table_counts, "public.ops_bk_items": 4}
        cc.client.put_object(Bucket=cc.bucket, Key=mkey, Body=data.to_json())
        with pytest.raises(RestoreRefused, match="fails authentication"):
            prepare_db(ctx, gw, backup_id=m.id)
