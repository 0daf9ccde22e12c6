"""Notifications after a deploy and a rollback on the sandbox fleet, and on backup problems through
the real CLI, seen by a local receiver standing in for Slack's webhook and Sentry's API
(tests/support/receiver.py)."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from ops.appenv import load_env_file
from ops.deploy.pipeline import DeployRequest, rollback
from ops.inventory import NotifySettings
from ops.postdeploy import after_release
from tests.support import deployed
from tests.support.app_repo import apply_variant
from tests.support.deployed import serving_everywhere
from tests.support.fleet import inv
from tests.support.inventory_copy import inventory_copy
from tests.support.receiver import Receiver

WEBHOOK_TOKEN = "T0001/B0001/whs3cr3tXYZ123"
SENTRY_TOKEN = "sntrys_s3cr3t_t0k3n_for_tests"
RELEASES = "/api/0/organizations/athlete/releases/"

deployed_app = deployed.deployed_app  # the shared fixture, under its name


@pytest.fixture
def receiver(monkeypatch):
    with Receiver() as r:
        monkeypatch.setenv("OPS_TEST_WEBHOOK_URL", f"{r.url}/hooks/{WEBHOOK_TOKEN}")
        monkeypatch.setenv("OPS_TEST_SENTRY_TOKEN", SENTRY_TOKEN)
        yield r


def with_notify(env, url):
    return dataclasses.replace(env, notify=NotifySettings(
        webhook_var="OPS_TEST_WEBHOOK_URL", sentry_url=url, sentry_org="athlete", sentry_project="athlete-platform",
        sentry_token_var="OPS_TEST_SENTRY_TOKEN", timeout=5))


def secrets(env) -> list[bytes]:
    values = load_env_file(env.env_file)
    app = [v for k, v in values.items() if any(w in k for w in ("PASSWORD", "SECRET", "DATABASE_URL")) and len(v) > 3]
    return [s.encode() for s in (WEBHOOK_TOKEN, SENTRY_TOKEN, *app)]


@pytest.fixture(scope="module")
def v2(deployed_app):
    apply_variant(deployed_app.env.build.source, "v2")
    return deployed_app


def test_one_deploy_sends_one_webhook_payload_a_sentry_release_and_a_deploy_marker(v2, receiver):
    env = with_notify(v2.env, receiver.url)
    result = v2.redeploy()
    lines: list[str] = []
    after = after_release(env, "deploy", result, lines.append)
    version = result.release.version
    hooks = receiver.at("/hooks/")
    assert len(hooks) == 1
    text = hooks[0].json["text"]
    assert text.startswith(f"[sandbox] deployed: deployed {version} on web1, web2; smoke: passed")
    fields = {f["title"]: f["value"] for f in hooks[0].json["attachments"][0]["fields"]}
    assert fields["release"] == result.release.id and fields["environment"] == "sandbox"
    release, marker = receiver.at(RELEASES)
    assert release.path == RELEASES and release.json == {"version": version, "projects": ["athlete-platform"]}
    assert marker.path == f"{RELEASES}{version}/deploys/" and marker.json["environment"] == "sandbox"
    assert release.headers["Authorization"] == marker.headers["Authorization"] == f"Bearer {SENTRY_TOKEN}"
    assert after.sent == ["webhook", "sentry release", "sentry deploy"]
    assert not any("not sent" in w or "not accepted" in w for w in after.warnings)
    for request in receiver.requests:
        for secret in secrets(v2.env):
            if request.path.startswith("/hooks/") and secret == WEBHOOK_TOKEN.encode():
                continue  # the URL itself is the secret; it must only be in the path, never in a body
            assert secret not in request.body
    assert serving_everywhere(env) == version


def test_a_rollback_is_announced_and_a_receiver_answering_500_is_a_warning_never_an_error(v2, receiver):
    env = with_notify(v2.env, receiver.url)
    receiver.status = 500
    result = rollback(env, DeployRequest(), None, [].append)
    after = after_release(env, "rollback", result, [].append)
    assert result.release.version == v2.version  # the fleet is back on the module's release
    (hook,) = receiver.at("/hooks/")
    assert hook.json["text"].startswith(f"[sandbox] rolled back: rolled back to {v2.version} on web1, web2")
    assert "webhook notification (OPS_TEST_WEBHOOK_URL) not accepted: HTTP 500" in after.warnings
    assert "Sentry release not accepted: HTTP 500" in after.warnings
    assert not any(WEBHOOK_TOKEN in w or SENTRY_TOKEN in w or receiver.url in w for w in after.warnings)
    assert after.sent == []
    assert serving_everywhere(env) == v2.version


# -- backup problems through the real CLI (inventory copies with a notify: section) -------------
def cli_notify(url: str) -> dict:
    return {"webhook_var": "OPS_TEST_WEBHOOK_URL", "events": ["backup_failed", "backup_stale"],
            "sentry_url": url, "sentry_org": "athlete", "sentry_project": "athlete-platform",
            "sentry_token_var": "OPS_TEST_SENTRY_TOKEN"}


def test_a_failing_backup_db_sends_one_backup_failed_payload_and_fails_with_its_own_error(deployed_app, receiver):
    # A bucket that does not exist: pg_dump runs, the upload is refused by the real S3 endpoint.
    with inventory_copy(deployed_app.env, "notify", notify=cli_notify(receiver.url),
                        s3={"bucket": "ops-sandbox-no-such-bucket"}) as name:
        proc = inv("backup.db", "--host", name)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.strip().splitlines()[-1].startswith("error: ")
    (hook,) = receiver.requests
    assert hook.path.startswith("/hooks/")
    text = hook.json["text"]
    assert text.startswith(f"[{name}] backup FAILED: db backup failed: db1: S3 upload failed: NoSuchBucket"), text
    fields = {f["title"]: f["value"] for f in hook.json["attachments"][0]["fields"]}
    assert fields == {"environment": name, "kind": "db"}
    for secret in secrets(deployed_app.env):
        assert secret not in hook.body


def test_a_stale_backup_found_by_backup_check_sends_one_backup_stale_payload(receiver, sandbox_env):
    # An empty prefix of the real bucket: no db backup at all, as after a week of failing crons.
    with inventory_copy(sandbox_env, "notify", notify=cli_notify(receiver.url),
                        s3={"prefix": f"notify-empty-{uuid.uuid4().hex[:8]}/"}) as name:
        proc = inv("backup.check", "--host", name)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: db backup of {name} is stale or missing")
    (hook,) = receiver.requests
    assert hook.json["text"].startswith(f"[{name}] backup STALE: ")
    fields = {f["title"]: f["value"] for f in hook.json["attachments"][0]["fields"]}
    assert fields["kinds"] == "db"
    assert not receiver.at("/api/0/")  # no Sentry call for a backup problem
    for secret in secrets(sandbox_env):
        assert secret not in hook.body
