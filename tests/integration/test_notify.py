"""Notifications after a deploy and a rollback on the sandbox fleet, seen by a local receiver
standing in for Slack's webhook and Sentry's API (tests/support/receiver.py)."""

from __future__ import annotations

import dataclasses

import pytest

from ops.appenv import load_env_file
from ops.deploy.pipeline import DeployRequest, rollback
from ops.inventory import NotifySettings
from ops.postdeploy import after_release
from tests.support import deployed
from tests.support.app_repo import apply_variant
from tests.support.deployed import serving_everywhere
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
