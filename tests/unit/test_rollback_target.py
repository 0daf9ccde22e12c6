"""``inv rollback`` goes back: the target is the release that served before the current one
in the host's history of what was current, and never one that runs the image serving now."""

from __future__ import annotations

import pytest

from ops.deploy import pipeline
from ops.deploy.pipeline import Deployment, DeployRequest
from ops.deploy.release import Release, no_change_reason, previous_good, same_image, served_sequence
from ops.errors import OpsError
from ops.inventory import load_environment
from ops.remote import RunResult
from tests.support.fakes import sequential_map

DIGEST = {"A": "sha256:aaaa", "B": "sha256:bbbb", "C": "sha256:cccc"}


class Host:
    """One host's history.jsonl, written the way the pipeline writes it."""

    def __init__(self):
        self.entries: list[dict] = []
        self.clock = 0

    def deploy(self, image: str, *, outcome: str = "current") -> str:
        self.clock += 1
        rid = f"2026010{self.clock}T000000Z-{image.lower()}"
        self.entries.append({"id": rid, "version": image.lower(), "image": f"localhost:5000/app:{image.lower()}",
                             "digest": DIGEST[image], "env_sha256": "e1", "outcome": outcome})
        return rid

    def rollback(self, to: str | None = None, *, version: str | None = None) -> Release:
        target = previous_good(self.entries, self.current, version=version) if to is None else self.release(to)
        assert target is not None, "no rollback target"
        self.entries.append({**self.record(target.id), "via": "rollback"})
        return target

    @property
    def current(self) -> str | None:
        return served_sequence(self.entries)[-1]["id"] if served_sequence(self.entries) else None

    def record(self, rid: str) -> dict:
        return next(e for e in reversed(self.entries) if e["id"] == rid)

    def release(self, rid: str) -> Release:
        return Release.from_record(self.record(rid))

    def target(self, version: str | None = None) -> Release | None:
        return previous_good(self.entries, self.current, version=version)


# ---------------------------------------------------------------- the rule


def test_the_target_is_the_release_deployed_before_the_current_one():
    host = Host()
    a = host.deploy("A")
    host.deploy("B")
    assert host.target().id == a


def test_after_deploy_rollback_and_a_redeploy_of_the_same_version_rollback_goes_to_the_release_before_it():
    host = Host()
    a = host.deploy("A")
    host.deploy("B")
    assert host.rollback().id == a
    host.deploy("B")                       # B again: same image, new release id
    target = host.target()
    assert target.id == a
    assert not same_image(target, host.release(host.current))


def test_rolling_back_twice_in_a_row_goes_back_twice_then_has_nowhere_to_go():
    host = Host()
    a = host.deploy("A")
    b = host.deploy("B")
    host.deploy("C")
    assert host.rollback().id == b
    assert host.rollback().id == a
    assert host.target() is None


def test_a_release_rolled_back_from_no_longer_counts_as_having_served_before_its_target():
    host = Host()
    a = host.deploy("A")
    b = host.deploy("B")
    c = host.deploy("C")
    host.rollback()                        # C -> B
    assert [e["id"] for e in served_sequence(host.entries)] == [a, b]
    assert c not in [e["id"] for e in served_sequence(host.entries)]


def test_a_rollback_to_a_release_rolled_back_from_earlier_counts_like_a_deploy():
    host = Host()
    a = host.deploy("A")
    b = host.deploy("B")
    host.rollback()                        # B -> A
    host.rollback(to=b)                    # --to B: forward again
    assert host.current == b
    assert host.target().id == a


def test_a_failed_deploy_that_was_put_back_is_never_a_target():
    host = Host()
    a = host.deploy("A")
    b = host.deploy("B")
    host.deploy("C", outcome="rolled-back")
    assert host.current == b
    assert host.target().id == a


def test_with_no_history_of_the_current_release_the_newest_release_that_served_is_the_target():
    host = Host()
    host.deploy("A")
    b = host.deploy("B")
    assert previous_good(host.entries, None).id == b
    assert previous_good(host.entries, "20990101T000000Z-unknown").id == b


def test_to_version_takes_the_release_of_that_version_that_served_most_recently():
    host = Host()
    host.deploy("A")
    b1 = host.deploy("B")
    host.deploy("C")
    host.rollback(to=b1)                   # B (older release) serves again
    b2 = host.deploy("B")                  # a newer release of B...
    host.rollback(to=b1)                   # ...rolled back to the older one
    host.deploy("C")
    assert host.target(version="b").id == b1
    assert b2 != b1


def test_to_version_never_names_the_current_release_and_unknown_versions_have_no_target():
    host = Host()
    a = host.deploy("A")
    assert host.target(version="a") is None
    host.deploy("B")
    assert host.target(version="a").id == a
    assert host.target(version="zzz") is None


# ---------------------------------------------------------------- same image


def release(image: str, digest: str = "", env: str = "e1", rid: str = "20260101T000000Z-x") -> Release:
    return Release(id=rid, version=image, image=f"localhost:5000/app:{image}", digest=digest, env_sha256=env)


def test_two_releases_with_one_digest_run_the_same_image_whatever_their_refs():
    assert same_image(release("b", "sha256:bb"), release("b", "sha256:bb"))
    assert same_image(release("b", "sha256:bb"), release("b-retag", "sha256:bb"))


def test_a_tag_pushed_again_with_new_content_is_a_different_image():
    assert not same_image(release("b", "sha256:b1"), release("b", "sha256:b2"))


def test_without_a_digest_on_either_side_the_image_refs_are_compared():
    assert same_image(release("b", ""), release("b", "sha256:bb"))
    assert not same_image(release("a", ""), release("b", "sha256:bb"))


def test_the_refusal_names_the_release_and_its_digest_in_one_line():
    reason = no_change_reason(release("b", "sha256:bb", rid="20260102T000000Z-b"), release("b", "sha256:bb"))
    assert reason == ("release 20260102T000000Z-b runs the same image (sha256:bb) as what serves now: "
                      "rolling back to it would change nothing")
    assert no_change_reason(release("a", "sha256:aa"), release("b", "sha256:bb")) is None
    assert no_change_reason(release("a", "sha256:aa"), None) is None


def test_the_refusal_names_the_image_ref_when_a_digest_is_missing():
    reason = no_change_reason(release("b", ""), release("b", "sha256:bb"))
    assert "runs the same image (localhost:5000/app:b) as what serves now" in reason


def test_the_refusal_says_when_only_the_env_file_differs():
    reason = no_change_reason(release("b", "sha256:bb", env="e2"), release("b", "sha256:bb", env="e1"))
    assert reason.endswith("only its env file differs, so rolling back to it would not change the code")


# ---------------------------------------------------------------- plan_rollback


class FakeGateway:
    """Runs ``map`` in turn; every ``test -f`` of a release env file succeeds."""

    def __init__(self, env):
        self.env = env

    def map(self, fn, hosts=None):
        return sequential_map(fn, hosts)

    def query(self, host, command, **kwargs):
        return RunResult(host.name, " ".join(command))


def planner(monkeypatch, histories: dict[str, Host]) -> Deployment:
    env = load_environment("sandbox")
    run = Deployment.__new__(Deployment)
    run.env, run.req, run.say, run.gw = env, DeployRequest(), lambda line: None, FakeGateway(env)
    run.all_hosts = list(env.hosts.values())
    run.web = [h for h in run.all_hosts if "web" in h.roles]
    run.warnings = []
    monkeypatch.setattr(pipeline, "preflight", lambda gw, hosts: None)
    monkeypatch.setattr(pipeline, "read_history", lambda gw, host: histories[host.name].entries)
    monkeypatch.setattr(pipeline, "current_release",
                        lambda gw, host: histories[host.name].release(histories[host.name].current))
    return run


def fleet(*steps: str) -> dict[str, Host]:
    """Both web hosts through the same steps: an image name deploys it, "rollback" rolls back."""
    hosts = {"web1": Host(), "web2": Host()}
    for host in hosts.values():
        for step in steps:
            host.rollback() if step == "rollback" else host.deploy(step)
    return hosts


def test_plan_rollback_after_deploy_rollback_deploy_of_the_same_version_targets_the_older_image(monkeypatch):
    hosts = fleet("A", "B", "rollback", "B")
    plan = planner(monkeypatch, hosts).plan_rollback(None)
    assert plan.target.version == "a"
    assert plan.target.digest == DIGEST["A"]


def test_plan_rollback_refuses_a_target_that_runs_the_image_serving_now_in_one_line(monkeypatch):
    hosts = fleet("A", "B", "B")           # B deployed twice: the release before is B's image again
    with pytest.raises(OpsError) as err:
        planner(monkeypatch, hosts).plan_rollback(None)
    target = hosts["web1"].entries[1]["id"]
    assert str(err.value) == (f"release {target} runs the same image (sha256:bbbb) as what serves now: rolling back "
                              "to it would change nothing — name another with --to VERSION "
                              "(see: inv releases --host sandbox)")
    assert "\n" not in str(err.value)


def test_plan_rollback_to_a_named_version_of_another_image_is_accepted(monkeypatch):
    hosts = fleet("A", "B", "B")
    plan = planner(monkeypatch, hosts).plan_rollback("a")
    assert plan.target.version == "a"


def test_plan_rollback_to_the_version_serving_now_is_refused(monkeypatch):
    hosts = fleet("A", "B", "B")
    with pytest.raises(OpsError, match="runs the same image .* would change nothing"):
        planner(monkeypatch, hosts).plan_rollback("b")
