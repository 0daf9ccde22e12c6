"""A deploy or rollback that stops is announced (deploy_failed: step, failing hosts, no secret, no
Sentry marker); a deploy whose smoke check failed is coloured as a failure."""

from __future__ import annotations

import dataclasses

import pytest

from ops.deploy.pipeline import DeployFailed, DeployResult
from ops.deploy.release import Release
from ops.errors import ConfigError, HostError, OpsError
from ops.inventory import NotifySettings, load_environment
from ops.masking import Masker
from ops.postdeploy import _event, announcing_failure, failed_event, failing_hosts
from ops.remote import FleetError
from tests.support.receiver import Receiver


def switch_failure() -> DeployFailed:
    """What the pipeline raises when web2's new container fails its health check."""
    try:
        try:
            raise FleetError("start of abc123", {"web2": HostError("health check failed: 500", host="web2")}, total=2)
        except FleetError as exc:
            raise DeployFailed(f"deploy of abc123 failed during the switch: {exc}\n  web1: back on old1") from None
    except DeployFailed as exc:
        return exc


def test_the_failing_hosts_come_from_the_step_error_the_deploy_error_wraps():
    assert failing_hosts(switch_failure()) == ["web2"]
    assert failing_hosts(OpsError("pull failed", host="web1")) == ["web1"]
    assert failing_hosts(OpsError("docker build failed")) == []


def test_the_payload_names_the_environment_version_step_and_host_with_secrets_masked():
    env = load_environment("sandbox")
    err = OpsError("migration failed: password=hunter2pass rejected", host="web1")
    event = failed_event(env, "deploy", "abc123", err, Masker(["hunter2pass"]))
    payload = event.webhook_payload()
    assert payload["text"] == ("[sandbox] deploy FAILED: deploy of abc123 FAILED on web1: "
                               "web1: migration failed: password=******** rejected")
    fields = {f["title"]: f["value"] for f in payload["attachments"][0]["fields"]}
    assert fields["environment"] == "sandbox" and fields["version"] == "abc123" and fields["hosts"] == "web1"
    assert fields["action"] == "deploy" and payload["attachments"][0]["color"] == "danger"
    assert "hunter2pass" not in str(payload)
    switch = failed_event(env, "deploy", "abc123", switch_failure(), Masker())
    assert switch.fields["step"].startswith("deploy of abc123 failed during the switch: start of abc123")
    assert "web1: back on old1" in switch.fields["outcome"]
    long = OpsError("deploy of abc123 failed during the switch\n" + "\n".join(["  web2: log line " + "x" * 80] * 9)
                    + "\n  web1: back on old1\n  web2: back on old1")
    outcome = failed_event(env, "deploy", "abc123", long, Masker()).fields["outcome"]
    assert len(outcome) == 400 and outcome.startswith("...") and outcome.endswith("web1: back on old1 web2: back on old1")


def test_a_failure_sends_one_webhook_and_no_sentry_marker_then_goes_on(monkeypatch):
    env = load_environment("sandbox")
    with Receiver() as r:
        monkeypatch.setenv("OPS_UNIT_WEBHOOK", f"{r.url}/hook/T1/B1/tok3nvalue")
        monkeypatch.setenv("OPS_UNIT_SENTRY", "sntrys_unit")
        env = dataclasses.replace(env, notify=NotifySettings(
            webhook_var="OPS_UNIT_WEBHOOK", sentry_url=r.url, sentry_org="athlete", sentry_project="web",
            sentry_token_var="OPS_UNIT_SENTRY"))
        warnings: list[str] = []
        with pytest.raises(DeployFailed), announcing_failure(env, "rollback", "old1", Masker(), warnings.append):
            raise switch_failure()
        with pytest.raises(ConfigError), announcing_failure(env, "deploy", "abc123", Masker(), warnings.append):
            raise ConfigError("--batch 'x' is not a whole number")  # a refusal: nothing was attempted
    (sent,) = r.requests
    assert sent.path.startswith("/hook/") and warnings == []
    assert sent.json["text"].startswith("[sandbox] deploy FAILED: rollback to old1 FAILED on web2: ")
    assert b"tok3nvalue" not in sent.body and b"sntrys_unit" not in sent.body


def test_a_deploy_whose_smoke_check_failed_is_coloured_as_a_failure():
    env = load_environment("sandbox")
    result = DeployResult(Release(id="r1", version="v2", image="i", digest="", env_sha256=""), ["web1"])
    failed = _event(env, "deploy", result, "FAILED (1 of 9: web1 header X)").webhook_payload()
    passed = _event(env, "deploy", result, "passed (9 checks)").webhook_payload()
    assert failed["attachments"][0]["color"] == "danger" and passed["attachments"][0]["color"] == "good"
    assert failed["text"] == "[sandbox] deployed: deployed v2 on web1; smoke: FAILED (1 of 9: web1 header X)"
