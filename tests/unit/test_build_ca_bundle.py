"""build.ca_bundle: the operator's CA bundle for builds behind a TLS-intercepting proxy.

Inventory validation, the build argv, the copy into the build context (gone on every
path) and the sample app's ignore files and Dockerfile stages.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from ops.deploy import image
from ops.deploy.image import CA_BUNDLE_ARG, CA_BUNDLE_NAME, Source, build_argv, ca_bundle_in_context
from ops.errors import ConfigError, InventoryError, LocalToolError
from ops.inventory import PROJECT_ROOT, load_environment

NEXTJS = PROJECT_ROOT / "examples" / "nextjs"
PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"

BASE = {
    "app": "shop",
    "image": "registry.example.com/team/shop",
    "registry": {"url": "registry.example.com"},
    "ssh": {"user": "ops", "known_hosts": "inventory/prod.known_hosts"},
    "hosts": {"web1": {"address": "10.0.0.11", "roles": ["web"]}},
}


def load_with_build(tmp_path: Path, build: dict):
    inventory_dir = tmp_path / "inventory"
    inventory_dir.mkdir(exist_ok=True)
    (inventory_dir / "shop.yml").write_text(yaml.safe_dump({**BASE, "build": build}, sort_keys=False))
    return load_environment("shop", inventory_dir)


def problems_with_build(tmp_path: Path, build: dict) -> list[str]:
    with pytest.raises(InventoryError) as err:
        load_with_build(tmp_path, build)
    return [line.partition(": ")[2] for line in err.value.problems]


def with_ca_bundle(env, bundle: Path | None):
    return dataclasses.replace(env, build=dataclasses.replace(env.build, ca_bundle=bundle))


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    path = tmp_path / "corp-ca.pem"
    path.write_text(PEM)
    return path


# -- inventory ----------------------------------------------------------------------


def test_ca_bundle_is_off_unless_the_inventory_names_one(tmp_path):
    assert load_with_build(tmp_path, {"dockerfile": "Dockerfile"}).build.ca_bundle is None


def test_ca_bundle_accepts_an_existing_file(tmp_path, bundle):
    assert load_with_build(tmp_path, {"ca_bundle": str(bundle)}).build.ca_bundle == bundle


def test_relative_ca_bundle_is_resolved_against_the_repo_root(tmp_path, bundle):
    assert load_with_build(tmp_path, {"ca_bundle": "corp-ca.pem"}).build.ca_bundle == bundle


def test_missing_ca_bundle_names_the_key_the_path_and_the_fix(tmp_path):
    missing = tmp_path / "nope.pem"
    assert problems_with_build(tmp_path, {"ca_bundle": str(missing)}) == [
        f"build.ca_bundle: {missing} does not exist — point it at a PEM file of CA certificates"
        " (e.g. /etc/ssl/certs/ca-certificates.crt) or remove it"]


def test_a_directory_is_not_a_ca_bundle(tmp_path):
    (problem,) = problems_with_build(tmp_path, {"ca_bundle": str(tmp_path)})
    assert problem.startswith(f"build.ca_bundle: {tmp_path} is not a file — ")


def test_empty_ca_bundle_value_is_refused(tmp_path):
    (problem,) = problems_with_build(tmp_path, {"ca_bundle": ""})
    assert problem.startswith("build.ca_bundle: must be a non-empty string")


def test_the_ca_build_arg_cannot_be_set_by_hand(tmp_path):
    assert problems_with_build(tmp_path, {"args": {"OPS_CA_BUNDLE": "ca.pem"}}) == [
        "build.args.OPS_CA_BUNDLE: is set by the deploy itself — remove it and set build.ca_bundle to the CA file instead"]


def test_shipped_prod_inventory_documents_ca_bundle_in_its_build_section():
    text = (PROJECT_ROOT / "inventory" / "prod.yml").read_text()
    build_section = text.split("\nbuild:\n", 1)[1].split("\n\n", 1)[0]
    assert re.search(r"^  # ca_bundle: \S+ +# .+", build_section, re.M), build_section


# -- build argv ---------------------------------------------------------------------


def test_build_argv_passes_the_fixed_ca_name_as_a_build_arg_when_set(bundle):
    env = with_ca_bundle(load_environment("sandbox"), bundle)
    argv = build_argv(env, Source(Path("/src/app"), "f" * 40, ()), "ffffffffffff")
    assert argv[-3:] == ("--build-arg", "OPS_CA_BUNDLE=.ops-ca-bundle.pem", "/src/app")
    # The operator's path never reaches the argv (or the image metadata).
    assert not any(str(bundle) in arg for arg in argv)


def test_build_argv_has_no_ca_arg_without_a_bundle():
    env = with_ca_bundle(load_environment("sandbox"), None)
    argv = build_argv(env, Source(Path("/src/app"), "f" * 40, ()), "ffffffffffff")
    assert not any(CA_BUNDLE_ARG in arg for arg in argv)


# -- the copy in the build context --------------------------------------------------


def test_bundle_is_in_the_context_only_during_the_build(tmp_path, bundle):
    context = tmp_path / "app"
    context.mkdir()
    with ca_bundle_in_context(bundle, context) as placed:
        assert placed == context / CA_BUNDLE_NAME
        assert placed.read_text() == PEM
        assert placed.stat().st_mode & 0o777 == 0o644
    assert not (context / CA_BUNDLE_NAME).exists()


def test_bundle_is_removed_when_the_build_fails(tmp_path, bundle):
    context = tmp_path / "app"
    context.mkdir()
    with pytest.raises(RuntimeError), ca_bundle_in_context(bundle, context):
        raise RuntimeError("docker build failed")
    assert list(context.iterdir()) == []


def test_bundle_is_removed_on_ctrl_c(tmp_path, bundle):
    context = tmp_path / "app"
    context.mkdir()
    with pytest.raises(KeyboardInterrupt), ca_bundle_in_context(bundle, context):
        raise KeyboardInterrupt
    assert list(context.iterdir()) == []


def test_no_bundle_leaves_the_context_alone(tmp_path):
    with ca_bundle_in_context(None, tmp_path) as placed:
        assert placed is None
    assert list(tmp_path.iterdir()) == []


def test_a_foreign_file_with_the_fixed_name_is_never_overwritten(tmp_path, bundle):
    context = tmp_path / "app"
    context.mkdir()
    (context / CA_BUNDLE_NAME).write_text("not ours")
    with pytest.raises(ConfigError) as err, ca_bundle_in_context(bundle, context):
        pass
    assert "already exists and is not a copy of build.ca_bundle" in str(err.value)
    assert (context / CA_BUNDLE_NAME).read_text() == "not ours"


def test_a_bundle_kept_under_the_fixed_name_inside_the_context_is_refused_not_deleted(tmp_path):
    context = tmp_path / "app"
    context.mkdir()
    (context / CA_BUNDLE_NAME).write_text(PEM)
    with pytest.raises(ConfigError), ca_bundle_in_context(context / CA_BUNDLE_NAME, context):
        pass
    assert (context / CA_BUNDLE_NAME).read_text() == PEM


def test_a_leftover_copy_of_the_same_bundle_is_reused_and_cleaned(tmp_path, bundle):
    context = tmp_path / "app"
    context.mkdir()
    (context / CA_BUNDLE_NAME).write_text(PEM)  # e.g. after a kill -9 of the operator
    with ca_bundle_in_context(bundle, context):
        pass
    assert not (context / CA_BUNDLE_NAME).exists()


def test_build_runs_docker_with_the_bundle_present_and_removes_it_after_a_failure(tmp_path, bundle, monkeypatch):
    context = tmp_path / "app"
    context.mkdir()
    env = with_ca_bundle(load_environment("sandbox"), bundle)
    seen = []

    def fake_run(argv, **kwargs):
        seen.append((argv, (context / CA_BUNDLE_NAME).read_text()))
        raise LocalToolError("`docker build ...` exited 1: npm ERR! network")

    monkeypatch.setattr(image.local, "run", fake_run)
    with pytest.raises(LocalToolError):
        image.build(env, Source(context, "f" * 40, ()), "ffffffffffff")
    (argv, content), = seen
    assert argv[:2] == ("docker", "build") and f"{CA_BUNDLE_ARG}={CA_BUNDLE_NAME}" in argv
    assert content == PEM
    assert not (context / CA_BUNDLE_NAME).exists()


# -- the sample app keeps the bundle out of git and out of the runtime image ---------


def test_sample_app_never_commits_the_bundle():
    assert CA_BUNDLE_NAME in (NEXTJS / ".gitignore").read_text().split()


def test_sample_app_context_excludes_keys_but_lets_the_bundle_through():
    rules = [line for line in (NEXTJS / ".dockerignore").read_text().splitlines()
             if line and not line.startswith("#")]
    assert "*.pem" in rules and "*.key" in rules and ".env" in rules
    assert rules.index(f"!{CA_BUNDLE_NAME}") > rules.index("*.pem")


def test_sample_app_dockerfile_uses_the_bundle_in_the_deps_stage_only():
    stages = re.split(r"^FROM ", (NEXTJS / "Dockerfile").read_text(), flags=re.M)[1:]
    by_name = {stage.split("\n", 1)[0].split(" AS ")[-1].strip(): stage for stage in stages}
    assert list(by_name) == ["base", "deps", "prod-deps", "build", "runtime"]
    assert f"ARG {CA_BUNDLE_ARG}=" in by_name["deps"]
    for name in ("base", "prod-deps", "runtime"):
        assert CA_BUNDLE_ARG not in by_name[name] and "CA_CERTS" not in by_name[name]
    runtime = by_name["runtime"]
    assert "COPY . " not in runtime and "--from=deps" not in runtime
    assert not re.search(r"^ENV .*(CA|CERT)", by_name["deps"], re.M)
