"""The proxy's site config and the commands that check and reload it. Pure.

One site per web host: nginx (container from ``ops/sandbox/docker/nginx`` or any image
with ``/etc/nginx/conf.d`` included in ``http {}``) listens on the proxy port and proxies
everything to the app. Deploys render it with ``resolver=``: the app is a name on the
host's app network, looked up per request, so switching releases never reloads nginx
(see ``render_site_conf``). The file only changes (``nginx -t``, then a graceful
reload) when what it encodes changes, e.g. the body limit from MAX_FILE_SIZE.
"""

from __future__ import annotations

import re

from ops.commands import Argv
from ops.commands.docker import check_name
from ops.errors import ConfigError

# host:port where host is a container name, DNS name or IPv4 address; nothing else can
# reach the config file (no spaces, ';', '{', quotes, '$').
UPSTREAM_RE = re.compile(r"^(?P<host>[A-Za-z0-9](?:[A-Za-z0-9._-]{0,252}))(?::(?P<port>[0-9]{1,5}))$")
SERVER_NAME_RE = re.compile(r"^[A-Za-z0-9_.*-]{1,253}( [A-Za-z0-9_.*-]{1,253})*$")
RELEASE_RE = re.compile(r"^[A-Za-z0-9._-]{0,128}$")

# The seed app's security headers; ``always`` adds them to error responses (4xx/5xx) too.
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("X-XSS-Protection", "1; mode=block"),
    ("Content-Security-Policy", "default-src 'self'"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
)
# NOTE: only ever sent over TLS: over plain http a browser ignores it (RFC 6797) and a
# site that has no certificate yet must not promise HTTPS.
HSTS = ("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
# Where the proxy container finds the ACME HTTP-01 tokens and the certificate (mounted
# read-only from the host, see ops/tls/hostfiles.py).
CHALLENGE_ROOT = "/var/www/acme"
CHALLENGE_PREFIX = "/.well-known/acme-challenge/"
TLS_DIR = "/etc/nginx/tls"
TLS_CERT = f"{TLS_DIR}/fullchain.pem"
TLS_KEY = f"{TLS_DIR}/privkey.pem"
HTTPS_CONTAINER_PORT = 443
# Socket.io long-polling and WebSockets hold a request open far longer than a page load.
SOCKET_IO_TIMEOUT = "1h"
UPSTREAM_NAME = "app_release"
DYNAMIC_CONNECT_TIMEOUT = "300ms"
# Multipart framing around an uploaded file: boundary lines, part headers, other fields.
MULTIPART_HEADROOM = 64 * 1024


def body_limit_for_upload(max_file_size: int) -> int:
    """``client_max_body_size`` that lets through a file of exactly the app's MAX_FILE_SIZE.

    The request body of an upload is the file plus multipart framing; a limit equal to
    the file size would make nginx answer 413 before the app can give its own message.
    """
    if isinstance(max_file_size, bool) or not isinstance(max_file_size, int) or max_file_size <= 0:
        raise ConfigError(f"MAX_FILE_SIZE must be a positive number of bytes, got {max_file_size!r}")
    return max_file_size + MULTIPART_HEADROOM


def _check_upstream(upstream: str) -> str:
    m = UPSTREAM_RE.fullmatch(upstream) if isinstance(upstream, str) else None
    if not m or not 1 <= int(m["port"]) <= 65535 or m["host"].endswith((".", "-")):
        raise ConfigError(f"invalid proxy upstream {upstream!r}",
                          hint="write host:port with letters, digits, '.', '-', '_' only "
                               "(e.g. athlete-platform-web-3f9c2d1:3000)")
    return upstream


def _check_int(value: int, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"invalid {what} {value!r}", hint=f"use an integer {lo}-{hi}")
    return value


def render_site_conf(*, upstream: str, listen_port: int, max_body_bytes: int, server_name: str = "_",
                     release: str = "", resolver: str | None = None, resolver_valid: int = 1,
                     assets: tuple[str, str] | None = None, challenge: bool = False, tls: bool = False,
                     https_port: int = HTTPS_CONTAINER_PORT) -> str:
    """The whole ``conf.d/<app>.conf``: one server proxying to ``upstream``.

    Without ``resolver``, ``upstream`` is resolved once, when nginx loads the file:
    switching to another container means a reload, which closes idle client
    keep-alive connections (a request racing that close fails).

    With ``resolver`` (Docker's embedded DNS, 127.0.0.11), ``upstream`` is a name
    looked up per request (cached ``resolver_valid`` seconds) and every address it
    resolves to is a peer: a deploy adds the new container under that name and stops
    the old one, and nginx never reloads. A peer that refuses (the old app after
    SIGTERM) is retried on the next one.

    ``assets=(url_prefix, root)``: files under ``root + url_prefix`` (the bridged static
    files of every retained release, see ``ops.deploy.assets``) are served by nginx
    itself, immutable; a file it does not hold goes to the app.

    ``challenge``: ``/.well-known/acme-challenge/`` on port ``listen_port`` is served
    from ``CHALLENGE_ROOT`` (ACME HTTP-01), never proxied.

    ``tls``: the app is served on 443 (``TLS_CERT``/``TLS_KEY``, TLSv1.2+, HSTS) and
    ``listen_port`` only answers challenges and redirects everything else to https (301).
    Without it no HSTS header is sent at all. ``https_port``: the port clients reach 443
    on (the host's published port), for the redirect.
    """
    _check_upstream(upstream)
    if resolver is not None:
        _check_upstream(f"{resolver}:53")
        _check_int(resolver_valid, "resolver cache seconds", 1, 300)
    _check_int(listen_port, "listen port", 1, 65535)
    _check_int(https_port, "https port", 1, 65535)
    _check_int(max_body_bytes, "max body size (bytes)", 1, 2**40)
    if not isinstance(server_name, str) or not SERVER_NAME_RE.fullmatch(server_name):
        raise ConfigError(f"invalid server_name {server_name!r}",
                          hint="host names separated by single spaces, or '_' for any")
    if not isinstance(release, str) or not RELEASE_RE.fullmatch(release):
        raise ConfigError(f"invalid release {release!r}", hint="letters, digits, '.', '_', '-' (a git SHA)")

    header_pairs = [*SECURITY_HEADERS, HSTS] if tls else list(SECURITY_HEADERS)
    headers = [f'    add_header {name} "{value}" always;' for name, value in header_pairs]
    if release:
        headers.append(f'    add_header X-Release "{release}" always;')
    # The app may set its own copy of these; ours must be the only one the browser sees.
    hidden = [f"    proxy_hide_header {name};" for name, _ in (*SECURITY_HEADERS, HSTS)] + [
        "    proxy_hide_header X-Powered-By;"]
    if resolver is None:
        upstream_block = [
            f"upstream {UPSTREAM_NAME} {{",
            "    # NOTE: the same server twice on purpose: with a single entry nginx never retries",
            "    # (proxy_next_upstream needs a second peer); max_fails=0 never marks it down.",
            f"    server {upstream} max_fails=0;",
            f"    server {upstream} max_fails=0;",
            "    keepalive 32;",
            "}",
            "",
        ]
        dynamic: list[str] = []
        target = f"http://{UPSTREAM_NAME}"
    else:
        upstream_block = []
        dynamic = [
            "",
            "    # Resolved per request: a deploy changes which containers answer to this name,",
            "    # never this file (no reload, client keep-alive connections survive).",
            f"    resolver {resolver} valid={resolver_valid}s ipv6=off;",
            "    resolver_timeout 2s;",
            f"    set $app_upstream {upstream};",
        ]
        target = "http://$app_upstream"
    retry = None if resolver is None else (resolver, resolver_valid)
    lines = [
        f"# Rendered by ops (ops/commands/nginx.py) for release {release or '(none)'}: edits here are overwritten.",
        "",
        "# WebSocket upgrade: pass the client's Upgrade on; otherwise an empty Connection header",
        "# keeps the upstream keepalive connection reusable.",
        "map $http_upgrade $connection_upgrade {",
        "    default upgrade;",
        "    ''      '';",
        "}",
        "",
        *(_retry_map() if retry else []),
        *upstream_block,
        *(_redirect_server(listen_port, server_name, https_port) if tls else []),
        "server {",
        f"    listen {HTTPS_CONTAINER_PORT} ssl http2 default_server;" if tls else f"    listen {listen_port} default_server;",
        f"    server_name {server_name};",
        *(_tls_settings() if tls else []),
        *dynamic,
        "",
        f"    client_max_body_size {max_body_bytes};",
        "",
        *headers,
        "",
        "    proxy_http_version 1.1;",
        "    proxy_set_header Host $http_host;",
        "    proxy_set_header Upgrade $http_upgrade;",
        "    proxy_set_header Connection $connection_upgrade;",
        "    proxy_set_header X-Real-IP $remote_addr;",
        "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "    proxy_set_header X-Forwarded-Proto $scheme;",
        "    proxy_set_header X-Forwarded-Host $http_host;",
        *hidden,
        "",
        # Dynamic mode: the peers are containers on this host, a connect takes well under a
        # millisecond (the kernel answers it, even for a busy app); an address whose
        # container just exited (still in a worker's DNS cache for up to resolver_valid)
        # gets no answer at all and must be given up fast and retried on the next peer.
        f"    proxy_connect_timeout {DYNAMIC_CONNECT_TIMEOUT if resolver else '5s'};",
        "    proxy_read_timeout 60s;",
        "    # A refused or timed-out connection is retried once; a request the upstream already",
        "    # answered (or any non-idempotent one, e.g. POST) is never sent twice.",
        "    proxy_next_upstream error timeout;",
        "    proxy_next_upstream_tries 3;",
        "    proxy_next_upstream_timeout 10s;",
        "",
        *_proxied("/socket.io/", target, _SOCKET_IO_SETTINGS, retry, "socketio"),
        *_asset_locations(assets, target, headers, retry),
        *(_challenge_location() if challenge and not tls else []),
        *_proxied("/", target, (), retry, "app"),
        "}",
    ]
    return "\n".join(lines) + "\n"


def _challenge_location() -> list[str]:
    return [
        "    # ACME HTTP-01: the CA fetches the token written here by `inv tls.issue`; never the app.",
        f"    location ^~ {CHALLENGE_PREFIX} {{",
        f"        root {CHALLENGE_ROOT};",
        "        default_type text/plain;",
        "    }",
        "",
    ]


def _redirect_server(listen_port: int, server_name: str, https_port: int) -> list[str]:
    port = "" if https_port == HTTPS_CONTAINER_PORT else f":{https_port}"
    return [
        "# Plain http: ACME challenges (renewals keep working), everything else to https.",
        "server {",
        f"    listen {listen_port} default_server;",
        f"    server_name {server_name};",
        "",
        *_challenge_location(),
        "    location / {",
        f"        return 301 https://$host{port}$request_uri;",
        "    }",
        "}",
        "",
    ]


def _tls_settings() -> list[str]:
    # nginx 1.22 (Debian bookworm): `http2` is a listen parameter (the `http2 on;` directive
    # came in 1.25.1). TLSv1.2+ only; TLSv1.3 suites are not configurable here and all good.
    return [
        f"    ssl_certificate {TLS_CERT};",
        f"    ssl_certificate_key {TLS_KEY};",
        "    ssl_protocols TLSv1.2 TLSv1.3;",
        "    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
        "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;",
        "    ssl_prefer_server_ciphers off;",
        "    ssl_session_cache shared:TLS:10m;",
        "    ssl_session_timeout 1d;",
        "    # Tickets would keep one key for the workers' lifetime (weak forward secrecy).",
        "    ssl_session_tickets off;",
    ]


ASSET_PREFIX_RE = re.compile(r"^/[A-Za-z0-9._/-]*$")


_SOCKET_IO_SETTINGS = (f"proxy_read_timeout {SOCKET_IO_TIMEOUT};", f"proxy_send_timeout {SOCKET_IO_TIMEOUT};",
                       "proxy_buffering off;")
# Retried with a fresh DNS lookup (see _retry_map): a request no attempt reached (every
# connect refused or timed out, or the name had no address), or an idempotent one whose
# connection was refused or cut; never a timed-out read (504 after connecting) or a
# POST the app may have processed.
RETRY_UNLESS = "$ops_no_retry"


def _retry_map() -> list[str]:
    return [
        "# When the app's peers all fail, a request may be retried once with a fresh lookup of",
        "# its name (the @*_retry locations have DNS caches of their own): a worker's cache can",
        "# still list only the container a switch has just stopped. Empty = retry.",
        f'map "$upstream_connect_time|$request_method|$upstream_status" {RETRY_UNLESS} {{',
        "    default 1;",
        '    "~^[-, :]*\\|" "";',
        '    "~^[^|]*\\|(GET|HEAD|OPTIONS)\\|(?!.*504)" "";',
        "}",
        "",
    ]


def _proxy_location(opening: str, target: str, settings: tuple[str, ...], retry_to: str | None) -> list[str]:
    """``location OPENING`` proxying to ``target``; its 502/504 go once to ``@retry_to`` when set."""
    return [f"    location {opening} {{", f"        proxy_pass {target};", *[f"        {ln}" for ln in settings],
            *([f"        error_page 502 504 = @{retry_to};"] if retry_to else []), "    }", ""]


def _retry_location(name: str, target: str, settings: tuple[str, ...], retry: tuple[str, int]) -> list[str]:
    """The named location a proxy location's failures are retried in, with a DNS cache of its own."""
    resolver, valid = retry
    return [
        f"    location @{name} {{",
        "        # NOTE: a resolver of its own is a DNS cache of its own: the name is looked up afresh.",
        f"        resolver {resolver} valid={valid}s ipv6=off;",
        f"        if ({RETRY_UNLESS}) {{",
        "            return 502;",
        "        }",
        f"        proxy_pass {target};",
        *[f"        {ln}" for ln in settings],
        "    }",
        "",
    ]


def _proxied(path: str, target: str, settings: tuple[str, ...], retry: tuple[str, int] | None, label: str) -> list[str]:
    """``location path`` and, in dynamic mode, its retry twin ``@<label>_retry``."""
    if retry is None:
        return _proxy_location(path, target, settings, None)
    return [*_proxy_location(path, target, settings, f"{label}_retry"),
            *_retry_location(f"{label}_retry", target, settings, retry)]


def _asset_locations(assets: tuple[str, str] | None, target: str, headers: list[str],
                     retry: tuple[str, int] | None = None) -> list[str]:
    if assets is None:
        return []
    prefix, root = assets
    for value, what in ((prefix, "asset URL prefix"), (root, "asset root")):
        if not isinstance(value, str) or not ASSET_PREFIX_RE.fullmatch(value) or "/../" in f"{value}/":
            raise ConfigError(f"invalid {what} {value!r}", hint="a plain absolute path, e.g. /_next/static")
    prefix = prefix.rstrip("/") + "/"
    return [
        "    # Hashed static files of every retained release (asset bridging): a page from one",
        "    # release finds its chunks whichever container serves it, during and after a switch.",
        f"    location ^~ {prefix} {{",
        f"        root {root};",
        "        try_files $uri @app;",
        # NOTE: an add_header here hides the server's ones: repeat them.
        *[f"    {h}" for h in headers],
        '        add_header Cache-Control "public, max-age=31536000, immutable" always;',
        "    }",
        "",
        # Its failures are retried like a page's (@app_retry, next to location /).
        *_proxy_location("@app", target, (), "app_retry" if retry else None),
    ]


def nginx_test_argv(container: str) -> Argv:
    """Check the config the container would load; fails (non-zero) on a bad file or an
    upstream name that does not resolve."""
    return ("docker", "exec", check_name(container), "nginx", "-t")


def nginx_reload_argv(container: str) -> Argv:
    """Graceful reload: new workers take the new config, old ones finish their requests."""
    return ("docker", "exec", check_name(container), "nginx", "-s", "reload")


__all__ = ["CHALLENGE_PREFIX", "CHALLENGE_ROOT", "HSTS", "HTTPS_CONTAINER_PORT", "SECURITY_HEADERS", "TLS_CERT",
           "TLS_DIR", "TLS_KEY", "body_limit_for_upload", "nginx_reload_argv", "nginx_test_argv", "render_site_conf"]
