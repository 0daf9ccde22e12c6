"""The smoke check after a deploy: reported (smoke.on_failure: report, the default) or followed by a
rollback (rollback), and announced in one webhook payload per deploy or rollback."""

from __future__ import annotations

import dataclasses

import pytest

from ops.inventory import NotifySettings
from ops.postdeploy import after_release
from tests.support import deployed
from tests.support.deployed import serving_everywhere
from tests.support.receiver import Receiver

deployed_app = deployed.deployed_app  # the shared fixture, under its name


@pytest.fixture
def receiver(monkeypatch):
    with Receiver() as r:
        monkeypatch.setenv("OPS_TEST_WEBHOOK_URL", f"{r.url}/hooks/T2/B2/smoketoken")
        yield r


def failing_smoke(env, on_failure: str, url: str):
    # A header the site does not send: the smoke check fails for a real reason, on a live site.
    smoke = dataclasses.replace(env.smoke, headers=(*env.smoke.headers, "X-Ops-Test-Missing"), on_failure=on_failure)
    return dataclasses.replace(env, smoke=smoke, notify=NotifySettings(webhook_var="OPS_TEST_WEBHOOK_URL"))


def test_a_failing_smoke_check_is_reported_by_default_and_rolls_back_when_the_inventory_says_so(deployed_app,
                                                                                               receiver):
    before = deployed_app.version
    result = deployed_app.redeploy()
    new = result.release.version
    assert new != before and serving_everywhere(deployed_app.env) == new

    lines: list[str] = []
    report = after_release(failing_smoke(deployed_app.env, "report", receiver.url), "deploy", result, lines.append)
    assert report.smoke_failed and report.rolled_back is None
    assert any("header X-Ops-Test-Missing" in ln and "checks failed" in ln for ln in lines)
    assert serving_everywhere(deployed_app.env) == new  # reported, nothing else
    (hook,) = receiver.at("/hooks/")
    assert f"deployed {new} on web1, web2; smoke: FAILED (2 of " in hook.json["text"]

    back = after_release(failing_smoke(deployed_app.env, "rollback", receiver.url), "deploy", result, lines.append)
    assert back.rolled_back is not None and back.rolled_back.release.version == before
    assert serving_everywhere(deployed_app.env) == before
    texts = [r.json["text"] for r in receiver.at("/hooks/")]
    assert len(texts) == 3  # the first deploy's, this deploy's, and the rollback it caused
    assert texts[1].startswith(f"[sandbox] deployed: deployed {new}") and "smoke: FAILED" in texts[1]
    assert texts[2].startswith(f"[sandbox] rolled back: rolled back to {before} on web1, web2; smoke: FAILED")
