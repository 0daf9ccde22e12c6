"""Release records, rollback target choice, image tags and refs: pure logic."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ops import registry
from ops.deploy.image import Source, build_argv, check_version, version_for
from ops.deploy.release import Release, env_checksum, previous_good, release_id, releases_from_history
from ops.errors import ConfigError
from ops.inventory import load_environment
from ops.layout import Layout


def entry(rid: str, version: str, outcome: str) -> dict:
    return {"id": rid, "version": version, "image": f"img:{version}", "outcome": outcome}


def test_release_id_sorts_by_time_and_carries_the_version():
    rid = release_id("abc123", datetime(2026, 11, 24, 3, 0, 5, tzinfo=UTC))
    assert rid == "20261124T030005Z-abc123"
    assert Layout(load_environment("sandbox")).web_container(rid) == "athlete-platform-web-20261124t030005z-abc123"


def test_previous_release_is_the_one_deployed_before_the_current():
    history = [entry("20260101T000000Z-v1", "v1", "current"), entry("20260102T000000Z-v2", "v2", "current"),
               entry("20260103T000000Z-v3", "v3", "current")]
    assert previous_good(history, "20260103T000000Z-v3").version == "v2"


def test_after_rolling_back_the_previous_release_is_older_not_the_one_rolled_back_from():
    history = [entry("20260101T000000Z-v1", "v1", "current"), entry("20260102T000000Z-v2", "v2", "current"),
               entry("20260103T000000Z-v3", "v3", "current"),
               {**entry("20260102T000000Z-v2", "v2", "current"), "via": "rollback"}]
    assert previous_good(history, "20260102T000000Z-v2").version == "v1"


def test_a_release_that_never_served_is_never_a_rollback_target():
    history = [entry("20260101T000000Z-v1", "v1", "current"), entry("20260102T000000Z-bad", "bad", "rolled-back")]
    assert previous_good(history, "20260101T000000Z-v1") is None
    assert previous_good(history, None).version == "v1"


def test_rollback_to_a_named_version_takes_its_newest_release():
    history = [entry("20260101T000000Z-v1", "v1", "current"), entry("20260102T000000Z-v2", "v2", "current"),
               entry("20260103T000000Z-v1", "v1", "current")]
    assert previous_good(history, "20260103T000000Z-v1", version="v2").id == "20260102T000000Z-v2"
    assert previous_good(history, "20260102T000000Z-v2", version="v1").id == "20260103T000000Z-v1"
    assert previous_good(history, "20260102T000000Z-v2", version="v9") is None


def test_history_rows_keep_the_latest_outcome_newest_first():
    history = [entry("20260101T000000Z-v1", "v1", "current"), entry("20260102T000000Z-v2", "v2", "current"),
               entry("20260102T000000Z-v2", "v2", "rolled-back")]
    rows = releases_from_history(history)
    assert [(r["version"], r["outcome"]) for r in rows] == [("v2", "rolled-back"), ("v1", "current")]


def test_release_record_round_trips_and_names_its_outcome():
    rel = Release(id="20260101T000000Z-v1", version="v1", image="localhost:5000/app:v1", digest="sha256:ab",
                  env_sha256=env_checksum(b"A=1\n"), actor="me@here", time="2026-01-01T00:00:00.000000Z")
    data = json.loads(rel.record("current", host="web1"))
    assert data["outcome"] == "current" and data["host"] == "web1"
    assert Release.from_record(data) == rel
    assert len(rel.env_sha256) == 64


def test_clean_tree_is_tagged_with_the_commit_sha():
    assert version_for(Source(Path("/app"), "0123456789abcdef0123", ()), allow_dirty=False) == "0123456789ab"


def test_dirty_tree_is_refused_naming_the_files():
    src = Source(Path("/app"), "0123456789abcdef0123", ("server.js", "prisma/schema.prisma"))
    with pytest.raises(ConfigError) as err:
        version_for(src, allow_dirty=False)
    assert "uncommitted changes in /app: server.js, prisma/schema.prisma" in str(err.value)
    assert "--allow-dirty" in str(err.value)
    assert version_for(src, allow_dirty=True).startswith("0123456789ab-dirty-")


@pytest.mark.parametrize("bad", ["", "-x", "a b", "v1;rm", "$(id)", "x" * 129])
def test_malformed_version_is_refused(bad):
    with pytest.raises(ConfigError, match="is not a valid image tag"):
        check_version(bad)


def test_build_argv_tags_for_the_registry_with_build_args_and_revision_label():
    env = load_environment("sandbox")
    src = Source(Path("/src/app"), "f" * 40, ())
    assert build_argv(env, src, "ffffffffffff") == (
        "docker", "build", "--file", "/src/app/Dockerfile", "--tag", "127.0.0.1:5000/athlete-platform/web:ffffffffffff",
        "--label", "ops.app=athlete-platform", "--label", f"org.opencontainers.image.revision={'f' * 40}",
        "--build-arg", "BASE_IMAGE=ops-sandbox/debian:bookworm", "/src/app")


def test_tunnelled_registry_is_localhost_on_the_hosts():
    env = load_environment("sandbox")
    assert registry.app_refs(env, "v1") == ("127.0.0.1:5000/athlete-platform/web:v1",
                                            "localhost:5000/athlete-platform/web:v1")
    assert registry.service_ref(env, env.proxy.image) == "localhost:5000/sandbox/nginx:1.22"


def test_a_real_registry_is_the_same_ref_for_operator_and_hosts():
    env = load_environment("prod")
    assert registry.app_refs(env, "v1") == ("registry.example.com/athlete/web:v1",) * 2
    assert registry.service_ref(env, env.proxy.image) == "nginx:1.27"


def test_registry_login_reads_the_password_on_stdin_never_argv(monkeypatch):
    from ops.deploy.image import login_argv, registry_credentials

    monkeypatch.setenv("REGISTRY_USERNAME", "deployer")
    monkeypatch.setenv("REGISTRY_PASSWORD", "hunter2-registry")
    env = load_environment("prod")
    assert registry_credentials(env) == ("deployer", "hunter2-registry")
    argv = login_argv(env, "deployer")
    assert argv == ("docker", "login", "--username", "deployer", "--password-stdin", "registry.example.com")
    assert "hunter2-registry" not in " ".join(argv)


def test_no_registry_login_without_both_credentials(monkeypatch):
    from ops.deploy.image import registry_credentials

    monkeypatch.setenv("REGISTRY_USERNAME", "deployer")
    monkeypatch.delenv("REGISTRY_PASSWORD", raising=False)
    assert registry_credentials(load_environment("prod")) is None
