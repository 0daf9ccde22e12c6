"""ops/inventory.py: loading, validation messages, defaults and --host resolution."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import yaml

from ops.errors import ConfigError, InventoryError
from ops.inventory import INVENTORY_DIR, PROJECT_ROOT, SSHSettings, load_environment, resolve_target

TOP_KEYS = ("accessories, app, app_dir, backup, build, deploy, doctor, env_file, env_schema, health, hooks_dir, hosts, "
            "image, migrate, notify, ops_env_file, pitr, production, proxy, registry, s3, sandbox, setup, smoke, ssh, "
            "uploads")
HOST_KEYS = "address, port, private_address, roles, user"

VALID = {
    "app": "shop",
    "image": "registry.example.com/team/shop",
    "registry": {"url": "registry.example.com"},
    "ssh": {"user": "ops", "known_hosts": "inventory/prod.known_hosts"},
    "hosts": {
        # Deliberately not in alphabetical order: file order must be kept.
        "web2": {"address": "10.0.0.12", "roles": ["web"]},
        "db1": {"address": "10.0.0.21", "roles": ["db"]},
        "web1": {"address": "10.0.0.11", "roles": ["web"]},
    },
    # Two web hosts: their uploads must be one set (ops/uploads_layout.py).
    "uploads": {"storage": "shared", "path": "/mnt/shop-uploads"},
}


def valid(**changes) -> dict:
    data = copy.deepcopy(VALID)
    data.update(changes)
    return data


def write(inventory_dir: Path, env: str, content: dict | str) -> Path:
    inventory_dir.mkdir(parents=True, exist_ok=True)
    text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
    path = inventory_dir / f"{env}.yml"
    path.write_text(text)
    return path


@pytest.fixture
def inv(tmp_path: Path) -> Path:
    return tmp_path / "inventory"


def problems_of(inventory_dir: Path, env: str, content: dict | str) -> list[str]:
    """Load ``content`` as ``env`` and return every problem with its file part removed."""
    write(inventory_dir, env, content)
    with pytest.raises(InventoryError) as excinfo:
        load_environment(env, inventory_dir)
    stripped = []
    for line in excinfo.value.problems:
        assert "\n" not in line
        file_part, sep, rest = line.partition(": ")
        assert sep, line
        # Relative when under the cwd, absolute otherwise (tmp_path usually is).
        assert file_part.endswith(f"inventory/{env}.yml"), line
        stripped.append(rest)
    return stripped


def only_problem(inventory_dir: Path, env: str, content: dict | str) -> str:
    problems = problems_of(inventory_dir, env, content)
    assert len(problems) == 1, problems
    return problems[0]


# -- a valid file and its defaults --------------------------------------------------


def test_minimal_file_gets_documented_defaults(inv):
    write(inv, "prod", VALID)
    env = load_environment("prod", inv)

    assert env.name == "prod"
    assert env.path == inv / "prod.yml"
    assert env.app == "shop"
    assert env.app_dir == "/srv/shop"
    assert env.deploy.batch_size == 1
    assert env.deploy.keep_releases == 3
    assert env.health.path == "/api/health"
    assert env.health.port == 3000
    assert env.health.timeout == 60.0
    assert env.doctor.min_free_gb == 2.0
    assert env.doctor.max_clock_skew == 2.0
    assert env.ssh.connect_timeout == 10.0
    assert env.ssh.command_timeout == 600.0
    assert env.ssh.parallel == 10
    assert env.ssh.keepalive == 15
    assert env.ssh.key is None
    assert env.registry.tunnel is False
    assert env.env_file is None
    assert env.s3 is None
    assert env.sandbox is None


def test_hosts_default_to_port_22_and_inherit_ssh_user(inv):
    data = valid()
    data["hosts"]["db1"]["user"] = "postgres-admin"
    data["hosts"]["web1"]["port"] = 2222
    write(inv, "prod", data)
    env = load_environment("prod", inv)

    web2, db1, web1 = env.hosts["web2"], env.hosts["db1"], env.hosts["web1"]
    assert (web2.port, web2.user) == (22, "ops")
    assert (db1.port, db1.user) == (22, "postgres-admin")
    assert (web1.port, web1.user) == (2222, "ops")
    assert web2.roles == ("web",)
    assert db1.roles == ("db",)


def test_hosts_keep_file_order(inv):
    write(inv, "prod", VALID)
    env = load_environment("prod", inv)
    assert list(env.hosts) == ["web2", "db1", "web1"]


def test_reach_address_prefers_private_address(inv):
    data = valid()
    data["hosts"]["db1"]["private_address"] = "172.16.0.21"
    write(inv, "prod", data)
    env = load_environment("prod", inv)
    assert env.hosts["db1"].reach_address == "172.16.0.21"
    assert env.hosts["web1"].reach_address == "10.0.0.11"


def test_with_roles_lists_hosts_in_file_order(inv):
    write(inv, "prod", VALID)
    env = load_environment("prod", inv)
    assert [h.name for h in env.with_roles("web")] == ["web2", "web1"]
    assert [h.name for h in env.with_roles("db")] == ["db1"]


def test_empty_ssh_section_defaults_user_and_known_hosts_next_to_the_inventory(inv):
    write(inv, "prod", valid(ssh={}))
    env = load_environment("prod", inv)
    assert env.ssh.user == "deploy"
    assert env.ssh.known_hosts == inv.parent / "inventory" / "prod.known_hosts"
    assert env.hosts["web1"].user == "deploy"


def test_relative_paths_are_resolved_against_the_repo_root_not_the_cwd(inv, tmp_path):
    data = valid(env_file=".env.prod")
    data["ssh"] = {"user": "ops", "key": "keys/id_ed25519", "known_hosts": "inventory/prod.known_hosts"}
    write(inv, "prod", data)
    env = load_environment("prod", inv)

    root = inv.parent
    assert root == tmp_path
    assert env.env_file == root / ".env.prod"
    assert env.ssh.key == root / "keys" / "id_ed25519"
    assert env.ssh.known_hosts == root / "inventory" / "prod.known_hosts"


def test_absolute_and_home_paths_are_not_rebased(inv, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    data = valid(env_file="/etc/shop/env")
    data["ssh"] = {"key": "~/.ssh/deploy", "known_hosts": "/etc/ssh/shop_known_hosts"}
    write(inv, "prod", data)
    env = load_environment("prod", inv)

    assert env.env_file == Path("/etc/shop/env")
    assert env.ssh.key == tmp_path / "home" / ".ssh" / "deploy"
    assert env.ssh.known_hosts == Path("/etc/ssh/shop_known_hosts")


def test_explicit_settings_override_defaults(inv):
    data = valid(app_dir="/opt/shop", deploy={"batch_size": 2, "keep_releases": 5},
                 health={"path": "/healthz", "port": 8080, "timeout": 30},
                 s3={"bucket": "shop-backups", "prefix": "prod/", "sse": "AES256"})
    data["ssh"]["parallel"] = 4
    write(inv, "prod", data)
    env = load_environment("prod", inv)

    assert env.app_dir == "/opt/shop"
    assert (env.deploy.batch_size, env.deploy.keep_releases) == (2, 5)
    assert (env.health.path, env.health.port, env.health.timeout) == ("/healthz", 8080, 30)
    assert env.ssh.parallel == 4
    assert env.s3.bucket == "shop-backups"
    assert env.s3.region == "us-east-1"
    assert env.s3.sse == "AES256"


def test_ssh_keepalive_is_read_from_the_inventory(inv):
    data = valid()
    data["ssh"]["keepalive"] = 30
    write(inv, "prod", data)
    assert load_environment("prod", inv).ssh.keepalive == 30


@pytest.mark.parametrize("value", [0, -5, 601, 2.5, "15", True])
def test_bad_ssh_keepalive_names_key_range_and_value(inv, value):
    data = valid()
    data["ssh"]["keepalive"] = value
    assert only_problem(inv, "prod", data).startswith(
        f"ssh.keepalive: must be an integer 1-600, got {value!r} — ")


def test_shipped_prod_inventory_documents_every_ssh_key():
    text = (PROJECT_ROOT / "inventory" / "prod.yml").read_text()
    ssh_block = text.split("\nssh:\n", 1)[1].split("\n\n", 1)[0]
    documented = {line.split(":", 1)[0].strip() for line in ssh_block.splitlines()}
    assert documented == {f.name for f in dataclasses.fields(SSHSettings)}


def test_same_address_on_different_ports_is_not_a_duplicate(inv):
    data = valid()
    data["hosts"] = {
        "web1": {"address": "127.0.0.1", "port": 22101, "roles": ["web"]},
        "web2": {"address": "127.0.0.1", "port": 22102, "roles": ["web"]},
    }
    write(inv, "prod", data)
    env = load_environment("prod", inv)
    assert [(h.address, h.port) for h in env.hosts.values()] == [("127.0.0.1", 22101), ("127.0.0.1", 22102)]


# -- validation problems -------------------------------------------------------


def test_unknown_role_names_file_key_and_allowed_roles(inv):
    data = valid()
    data["hosts"]["web1"]["roles"] = ["web", "cache"]
    assert only_problem(inv, "prod", data) == "hosts.web1.roles: unknown role 'cache' — use one of: web, db"


def test_empty_roles_list_is_reported(inv):
    data = valid()
    data["hosts"]["db1"]["roles"] = []
    assert only_problem(inv, "prod", data) == (
        "hosts.db1.roles: must be a non-empty list, got [] — list one or more of: web, db")


def test_duplicate_address_and_port_names_both_hosts(inv):
    data = valid()
    data["hosts"]["web1"] = {"address": "10.0.0.12", "port": 22, "roles": ["web"]}
    assert only_problem(inv, "prod", data) == (
        "hosts.web1: same address and port as hosts.web2 (10.0.0.12:22) — remove the duplicate or fix its address/port")


def test_missing_address_says_what_to_set(inv):
    data = valid()
    del data["hosts"]["db1"]["address"]
    assert only_problem(inv, "prod", data) == (
        "hosts.db1.address: missing — set hosts.db1.address to an IP address or DNS name")


@pytest.mark.parametrize(
    ("port", "shown"),
    [("22", "'22'"), (0, "0"), (70000, "70000"), (True, "True"), (22.5, "22.5")],
)
def test_bad_port_names_key_range_and_value(inv, port, shown):
    data = valid()
    data["hosts"]["web1"]["port"] = port
    problem = only_problem(inv, "prod", data)
    assert problem.startswith(f"hosts.web1.port: must be an integer 1-65535, got {shown} — ")


def test_bad_port_fix_text_is_grammatical(inv):
    data = valid()
    data["hosts"]["web1"]["port"] = 0
    assert only_problem(inv, "prod", data) == (
        "hosts.web1.port: must be an integer 1-65535, got 0 — set an integer in that range")


def test_unknown_top_level_key_lists_allowed_keys(inv):
    assert only_problem(inv, "prod", valid(hostz={})) == (
        f"hostz: unknown key — remove it or use one of: {TOP_KEYS}")


def test_misspelt_host_key_is_reported_with_the_missing_key_it_hides(inv):
    data = valid()
    data["hosts"]["web1"] = {"adress": "10.0.0.11", "roles": ["web"]}
    assert problems_of(inv, "prod", data) == [
        f"hosts.web1.adress: unknown key — remove it or use one of: {HOST_KEYS}",
        "hosts.web1.address: missing — set hosts.web1.address to an IP address or DNS name",
    ]


def test_unknown_key_inside_a_section_is_prefixed_with_the_section(inv):
    data = valid(deploy={"batch_sise": 2})
    assert only_problem(inv, "prod", data) == (
        "deploy.batch_sise: unknown key — remove it or use one of: asset_path, asset_url, batch_size, drain_seconds, "
        "keep_releases, stop_timeout, warmup")


def test_warmup_paths_default_to_the_home_page_and_are_validated(inv):
    def warmup_of(data: dict) -> tuple[str, ...]:
        write(inv, "prod", data)
        return load_environment("prod", inv).deploy.warmup

    assert warmup_of(valid()) == ("/",)
    assert warmup_of(valid(deploy={"warmup": ["/", "/login?next=%2F"]})) == ("/", "/login?next=%2F")
    assert warmup_of(valid(deploy={"warmup": []})) == ()
    assert only_problem(inv, "prod", valid(deploy={"warmup": ["/a b; rm -rf /"]})).startswith(
        "deploy.warmup: ['/a b; rm -rf /'] is not a list of URL paths")


@pytest.mark.parametrize("hosts", [None, {}, []], ids=["absent", "empty-mapping", "list"])
def test_missing_hosts_shows_the_shape_to_add(inv, hosts):
    data = valid()
    if hosts is None:
        del data["hosts"]
    else:
        data["hosts"] = hosts
    assert only_problem(inv, "prod", data) == (
        "hosts: missing or empty — add at least one host: 'hosts: {web1: {address: ..., roles: [web]}}'")


def test_fleet_without_a_web_host_is_rejected(inv):
    data = valid(hosts={"db1": {"address": "10.0.0.21", "roles": ["db"]}})
    assert only_problem(inv, "prod", data) == (
        "hosts: no host has the 'web' role — give at least one host 'roles: [web]'")


def test_missing_ssh_section_is_reported(inv):
    data = valid()
    del data["ssh"]
    assert only_problem(inv, "prod", data) == "ssh: missing — add a 'ssh:' mapping"


def test_section_that_is_not_a_mapping_is_reported(inv):
    assert only_problem(inv, "prod", valid(registry="registry.example.com")) == (
        "registry: must be a mapping, got str — write 'registry:' followed by indented keys")


def test_image_with_a_tag_is_rejected(inv):
    problem = only_problem(inv, "prod", valid(image="registry.example.com/team/shop:1.4"))
    assert problem.startswith("image: 'registry.example.com/team/shop:1.4' ")


def test_image_with_a_tag_says_to_drop_the_tag(inv):
    assert only_problem(inv, "prod", valid(image="registry.example.com/team/shop:1.4")) == (
        "image: 'registry.example.com/team/shop:1.4' includes a tag — drop the tag: the deploy tags with the git SHA")


def test_image_on_a_registry_with_a_port_is_accepted(inv):
    write(inv, "prod", valid(image="registry.example.com:5000/team/shop"))
    assert load_environment("prod", inv).image == "registry.example.com:5000/team/shop"


def test_uppercase_app_name_is_rejected(inv):
    assert only_problem(inv, "prod", valid(app="Shop")) == (
        "app: 'Shop' is not valid — use a lowercase name like 'athlete-platform'")


def test_relative_app_dir_is_rejected(inv):
    assert only_problem(inv, "prod", valid(app_dir="srv/shop")) == (
        "app_dir: 'srv/shop' is not absolute — use an absolute path like /srv/app")


@pytest.mark.parametrize("bucket", ["Shop_Backups", "ab", "-shop", "shop-"])
def test_bad_bucket_name_is_reported(inv, bucket):
    assert only_problem(inv, "prod", valid(s3={"bucket": bucket})) == (
        f"s3.bucket: {bucket!r} is not valid — use an S3 bucket name (3-63 lowercase letters, digits, '.', '-')")


def test_s3_section_without_bucket_is_reported(inv):
    assert only_problem(inv, "prod", valid(s3={"prefix": "prod/"})) == (
        "s3.bucket: missing — set s3.bucket to an S3 bucket name (3-63 lowercase letters, digits, '.', '-')")


@pytest.mark.parametrize("subnet", ["10.0.0.300/24", "10.0.0.1/24", "not-a-cidr"])
def test_bad_subnet_is_reported(inv, subnet):
    data = valid(sandbox={"network": "ops-sandbox", "subnet": subnet})
    assert only_problem(inv, "prod", data) == (
        f"sandbox.subnet: {subnet!r} is not a network — write a CIDR like 172.31.250.0/24")


def test_sandbox_publish_for_an_unknown_host_is_reported(inv):
    data = valid(sandbox={"subnet": "172.31.250.0/24", "publish": {"web9": {8101: 80}}})
    assert only_problem(inv, "prod", data) == (
        "sandbox.publish.web9: names no host of this inventory — use one of: web2, db1, web1")


def test_invalid_yaml_names_the_line(inv):
    text = "app: shop\nimage: team/shop\n  bad: indent\n"
    write(inv, "prod", text)
    with pytest.raises(InventoryError) as excinfo:
        load_environment("prod", inv)
    (problem,) = excinfo.value.problems
    assert problem.endswith("inventory/prod.yml: line 3 not valid YAML (mapping values are not allowed here)"
                            " — fix the syntax")


@pytest.mark.parametrize(("text", "kind"), [("- app: shop\n", "list"), ("", "NoneType"), ("just text\n", "str")])
def test_top_level_that_is_not_a_mapping_is_rejected(inv, text, kind):
    write(inv, "prod", text)
    with pytest.raises(InventoryError) as excinfo:
        load_environment("prod", inv)
    (problem,) = excinfo.value.problems
    assert problem.endswith(f"inventory/prod.yml: top level must be a mapping of settings, got {kind}"
                            " — see inventory/prod.yml for the shape")


def test_every_problem_is_reported_at_once(inv):
    data = valid(hostz=1, s3={"bucket": "Bad_Bucket"})
    data["hosts"]["web1"]["roles"] = ["cache"]
    data["hosts"]["web2"]["port"] = "22"
    data["hosts"]["db1"]["adress"] = "x"
    write(inv, "prod", data)
    with pytest.raises(InventoryError) as excinfo:
        load_environment("prod", inv)
    err = excinfo.value

    keys = [line.partition(": ")[2].partition(":")[0] for line in err.problems]
    assert sorted(keys) == sorted(["hostz", "hosts.web2.port", "hosts.db1.adress", "hosts.web1.roles", "s3.bucket"])
    # One line each, and the exception text is exactly those lines.
    assert str(err) == "\n".join(err.problems)
    assert isinstance(err, ConfigError)


def test_missing_inventory_file_lists_the_environments_there_are(inv):
    write(inv, "prod", VALID)
    write(inv, "staging", VALID)
    with pytest.raises(ConfigError) as excinfo:
        load_environment("qa", inv)
    err = excinfo.value
    assert not isinstance(err, InventoryError)
    assert err.message.startswith("no inventory file ")
    assert err.message.endswith("inventory/qa.yml")
    assert err.hint == "create it or use one of: prod, staging"


# -- --host resolution -----------------------------------------------------------


@pytest.fixture
def two_envs(inv) -> Path:
    write(inv, "prod", VALID)
    write(inv, "staging", valid(hosts={"staging1": {"address": "10.1.0.30", "roles": ["web", "db"]}}))
    return inv


def test_environment_name_selects_every_host_in_file_order(two_envs):
    target = resolve_target("prod", two_envs)
    assert target.env.name == "prod"
    assert [h.name for h in target.hosts] == ["web2", "db1", "web1"]


def test_env_colon_host_selects_that_host_alone(two_envs):
    target = resolve_target("prod:web1", two_envs)
    assert target.env.name == "prod"
    assert target.hosts == (target.env.hosts["web1"],)
    assert target.hosts[0].address == "10.0.0.11"


def test_unknown_environment_lists_the_known_ones(two_envs):
    with pytest.raises(ConfigError) as excinfo:
        resolve_target("qa:web1", two_envs)
    err = excinfo.value
    assert err.message == "unknown environment 'qa' in --host 'qa:web1'"
    assert err.hint.startswith("known environments: prod, staging (files in ")
    assert err.hint.endswith("inventory/)")


def test_unknown_host_lists_the_hosts_of_that_environment(two_envs):
    with pytest.raises(ConfigError) as excinfo:
        resolve_target("prod:web9", two_envs)
    err = excinfo.value
    assert err.message == "unknown host 'web9' in environment 'prod'"
    assert err.hint == "hosts in prod: web2, db1, web1"
    assert str(err) == "unknown host 'web9' in environment 'prod' — hosts in prod: web2, db1, web1"


@pytest.mark.parametrize("spec", [None, ""])
def test_empty_host_spec_asks_for_one(two_envs, spec):
    with pytest.raises(ConfigError) as excinfo:
        resolve_target(spec, two_envs)
    assert str(excinfo.value) == "no --host given — pass an environment or env:host, one of: prod, staging"


def test_empty_inventory_dir_says_none(inv):
    inv.mkdir()
    with pytest.raises(ConfigError) as excinfo:
        resolve_target(None, inv)
    assert excinfo.value.hint == "pass an environment or env:host, one of: (none)"


def test_invalid_inventory_surfaces_through_resolve_target(inv):
    write(inv, "prod", valid(hostz=1))
    with pytest.raises(InventoryError):
        resolve_target("prod:web1", inv)


# -- the shipped inventories -----------------------------------------------------------


def test_shipped_inventory_dir_is_the_repo_inventory():
    assert INVENTORY_DIR == PROJECT_ROOT / "inventory"
    assert {"prod", "staging", "sandbox"} <= {p.stem for p in INVENTORY_DIR.glob("*.yml")}


def test_shipped_prod_inventory_validates():
    env = load_environment("prod")
    assert list(env.hosts) == ["web1", "web2", "db1"]
    assert [h.name for h in env.with_roles("web")] == ["web1", "web2"]
    assert [h.name for h in env.with_roles("db")] == ["db1"]
    assert env.ssh.known_hosts == PROJECT_ROOT / "inventory" / "prod.known_hosts"
    assert env.env_file == PROJECT_ROOT / ".env.production"
    assert env.s3.bucket == "athlete-platform-backups"
    assert env.sandbox is None


def test_shipped_staging_inventory_validates():
    env = load_environment("staging")
    assert list(env.hosts) == ["staging1"]
    assert env.hosts["staging1"].roles == ("web", "db")
    assert env.ssh.known_hosts == PROJECT_ROOT / "inventory" / "staging.known_hosts"


def test_shipped_sandbox_inventory_validates():
    env = load_environment("sandbox")
    assert [(h.name, h.address, h.port) for h in env.hosts.values()] == [
        ("web1", "127.0.0.1", 22101), ("web2", "127.0.0.1", 22102), ("db1", "127.0.0.1", 22103)]
    assert env.registry.tunnel is True
    assert env.ssh.key == PROJECT_ROOT / ".sandbox" / "id_ed25519"
    assert env.sandbox.subnet == "172.31.250.0/24"
    assert env.sandbox.publish == {"web1": {8101: 80}, "web2": {8102: 80}, "db1": {15432: 5432}}
    assert env.s3.endpoint_url == "http://127.0.0.1:9000"


@pytest.mark.parametrize("spec", ["prod", "staging", "sandbox"])
def test_shipped_environments_resolve_as_host_targets(spec):
    target = resolve_target(spec)
    assert target.hosts == tuple(target.env.hosts.values())


@pytest.mark.parametrize("app_dir", ["/srv/app$(touch /tmp/x)", "/srv/app;reboot", "/srv/../etc", "/srv/a b"])
def test_app_dir_with_shell_syntax_or_dotdot_is_refused(inv, app_dir):
    problems = problems_of(inv, "hostile", valid(app_dir=app_dir))
    assert any(p.startswith("app_dir:") and "plain absolute path" in p for p in problems), problems
