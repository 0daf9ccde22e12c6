"""ops/commands/nginx.py: the proxy's site config, line by line, and what it refuses."""

from __future__ import annotations

import re

import pytest

from ops.commands.nginx import (
    body_limit_for_upload,
    nginx_reload_argv,
    nginx_test_argv,
    render_site_conf,
)
from ops.errors import ConfigError

UPSTREAM = "athlete-platform-web-3f9c2d1:3000"


def conf(**overrides) -> str:
    kwargs = {"upstream": UPSTREAM, "listen_port": 80, "max_body_bytes": 10485760, "release": "3f9c2d1"}
    return render_site_conf(**{**kwargs, **overrides})


def lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()]


def block(text: str, opening: str) -> list[str]:
    """The stripped lines of the block that starts with ``opening``, braces included."""
    all_lines = lines(text)
    start = all_lines.index(opening)
    end = all_lines.index("}", start)
    return all_lines[start:end + 1]


def test_every_security_header_is_added_always_exactly_once():
    text = conf()
    expected = [
        'add_header X-Content-Type-Options "nosniff" always;',
        'add_header X-Frame-Options "DENY" always;',
        'add_header X-XSS-Protection "1; mode=block" always;',
        'add_header Content-Security-Policy "default-src \'self\'" always;',
        'add_header Referrer-Policy "strict-origin-when-cross-origin" always;',
    ]
    for line in expected:
        assert lines(text).count(line) == 1, line


def test_without_tls_no_hsts_header_is_sent_at_all():
    # A plain-http site must not promise HTTPS (and browsers ignore HSTS over http anyway).
    assert "Strict-Transport-Security" not in conf().replace("proxy_hide_header Strict-Transport-Security;", "")
    assert "Strict-Transport-Security" not in dynamic_conf(challenge=True).replace(
        "proxy_hide_header Strict-Transport-Security;", "")


def test_headers_live_in_server_block_not_in_locations():
    # NOTE: an add_header inside a location would silently drop every server-level one there.
    text = conf()
    for opening in ("location /socket.io/ {", "location / {"):
        assert not any(line.startswith("add_header") for line in block(text, opening))


def test_app_copies_of_security_headers_are_hidden_so_ours_are_the_only_ones():
    text = lines(conf())
    for name in ("X-Frame-Options", "Content-Security-Policy", "X-Powered-By"):
        assert f"proxy_hide_header {name};" in text


def test_release_header_names_the_release():
    assert 'add_header X-Release "3f9c2d1" always;' in lines(conf())


def test_no_release_header_without_a_release():
    assert not any("X-Release" in line for line in lines(conf(release="")))


def test_websocket_map_passes_upgrade_and_keeps_keepalive_otherwise():
    assert block(conf(), "map $http_upgrade $connection_upgrade {") == [
        "map $http_upgrade $connection_upgrade {",
        "default upgrade;",
        "''      '';",
        "}",
    ]
    text = lines(conf())
    for line in ("proxy_http_version 1.1;",
                 "proxy_set_header Upgrade $http_upgrade;",
                 "proxy_set_header Connection $connection_upgrade;"):
        assert line in text


def test_socket_io_location_has_long_timeouts_and_no_buffering():
    assert block(conf(), "location /socket.io/ {") == [
        "location /socket.io/ {",
        "proxy_pass http://app_release;",
        "proxy_read_timeout 1h;",
        "proxy_send_timeout 1h;",
        "proxy_buffering off;",
        "}",
    ]


def test_forwarded_headers_are_set():
    text = lines(conf())
    for line in ("proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
                 "proxy_set_header X-Forwarded-Proto $scheme;",
                 "proxy_set_header X-Forwarded-Host $http_host;",
                 "proxy_set_header Host $http_host;"):
        assert line in text


def test_upstream_is_listed_twice_so_a_refused_connection_is_retried_once():
    assert block(conf(), "upstream app_release {") == [
        "upstream app_release {",
        "# NOTE: the same server twice on purpose: with a single entry nginx never retries",
        "# (proxy_next_upstream needs a second peer); max_fails=0 never marks it down.",
        f"server {UPSTREAM} max_fails=0;",
        f"server {UPSTREAM} max_fails=0;",
        "keepalive 32;",
        "}",
    ]
    text = lines(conf())
    assert "proxy_next_upstream error timeout;" in text
    assert "proxy_next_upstream_tries 3;" in text


def test_body_size_and_listen_port_and_server_name():
    text = lines(conf(max_body_bytes=10551296, listen_port=8080, server_name="app.example.com www.example.com"))
    assert "client_max_body_size 10551296;" in text
    assert "listen 8080 default_server;" in text
    assert "server_name app.example.com www.example.com;" in text


def test_default_server_name_matches_any_host():
    assert "server_name _;" in lines(conf())


def test_braces_balance():
    text = conf()
    assert text.count("{") == text.count("}")
    assert text.endswith("}\n")


@pytest.mark.parametrize("upstream", [
    "", "web", "web:", ":3000", "web:0", "web:65536", "web:3000x", "web :3000", "web;evil:3000",
    "web:3000;", "we{b:3000", "web}:3000", "$host:3000", "web:3000\nserver x:1", "'web':3000",
    '"web":3000', "-web:3000", "web-:3000", "http://web:3000", "web:3000/", "[::1]:3000",
])
def test_bad_upstream_is_refused(upstream):
    with pytest.raises(ConfigError, match="invalid proxy upstream"):
        conf(upstream=upstream)


@pytest.mark.parametrize("upstream", ["web:3000", "athlete-platform-web-3f9c2d1:3000", "10.0.0.5:8080",
                                      "app.internal.example.com:443", "my_app.1:1"])
def test_good_upstreams_are_accepted(upstream):
    assert f"server {upstream} max_fails=0;" in lines(conf(upstream=upstream))


@pytest.mark.parametrize("port", [0, 65536, -1, True, "80", 80.0])
def test_bad_listen_port_is_refused(port):
    with pytest.raises(ConfigError, match="listen port"):
        conf(listen_port=port)


@pytest.mark.parametrize("size", [0, -1, True, "10m", 1.5])
def test_bad_body_size_is_refused(size):
    with pytest.raises(ConfigError, match="max body size"):
        conf(max_body_bytes=size)


@pytest.mark.parametrize("name", ["", "a;b", "a  b", "a\nb", "a{", "$host", "a b;"])
def test_bad_server_name_is_refused(name):
    with pytest.raises(ConfigError, match="server_name"):
        conf(server_name=name)


@pytest.mark.parametrize("release", ["a b", 'x"y', "x;y", "x\n", "$x", "a" * 129])
def test_bad_release_is_refused(release):
    with pytest.raises(ConfigError, match="invalid release"):
        conf(release=release)


def test_upload_body_limit_leaves_room_for_multipart_framing():
    assert body_limit_for_upload(10485760) == 10485760 + 64 * 1024
    with pytest.raises(ConfigError):
        body_limit_for_upload(0)


def test_test_and_reload_commands():
    assert nginx_test_argv("athlete-platform-proxy") == ("docker", "exec", "athlete-platform-proxy", "nginx", "-t")
    assert nginx_reload_argv("athlete-platform-proxy") == (
        "docker", "exec", "athlete-platform-proxy", "nginx", "-s", "reload")
    with pytest.raises(ConfigError):
        nginx_reload_argv("proxy; rm -rf /")


def dynamic_conf(**overrides) -> str:
    return conf(upstream="athlete-platform-web:3000", release="", resolver="127.0.0.11", **overrides)


def test_with_a_resolver_the_app_is_looked_up_per_request_and_no_upstream_block_is_written():
    text = lines(dynamic_conf())
    assert "resolver 127.0.0.11 valid=1s ipv6=off;" in text
    assert "set $app_upstream athlete-platform-web:3000;" in text
    # socket.io and / each, and each one's retry twin
    assert text.count("proxy_pass http://$app_upstream;") == 4
    assert not any(line.startswith("upstream ") for line in text)


def location_block(text: str, opening: str) -> list[str]:
    """The lines of ``location OPENING { ... }`` (one level: our locations nest nothing but if)."""
    rows = lines(text)
    start = rows.index(f"location {opening} {{")
    depth, block = 0, []
    for row in rows[start:]:
        depth += row.count("{") - row.count("}")
        block.append(row)
        if depth == 0:
            return block
    raise AssertionError(f"unclosed location {opening}")


def test_in_dynamic_mode_every_proxied_location_retries_its_failures_once_with_a_fresh_lookup():
    text = dynamic_conf(assets=("/_next/static", "/srv/athlete-platform/assets"))
    assert "error_page 502 504 = @socketio_retry;" in location_block(text, "/socket.io/")
    assert "error_page 502 504 = @app_retry;" in location_block(text, "/")
    assert "error_page 502 504 = @app_retry;" in location_block(text, "@app")  # the asset fallback
    for name, settings in (("@app_retry", []), ("@socketio_retry", ["proxy_read_timeout 1h;", "proxy_buffering off;"])):
        block = location_block(text, name)
        # its own resolver = its own DNS cache: not the server's, which may list only a stopped container
        assert "resolver 127.0.0.11 valid=1s ipv6=off;" in block
        assert block[block.index("if ($ops_no_retry) {") + 1] == "return 502;"
        assert "proxy_pass http://$app_upstream;" in block and all(s in block for s in settings)
        assert not any(row.startswith(("add_header", "error_page")) for row in block)  # headers inherited, no loop
    assert text.count("location @app_retry {") == 1


def test_static_mode_has_no_retry_locations():
    assert "_retry" not in conf() and "$ops_no_retry" not in conf()


def retry_allowed(connect_times: str, method: str, statuses: str) -> bool:
    """What nginx's map in the dynamic config decides (PCRE: Python's re agrees on these patterns)."""
    text = lines(dynamic_conf())
    start = text.index('map "$upstream_connect_time|$request_method|$upstream_status" $ops_no_retry {')
    patterns = []
    for row in text[start + 1:]:
        if row == "}":
            break
        m = re.fullmatch(r'"~(.*)" "";', row)
        if m:
            patterns.append(m.group(1))  # nginx keeps a backslash before | inside quotes: PCRE's literal |
    assert len(patterns) == 2, text[start:start + 6]
    key = f"{connect_times}|{method}|{statuses}"
    return any(re.search(p, key) for p in patterns)


@pytest.mark.parametrize("connect, method, status, allowed", [
    ("-", "GET", "502", True),                 # connect refused on the only peer it knew
    ("-, -", "POST", "502, 504", True),        # nothing reached any peer: safe even for a POST
    ("", "POST", "", True),                    # the name had no address at all
    ("0.001", "GET", "502", True),             # connected, then cut before an answer: GET is idempotent
    ("0.001", "POST", "502", False),           # the app may have processed it: never twice
    ("-, 0.000", "PUT", "502, 502", False),
    ("0.002", "GET", "504", False),            # a read timeout: the app is slow, not gone
    ("-, 0.001", "HEAD", "502, 504", False),
])
def test_the_retry_rule_never_sends_a_request_the_app_may_have_processed_twice(connect, method, status, allowed):
    assert retry_allowed(connect, method, status) is allowed


def test_dynamic_config_does_not_change_from_one_release_to_the_next():
    # A deploy must not need a reload: nothing release-specific is in the file.
    assert dynamic_conf() == conf(upstream="athlete-platform-web:3000", release="", resolver="127.0.0.11")
    assert "X-Release" not in dynamic_conf()


@pytest.mark.parametrize("bad", ["127.0.0.11;", "x y", "$host", ""])
def test_a_bad_resolver_is_refused(bad):
    with pytest.raises(ConfigError):
        conf(upstream="athlete-platform-web:3000", release="", resolver=bad)


def test_dynamic_mode_fails_fast_on_a_peer_that_just_went_away():
    assert "proxy_connect_timeout 300ms;" in lines(dynamic_conf())
    assert "proxy_connect_timeout 5s;" in lines(conf())


# -- TLS and ACME --------------------------------------------------------------------------
def tls_conf(**overrides) -> str:
    return dynamic_conf(challenge=True, tls=True, assets=("/_next/static", "/srv/assets"), **overrides)


def servers(text: str) -> list[list[str]]:
    """Each top-level ``server {`` block's stripped lines (nested blocks included)."""
    out, current, depth = [], None, 0
    for line in lines(text):
        if current is None and line == "server {":
            current, depth = [], 0
        if current is not None:
            current.append(line)
            depth += line.count("{") - line.count("}")
            if depth == 0:
                out.append(current)
                current = None
    return out


def test_without_tls_the_challenge_path_is_served_from_the_challenge_root_on_the_http_port():
    text = dynamic_conf(challenge=True)
    assert block(text, "location ^~ /.well-known/acme-challenge/ {") == [
        "location ^~ /.well-known/acme-challenge/ {",
        "root /var/www/acme;",
        "default_type text/plain;",
        "}",
    ]
    assert len(servers(text)) == 1
    assert "listen 80 default_server;" in servers(text)[0]


def test_challenge_location_only_when_asked():
    assert "acme-challenge" not in dynamic_conf()


def test_with_tls_port_80_answers_challenges_and_redirects_everything_else_with_301():
    http, https = servers(tls_conf())
    assert http == [
        "server {",
        "listen 80 default_server;",
        "server_name _;",
        "",
        "# ACME HTTP-01: the CA fetches the token written here by `inv tls.issue`; never the app.",
        "location ^~ /.well-known/acme-challenge/ {",
        "root /var/www/acme;",
        "default_type text/plain;",
        "}",
        "",
        "location / {",
        "return 301 https://$host$request_uri;",
        "}",
        "}",
    ]
    assert not any("proxy_pass" in line for line in http)


def test_redirect_names_a_non_standard_https_port():
    http, _ = servers(tls_conf(https_port=8443))
    assert "return 301 https://$host:8443$request_uri;" in http


def test_with_tls_the_app_is_served_on_443_with_modern_protocols_and_the_certificate_from_the_mount():
    _, https = servers(tls_conf())
    for line in ("listen 443 ssl http2 default_server;",
                 "ssl_certificate /etc/nginx/tls/fullchain.pem;",
                 "ssl_certificate_key /etc/nginx/tls/privkey.pem;",
                 "ssl_protocols TLSv1.2 TLSv1.3;",
                 "ssl_session_tickets off;"):
        assert line in https, line
    assert not any("TLSv1 " in line or "TLSv1.1" in line or "SSLv3" in line for line in https)


def test_with_tls_hsts_is_sent_only_by_the_https_server_and_repeated_in_the_asset_location():
    http, https = servers(tls_conf())
    hsts = 'add_header Strict-Transport-Security "max-age=31536000; includeSubDomains" always;'
    assert hsts not in http
    assert https.count(hsts) == 2  # server level + the asset location (add_header there hides the server's)
    assert hsts in block(tls_conf(), "location ^~ /_next/static/ {")


def test_with_tls_websockets_and_assets_are_proxied_as_on_plain_http():
    _, https = servers(tls_conf())
    plain = dynamic_conf(assets=("/_next/static", "/srv/assets"))
    assert block(tls_conf(), "location /socket.io/ {") == block(plain, "location /socket.io/ {")
    for line in ("proxy_set_header Upgrade $http_upgrade;", "proxy_set_header Connection $connection_upgrade;",
                 "proxy_set_header X-Forwarded-Proto $scheme;", "location @app {", "location / {",
                 "proxy_pass http://$app_upstream;"):
        assert line in https, line


def test_tls_config_braces_balance_and_has_two_servers():
    text = tls_conf()
    assert text.count("{") == text.count("}")
    assert len(servers(text)) == 2


@pytest.mark.parametrize("port", [0, 65536, "443", True])
def test_bad_https_port_is_refused(port):
    with pytest.raises(ConfigError, match="https port"):
        tls_conf(https_port=port)
