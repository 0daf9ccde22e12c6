"""``uploads:`` in the inventory: with more than one web host the uploads must be one set (shared
storage, or object storage in the app); per-host volumes there are refused in one line."""

from __future__ import annotations

import pytest

from ops.inventory import load_environment
from ops.uploads_layout import mount_source
from tests.unit.test_inventory import only_problem, valid, write


@pytest.fixture
def inv(tmp_path):
    return tmp_path / "inventory"


def one_web(data: dict) -> dict:
    data["hosts"] = {k: v for k, v in data["hosts"].items() if k != "web2"}
    return data


def test_two_web_hosts_with_per_host_volumes_are_refused_naming_the_fix(inv):
    data = valid()
    del data["uploads"]
    problem = only_problem(inv, "prod", data)
    assert problem.startswith("uploads.storage: web2, web1 would each keep their own uploads volume")
    assert "set uploads.storage: shared and uploads.path" in problem
    data["uploads"] = {"storage": "volume"}
    assert only_problem(inv, "prod", data).startswith("uploads.storage: web2, web1 would each keep")


def test_shared_storage_is_what_every_web_container_mounts(inv):
    write(inv, "prod", valid())
    env = load_environment("prod", inv)
    assert env.uploads.shared and mount_source(env) == "/mnt/shop-uploads"


def test_one_web_host_keeps_its_docker_volume_by_default(inv):
    write(inv, "prod", one_web(valid(uploads=None)))
    env = load_environment("prod", inv)
    assert env.uploads.storage == "volume" and mount_source(env) == "shop-uploads"


def test_object_storage_needs_no_shared_path_with_several_web_hosts(inv):
    write(inv, "prod", valid(uploads={"storage": "object"}))
    assert load_environment("prod", inv).uploads.storage == "object"


@pytest.mark.parametrize(("uploads", "problem"), [
    ({"storage": "shared"}, "uploads.path: missing (storage: shared) — set it to the directory every web host mounts"),
    ({"storage": "shared", "path": "mnt/x"}, "uploads.path: 'mnt/x' is not valid"),
    ({"storage": "shared", "path": "/mnt/x;rm"}, "uploads.path: '/mnt/x;rm' is not valid"),
    ({"storage": "nfs", "path": "/mnt/x"}, "uploads.storage: 'nfs' is not a choice — use one of: volume, shared, object"),
    ({"storage": "object", "path": "/mnt/x"}, "uploads.path: is only used with storage: shared (storage is object)"),
    ({"storage": "shared", "path": "/mnt/x", "size": 3}, "uploads.size: unknown key"),
])
def test_a_wrong_uploads_section_is_one_line_naming_the_key(inv, uploads, problem):
    assert only_problem(inv, "prod", valid(uploads=uploads)).startswith(problem)


def test_the_shipped_inventories_with_several_web_hosts_declare_shared_uploads():
    for name in ("prod", "sandbox"):
        env = load_environment(name)
        assert len(env.with_roles("web")) > 1 and env.uploads.shared, name


def test_the_sandbox_mounts_one_volume_of_this_machine_at_the_uploads_path_of_both_web_hosts():
    from ops.sandbox import fleet

    env = load_environment("sandbox")
    web1, web2, db1 = env.hosts["web1"], env.hosts["web2"], env.hosts["db1"]
    mount = ("-v", f"{fleet.UPLOADS_VOLUME}:{env.uploads.path}")
    for host in (web1, web2):
        argv = fleet.host_run_argv(host, "img", "net", {}, fleet.shared_mounts(env, host))
        assert any(argv[i:i + 2] == mount for i in range(len(argv)))
    assert fleet.shared_mounts(env, db1) == ()
    # a change of layout recreates the web hosts (their spec differs)
    assert fleet.spec_hash(web1, "img", "net", {}) != fleet.spec_hash(web1, "img", "net", {},
                                                                      fleet.shared_mounts(env, web1))


def test_volume_layout_checks_name_the_shared_path_and_the_fix():
    from ops.uploads_layout import bind_volume_argv

    assert bind_volume_argv("shop-uploads", "/mnt/shop-uploads") == (
        "docker", "volume", "create", "--driver", "local", "--opt", "type=none", "--opt", "o=bind",
        "--opt", "device=/mnt/shop-uploads", "--label", "ops.uploads=shared", "shop-uploads")


class Result:
    def __init__(self, ok: bool, stdout: str = ""):
        self.ok, self.stdout = ok, stdout


class Host:
    name = "web2"


class ScriptedGateway:
    """Answers `docker volume inspect` and `test -d` as a web host would; records what is run."""

    def __init__(self, env, *, volume: str | None, path_exists: bool = True):
        self.env, self.volume, self.path_exists, self.ran = env, volume, path_exists, []

    def query(self, host, argv, check=True):
        if argv[:3] == ("docker", "volume", "inspect"):
            return Result(self.volume is not None, self.volume or "")
        if argv[0] == "test":
            return Result(self.path_exists)
        raise AssertionError(argv)

    def run(self, host, argv, check=True):
        self.ran.append(argv)
        return Result(True)


@pytest.fixture
def shared_env(inv):
    write(inv, "prod", valid())
    return load_environment("prod", inv)


def test_a_shared_layout_accepts_the_volume_whose_data_is_the_shared_path(shared_env):
    from ops.uploads_layout import ensure_volume

    for answer in ("/var/lib/docker/volumes/shop-uploads/_data|/mnt/shop-uploads", "/mnt/shop-uploads|"):
        gw = ScriptedGateway(shared_env, volume=answer)
        assert ensure_volume(gw, Host()) == "/mnt/shop-uploads" and gw.ran == []


def test_a_shared_layout_creates_the_bind_volume_only_where_the_share_is_mounted(shared_env):
    from ops.errors import HostError
    from ops.uploads_layout import bind_volume_argv, ensure_volume

    gw = ScriptedGateway(shared_env, volume=None)
    ensure_volume(gw, Host())
    assert gw.ran == [bind_volume_argv("shop-uploads", "/mnt/shop-uploads")]
    with pytest.raises(HostError, match="uploads.path /mnt/shop-uploads does not exist on web2"):
        ensure_volume(ScriptedGateway(shared_env, volume=None, path_exists=False), Host())


def test_a_per_host_volume_under_a_shared_layout_is_refused_with_the_fix(shared_env):
    from ops.errors import HostError
    from ops.uploads_layout import ensure_volume

    gw = ScriptedGateway(shared_env, volume="/var/lib/docker/volumes/shop-uploads/_data|")
    with pytest.raises(HostError) as err:
        ensure_volume(gw, Host())
    assert "web2: volume shop-uploads holds this host's own files" in err.value.message
    assert "not the shared uploads.path /mnt/shop-uploads" in err.value.message
    assert "docker volume rm shop-uploads" in err.value.hint and gw.ran == []
