"""inv smoke's URL handling, maintenance messages, and what a notification carries."""

from __future__ import annotations

import dataclasses
import socket

import pytest

from ops.errors import ConfigError, OpsError
from ops.inventory import NotifySettings, load_environment
from ops.maintenance import check_message
from ops.masking import Masker
from ops.notify import Event, backup_failed
from ops.smoke import Site
from tests.support.receiver import Receiver


def test_a_url_names_where_to_connect_and_the_host_header():
    assert Site.from_url("https://example.org") == Site("example.org", "https", "example.org", 443, "example.org")
    assert Site.from_url("http://127.0.0.1:8101/").host_header == "127.0.0.1:8101"


@pytest.mark.parametrize("url", ["ftp://example.org", "example.org", "https://example.org/login", "https://x.org/?a=1"])
def test_a_url_that_is_not_a_site_base_is_a_usage_error(url):
    with pytest.raises(ConfigError):
        Site.from_url(url)


def test_a_maintenance_message_that_could_break_out_of_the_nginx_string_is_refused():
    assert check_message("") == "Down for maintenance. Back soon."
    assert check_message("Upgrading storage, back at 14:00") == "Upgrading storage, back at 14:00"
    for bad in ('x"; return 200;', "costs $5", "a\nb", "x" * 201, "{}"):
        with pytest.raises(ConfigError):
            check_message(bad)


def test_the_webhook_payload_is_slack_shaped_and_skips_empty_facts():
    event = Event("deploy", "prod", "deployed v2 on web1", version="v2", hosts=["web1"], fields={"smoke": "passed"})
    payload = event.webhook_payload()
    assert payload["text"] == "[prod] deployed: deployed v2 on web1"
    fields = {f["title"]: f["value"] for f in payload["attachments"][0]["fields"]}
    assert fields == {"environment": "prod", "version": "v2", "hosts": "web1", "smoke": "passed"}


def test_a_failed_backup_is_announced_once_with_its_secret_masked(monkeypatch):
    with Receiver() as r:
        monkeypatch.setenv("OPS_UNIT_WEBHOOK", f"{r.url}/hook/T1/B1/tok3nvalue")
        env = load_environment("sandbox")
        env = dataclasses.replace(env, notify=NotifySettings(webhook_var="OPS_UNIT_WEBHOOK"))
        masker = Masker(["hunter2pass"])
        warnings = backup_failed(env, "db", OpsError("pg_dump: password hunter2pass refused\nmore"), masker)
    assert warnings == []
    (sent,) = r.requests
    assert sent.json["text"] == "[sandbox] backup FAILED: db backup failed: pg_dump: password ******** refused"
    assert b"hunter2pass" not in sent.body and b"tok3nvalue" not in sent.body


def test_an_unset_webhook_variable_is_a_warning_naming_the_variable(monkeypatch):
    monkeypatch.delenv("OPS_UNIT_MISSING", raising=False)
    env = dataclasses.replace(load_environment("sandbox"), notify=NotifySettings(webhook_var="OPS_UNIT_MISSING"))
    (warning,) = backup_failed(env, "uploads", OpsError("boom"))
    assert warning.startswith("webhook notification not sent: OPS_UNIT_MISSING is not set in ")
    assert warning.endswith("the environment" + ("" if env.ops_env_file else " (no ops_env_file set)"))


def test_an_unreachable_receiver_is_a_warning_without_the_url(monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("OPS_UNIT_WEBHOOK", f"http://127.0.0.1:{port}/hook/T1/B1/tok3nvalue")
    env = dataclasses.replace(load_environment("sandbox"), notify=NotifySettings(webhook_var="OPS_UNIT_WEBHOOK"))
    (warning,) = backup_failed(env, "db", OpsError("boom"))
    assert warning.startswith("webhook notification (OPS_UNIT_WEBHOOK) not sent: ") and "tok3n" not in warning
