"""The inventory's smoke: and notify: sections: defaults, and one line per mistake."""

from __future__ import annotations

from ops.inventory import load_environment
from tests.unit import test_inventory as base
from tests.unit.test_inventory import only_problem, valid, write

inv = base.inv  # the fixture (a temp inventory directory), under its name


def test_defaults_are_the_seed_criteria_and_no_notifications(inv):
    write(inv, "prod", valid())
    env = load_environment("prod", inv)
    assert (env.smoke.page_max_seconds, env.smoke.websocket_max_seconds, env.smoke.on_failure) == (3.0, 1.0, "report")
    assert env.smoke.headers == ("X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy",
                                 "Content-Security-Policy")
    assert env.notify.webhook_var is None and env.notify.sentry_org is None


def test_smoke_on_failure_must_be_report_or_rollback(inv):
    assert only_problem(inv, "prod", valid(smoke={"on_failure": "retry"})) == (
        "smoke.on_failure: 'retry' is not a choice — use one of: report, rollback")


def test_smoke_url_with_a_path_is_refused(inv):
    problem = only_problem(inv, "prod", valid(smoke={"url": "https://example.org/app"}))
    assert problem.startswith("smoke.url: 'https://example.org/app' is not valid")


def test_smoke_paths_must_start_with_a_slash(inv):
    assert only_problem(inv, "prod", valid(smoke={"paths": ["login"]})).startswith(
        "smoke.paths: must be a list of paths starting with '/'")


def test_notify_names_variables_never_values(inv):
    problem = only_problem(inv, "prod", valid(notify={"webhook_var": "https://hooks.slack.com/services/T0/B0/x"}))
    assert problem.startswith("notify.webhook_var: 'https://hooks.slack.com/services/T0/B0/x' is not valid")
    assert "OPS_WEBHOOK_URL" in problem


def test_notify_sentry_org_without_project_is_one_problem(inv):
    assert only_problem(inv, "prod", valid(notify={"sentry_org": "athlete"})) == (
        "notify: sentry_org and sentry_project go together — set both, or neither")


def test_notify_unknown_event_is_named(inv):
    assert only_problem(inv, "prod", valid(notify={"events": ["deploy", "deploy_started"]})).startswith(
        "notify.events: must be a list of events")
