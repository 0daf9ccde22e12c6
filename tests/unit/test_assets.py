"""Asset bridging scripts, run for real by a local shell with a stand-in ``docker cp``."""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from ops.commands import render
from ops.commands.nginx import render_site_conf
from ops.deploy import assets
from ops.errors import ConfigError
from ops.inventory import load_environment
from ops.layout import Layout

FAKE_DOCKER = """#!/bin/sh
# docker cp CONTAINER:SRC/. DEST/  ->  copy $IMAGES/CONTAINER/SRC/. to DEST
[ "$1" = cp ] || exit 2
c=${2%%:*}; src=${2#*:}
[ -d "$IMAGES/$c$src" ] || { echo "Error: Could not find the file $src in container $c" >&2; exit 1; }
cp -R "$IMAGES/$c$src" "$3"
"""


@pytest.fixture
def host_fs(tmp_path):
    env = load_environment("sandbox")
    env = replace(env, app_dir=str(tmp_path / "app"))
    images = tmp_path / "images"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    environ = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "IMAGES": str(images)}

    def image(container: str, files: dict[str, str]) -> None:
        for rel, content in files.items():
            path = images / container / "app/.next/static" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)

    def sh(command) -> str:
        proc = subprocess.run(["sh", "-c", render(command)], capture_output=True, text=True, env=environ, timeout=30)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    return env, image, sh


def served(env) -> set[str]:
    root = Path(assets.files_dir(Layout(env))) / "_next/static"
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def test_each_release_adds_its_files_and_the_old_ones_stay_served(host_fs):
    env, image, sh = host_fs
    layout = Layout(env)
    image("web-r1", {"chunks/app-aaa.js": "v1", "css/site-111.css": "v1"})
    image("web-r2", {"chunks/app-bbb.js": "v2", "css/site-111.css": "v1"})
    assert sh(assets.collect_argv(layout, "web-r1", "/app/.next/static", "/_next/static", "r1")).split() == [
        "collected", "2"]
    sh(assets.collect_argv(layout, "web-r2", "/app/.next/static", "/_next/static", "r2"))
    assert served(env) == {"chunks/app-aaa.js", "chunks/app-bbb.js", "css/site-111.css"}


def test_an_image_without_static_files_brings_nothing_and_is_no_error(host_fs):
    env, _image, sh = host_fs
    out = sh(assets.collect_argv(Layout(env), "web-plain", "/app/.next/static", "/_next/static", "r0"))
    assert out.strip() == "none" and served(env) == set()


def test_prune_keeps_exactly_the_files_of_retained_releases(host_fs):
    env, image, sh = host_fs
    layout = Layout(env)
    image("web-r1", {"chunks/app-aaa.js": "v1", "css/site-111.css": "v1"})
    image("web-r2", {"chunks/app-bbb.js": "v2", "css/site-111.css": "v1"})
    image("web-r3", {"chunks/app-ccc.js": "v3"})
    for rid in ("r1", "r2", "r3"):
        sh(assets.collect_argv(layout, f"web-{rid}", "/app/.next/static", "/_next/static", rid))
    sh(assets.prune_argv(layout, "/_next/static", ["r2", "r3"]))
    assert served(env) == {"chunks/app-bbb.js", "css/site-111.css", "chunks/app-ccc.js"}
    assert sorted(p.name for p in (Path(assets.assets_root(layout)) / "releases").iterdir()) == ["r2.list",
                                                                                                "r3.list"]


def test_a_hostile_file_name_in_an_image_is_only_ever_a_file_name(host_fs, tmp_path):
    env, image, sh = host_fs
    layout = Layout(env)
    marker = tmp_path / "pwned"
    image("web-r1", {f"chunks/$(touch {marker}).js": "x", "chunks/a b.js": "y"})
    sh(assets.collect_argv(layout, "web-r1", "/app/.next/static", "/_next/static", "r1"))
    sh(assets.prune_argv(layout, "/_next/static", []))
    assert not marker.exists() and served(env) == set()


def test_nginx_serves_the_asset_prefix_from_disk_and_falls_back_to_the_app():
    conf = render_site_conf(upstream="a-web:3000", listen_port=80, max_body_bytes=1024, resolver="127.0.0.11",
                            assets=("/_next/static", assets.PROXY_MOUNT))
    block = conf[conf.index("location ^~ /_next/static/"):]
    assert f"root {assets.PROXY_MOUNT};" in block and "try_files $uri @app;" in block
    assert "immutable" in block and "X-Content-Type-Options" in block  # the server's headers repeated
    assert "location @app {" in conf
    with pytest.raises(ConfigError):
        render_site_conf(upstream="a-web:3000", listen_port=80, max_body_bytes=1024,
                         assets=("/_next/static; }", assets.PROXY_MOUNT))
