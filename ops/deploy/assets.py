"""Asset bridging: the hashed static files of every retained release stay served.

A Next.js page names its chunks by content hash (``/_next/static/chunks/app-3f9c.js``).
During a switch (and for a while after, in open browser tabs) a page rendered by one
release asks for chunks that only that release's build has; the other container
answers 404. So before a new release serves, its static files are copied out of its
image into one directory per host, merged with those of the releases kept for
rollback (content-hashed names do not collide), and nginx serves that directory for
the URL prefix, falling back to the app for anything it does not hold.

    {app_dir}/assets/files/<url prefix>/...   what nginx serves (mounted read-only)
    {app_dir}/assets/releases/<id>.list       which files each release brought

Pruning keeps the files listed by a release whose container is still retained.
Kamal's ``asset_path`` is the same idea.
"""

from __future__ import annotations

from ops.commands import docker, shell
from ops.inventory import Host
from ops.layout import Layout
from ops.remote import Gateway

PROXY_MOUNT = "/srv/ops-assets"


def assets_root(layout: Layout) -> str:
    return layout.path("assets")


def files_dir(layout: Layout) -> str:
    return layout.path("assets", "files")


def collect_argv(layout: Layout, container: str, image_path: str, url_prefix: str, release_id: str):
    """Copy ``image_path`` out of ``container`` (created, not necessarily running) under
    ``files/<url_prefix>`` and record its file list. An image without that path brings
    nothing (an app with no static build): not an error."""
    root = assets_root(layout)
    dest = f"{files_dir(layout)}/{url_prefix.strip('/')}"
    return shell(
        "set -eu; mkdir -p {dest} {root}/releases; tmp=$(mktemp -d {root}/.in-XXXXXX); "
        "if docker cp {c}:{src}/. \"$tmp\"/ 2>/dev/null; then "
        "(cd \"$tmp\" && find . -type f | sed 's|^\\./||' | sort) > {root}/releases/{rid}.list.new; "
        # NOTE: -n: a file of the same hashed name is the same content; never rewrite what nginx may be reading.
        "cp -R -n \"$tmp\"/. {dest}/; chmod -R a+rX {dest}; mv {root}/releases/{rid}.list.new {root}/releases/{rid}.list; "
        "echo collected $(wc -l < {root}/releases/{rid}.list); else echo none; fi; rm -rf \"$tmp\"",
        dest=dest, root=root, c=docker.check_name(container), src=image_path.rstrip("/") or "/", rid=release_id)


def prune_argv(layout: Layout, url_prefix: str, keep_ids: list[str]):
    """Delete the lists of releases no longer retained, then every file no remaining list names."""
    root = assets_root(layout)
    dest = f"{files_dir(layout)}/{url_prefix.strip('/')}"
    keep = " ".join(f"{rid}.list" for rid in keep_ids)
    return shell(
        "set -eu; keep={keep}; cd {root}/releases 2>/dev/null || exit 0; "
        "for f in *.list; do [ -e \"$f\" ] || continue; "
        "case \" $keep \" in *\" $f \"*) ;; *) rm -f \"$f\";; esac; done; "
        "cat ./*.list 2>/dev/null | sort -u > {root}/.keep || true; "
        "cd {dest} 2>/dev/null || exit 0; "
        "find . -type f | sed 's|^\\./||' | sort | comm -23 - {root}/.keep | tr '\\n' '\\0' | xargs -0 -r rm -f --; "
        "rm -f {root}/.keep",
        root=root, dest=dest, keep=keep)


def collect(gw: Gateway, host: Host, container: str, release_id: str) -> int:
    """Bring the release's static files in; returns how many (0: the image has none)."""
    settings = gw.env.deploy
    if not settings.asset_path:
        return 0
    res = gw.run(host, collect_argv(Layout(gw.env), container, settings.asset_path, settings.asset_url, release_id))
    words = res.stdout.split()
    return int(words[1]) if len(words) == 2 and words[0] == "collected" and words[1].isdigit() else 0


def prune(gw: Gateway, host: Host, keep_ids: list[str]) -> None:
    settings = gw.env.deploy
    if not settings.asset_path:
        return
    gw.run(host, prune_argv(Layout(gw.env), settings.asset_url, keep_ids))
