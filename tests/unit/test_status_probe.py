"""What inv status makes of the request it sends through nginx on each web host."""

from __future__ import annotations

from ops.inventory import load_environment
from ops.status import Item, StatusReport, judge_serving, parse_probe, probe_argv, summary

HEADERS = "HTTP/1.1 {code} X\r\nServer: nginx\r\nX-App-Version: {version}\r\n\r\n\n__ops__ {code} 0.012\n"


def test_the_probe_goes_through_nginx_on_the_host_to_the_health_path():
    argv = probe_argv("http://127.0.0.1:80/api/health")
    assert argv[0] == "curl" and argv[-1] == "http://127.0.0.1:80/api/health"
    assert "-D" in argv and "-w" in argv
    assert probe_argv("https://127.0.0.1:443/api/health", ("-k",))[:3] == ("curl", "-sS", "-k")


def test_a_200_with_the_recorded_version_is_serving():
    probe = parse_probe(HEADERS.format(code=200, version="3f2a9c1"))
    assert (probe.status, probe.version, probe.seconds) == (200, "3f2a9c1", 0.012)
    assert judge_serving(probe, "3f2a9c1") == (True, "serving 3f2a9c1 (200, 12 ms)")


def test_a_502_is_not_serving_whatever_the_records_say():
    probe = parse_probe("HTTP/1.1 502 Bad Gateway\r\nServer: nginx\r\n\r\n\n__ops__ 502 0.004\n")
    assert judge_serving(probe, "3f2a9c1") == (False, "not serving: nginx answers 502, 4 ms")


def test_nothing_listening_is_not_serving_with_curls_reason():
    probe = parse_probe("\n__ops__ 000 0.000\n", "curl: (7) Failed to connect to 127.0.0.1 port 80\n")
    ok, detail = judge_serving(probe, "3f2a9c1")
    assert not ok and detail == "not serving: nothing answers through nginx (curl: (7) Failed to connect to 127.0.0.1 port 80)"


def test_another_version_than_the_records_is_a_problem():
    probe = parse_probe(HEADERS.format(code=200, version="old1"))
    assert judge_serving(probe, "new2") == (False, "serves old1 but the records say new2, 12 ms")


def test_the_summary_names_each_problem_and_all_is_well_needs_every_item_ok():
    report = StatusReport("prod", [Item("web", "web1", "serving", False, "not serving: nginx answers 502"),
                                   Item("backup", "-", "db", False, "STALE"), Item("lock", "-", "lock", True, "free")])
    assert summary(report) == "prod: 2 problem(s): web1 serving, backup db"
    assert not report.ok and not StatusReport("prod").ok
    assert StatusReport("prod", [Item("lock", "-", "lock", True, "free")]).ok


def test_an_extra_source_that_breaks_is_one_failed_item_and_the_others_still_report(monkeypatch):
    from ops import status
    from ops.masking import Masker

    class Gw:
        env = load_environment("sandbox")  # no proxy.tls: the TLS source adds nothing
        mask = Masker()

    def archiving(gw, hosts):
        raise RuntimeError("pgbackrest info: timeout")

    def other(gw, hosts):
        return [Item("pitr", "-", "other", True, "fine")]

    monkeypatch.setattr(status, "EXTRA_SOURCES", [status.tls_items, archiving, other])
    items = status.extra_items(Gw(), [])
    assert [(i.section, i.check, i.ok) for i in items] == [("archiving", "archiving", False), ("pitr", "other", True)]
    assert items[0].detail == "could not be read: pgbackrest info: timeout"
