"""A deploy that fails (a health check failing on every web host) through the real CLI, with a
notify: section: one deploy_failed webhook payload naming the environment, the version, the step
and the failing hosts; no Sentry release or marker; no secret; every host back on the old release."""

from __future__ import annotations

from ops.appenv import load_env_file
from tests.faults import helpers as h
from tests.support.inventory_copy import inventory_copy
from tests.support.receiver import Receiver

WEBHOOK_TOKEN = "T0009/B0009/failedd3pl0yt0k3n"
SENTRY_TOKEN = "sntrys_failed_deploy_t0k3n"


def test_a_failed_deploy_sends_one_deploy_failed_payload_and_no_sentry_marker(fleet):
    old = h.assert_one_version()
    tag = fleet.broken_health
    with Receiver() as receiver, inventory_copy(fleet.env, "notify", notify={
            "webhook_var": "OPS_TEST_WEBHOOK_URL", "sentry_url": receiver.url, "sentry_org": "athlete",
            "sentry_project": "athlete-platform", "sentry_token_var": "OPS_TEST_SENTRY_TOKEN"}) as name:
        out = h.run_inv("deploy", "--host", name, "--version", tag, "--health-timeout", "8",
                        env={"OPS_TEST_WEBHOOK_URL": f"{receiver.url}/hooks/{WEBHOOK_TOKEN}",
                             "OPS_TEST_SENTRY_TOKEN": SENTRY_TOKEN})
    h.assert_one_clear_error(out, 1, "health")
    h.assert_one_version({old})
    h.assert_lock_free()
    assert receiver.at("/api/0/") == []  # nothing new serves: no Sentry release, no deploy marker
    (hook,) = receiver.requests
    text = hook.json["text"]
    assert text.startswith(f"[{name}] deploy FAILED: deploy of {tag} FAILED on web1, web2: "
                           f"deploy of {tag} failed during the switch: start of {tag}: 2 of 2 host(s) failed"), text
    fields = {f["title"]: f["value"] for f in hook.json["attachments"][0]["fields"]}
    assert fields["environment"] == name and fields["version"] == tag and fields["hosts"] == "web1, web2"
    assert fields["action"] == "deploy" and "back on" in fields["outcome"]
    assert hook.json["attachments"][0]["color"] == "danger"
    app_secrets = [v for k, v in load_env_file(fleet.env.env_file).items()
                   if any(w in k for w in ("PASSWORD", "SECRET", "DATABASE_URL")) and len(v) > 3]
    for secret in (WEBHOOK_TOKEN, SENTRY_TOKEN, *app_secrets):
        assert secret.encode() not in hook.body
