"""Hostile HTTP input against the real birdsongd (issue 7): malformed and repeated parameters,
huge numbers, NUL bytes, `..` paths, 100 kB headers and URLs, bodies where none belong, odd
methods, slow clients, connection limits; the bearer token, CORS and the headers every
response carries. Every bad request must get a 4xx, never a 5xx, and the daemon must stay up."""
import http.client
import os
import socket
import stat
import subprocess
import threading
import time

import pytest

from birdsongd_helpers import DAEMON, MAKE_MODEL, Daemon, make_model, write_wav

pytestmark = pytest.mark.skipif(not (os.path.exists(DAEMON) and os.path.exists(MAKE_MODEL)),
                                reason="build/birdsongd or build/tools/make_test_model not built")

TOKEN = "s3cret-token-0123456789abcdef"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    model = make_model(d / "model.bsm", ["alpha", "beta", "gamma"])
    wav = d / "signal.wav"
    write_wav(wav, seconds=4.0)
    return {"dir": d, "model": model, "wav": str(wav)}


def start(files, tmp_path, *extra, **kw):
    return Daemon(["--model", files["model"], "--input", files["wav"], "--input-loop", "--input-speed", "4",
                   "--state-dir", str(tmp_path / "state")] + list(extra), tmp=tmp_path, **kw)


@pytest.fixture(scope="module")
def daemon(files, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile-daemon")
    d = start(files, tmp, "--set", "cors_origins=https://station.example.org")
    with d:
        d.wait_for(lambda: d.latest_seq() >= 1, what="a first window")
        yield d
    assert d.proc.returncode == 0, d.output()[-2000:]


def raw(port, data, timeout=5.0, read=True):
    """Sends bytes, returns (status or None, headers dict, body) of the first response."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        if not read:
            return None
        buf = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                if b"\r\n\r\n" in buf:
                    head, _, body = buf.partition(b"\r\n\r\n")
                    hdrs = parse_headers(head)
                    n = int(hdrs.get("content-length", "-1"))
                    if n >= 0 and len(body) >= n:
                        break
        except (ConnectionResetError, socket.timeout):
            pass
    finally:
        s.close()
    if not buf.startswith(b"HTTP/1."):
        return None, {}, buf
    head, _, body = buf.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), parse_headers(head), body


def parse_headers(head):
    out = {}
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        out[k.decode("latin-1").strip().lower()] = v.decode("latin-1").strip()
    return out


def get(port, target, extra=b""):
    return raw(port, b"GET " + target + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n" + extra + b"\r\n")


# ---- malformed queries and paths: every one a 4xx ----------------------------------------

BIG = b"9" * 40
BAD_TARGETS = [
    # top: non-numeric, negative, zero, out of range, huge, signs, hex, floats, NUL, repeated, empty
    b"/api/v1/predictions/latest?top=abc", b"/api/v1/predictions/latest?top=-1", b"/api/v1/predictions/latest?top=0",
    b"/api/v1/predictions/latest?top=4", b"/api/v1/predictions/latest?top=" + BIG,
    b"/api/v1/predictions/latest?top=+1", b"/api/v1/predictions/latest?top=0x2", b"/api/v1/predictions/latest?top=1.0",
    b"/api/v1/predictions/latest?top=1e1", b"/api/v1/predictions/latest?top=%00",
    b"/api/v1/predictions/latest?top=1%00", b"/api/v1/predictions/latest?top=%001",
    b"/api/v1/predictions/latest?top=1&top=2", b"/api/v1/predictions/latest?top=1&top=1",
    b"/api/v1/predictions/latest?top=", b"/api/v1/predictions/latest?top", b"/api/v1/predictions/latest?top=%20",
    b"/api/v1/predictions/latest?top=1%20", b"/api/v1/predictions/latest?nope=1", b"/api/v1/predictions/latest?=1",
    b"/api/v1/predictions/latest?%00=1", b"/api/v1/predictions/latest?top=%ZZ", b"/api/v1/predictions/latest?top=%",
    b"/api/v1/predictions/latest?top=%E2%80%8B1", b"/api/v1/predictions/latest?top=\xff",
    # since / limit
    b"/api/v1/predictions?since=18446744073709551616", b"/api/v1/predictions?since=9223372036854775808",
    b"/api/v1/predictions?since=-5", b"/api/v1/predictions?since=" + BIG, b"/api/v1/predictions?limit=0",
    b"/api/v1/predictions?limit=1001", b"/api/v1/predictions?limit=1&limit=1", b"/api/v1/predictions?since=1&since=2",
    b"/api/v1/predictions?since=%00", b"/api/v1/predictions?limit=NaN", b"/api/v1/predictions?limit=-0",
    b"/api/v1/predictions?since=1&limit=5&extra=", b"/api/v1/predictions?" + b"&" * 2000 + b"x=1",
    b"/api/v1/predictions?" + b"a=1&" * 2000,
    # no-argument routes with arguments
    b"/api/v1/health?x=1", b"/api/v1/status?status", b"/api/v1/species?%00", b"/metrics?format=json",
    # detections
    b"/api/v1/detections?from=garbage", b"/api/v1/detections?from=2026-13-45", b"/api/v1/detections?to=%00",
    b"/api/v1/detections?from=2026-05-01T25:00:00Z", b"/api/v1/detections?from=" + BIG,
    b"/api/v1/detections?species=", b"/api/v1/detections?min_confidence=nan", b"/api/v1/detections?min_confidence=inf",
    b"/api/v1/detections?min_confidence=2", b"/api/v1/detections?min_confidence=-0.5",
    b"/api/v1/detections?min_confidence=0.5%00", b"/api/v1/detections?limit=0", b"/api/v1/detections?offset=-1",
    b"/api/v1/detections?offset=" + BIG, b"/api/v1/detections?species=a&species=b",
    b"/api/v1/detections/summary?bucket=week", b"/api/v1/detections/summary?bucket=%00",
    b"/api/v1/detections/summary?bucket=hour&bucket=day",
    # item paths: ids that are not positive integers, trailing parts, traversal
    b"/api/v1/detections/0", b"/api/v1/detections/-1", b"/api/v1/detections/+1", b"/api/v1/detections/1x",
    b"/api/v1/detections/" + BIG, b"/api/v1/detections/1/audio/x", b"/api/v1/detections/1/audio%00.flac",
    b"/api/v1/detections/1%00", b"/api/v1/detections/%2e%2e/%2e%2e/etc/passwd",
    b"/api/v1/detections/1/../../../../etc/passwd", b"/api/v1/detections/../../../etc/passwd",
    b"/api/v1/detections/1/audio/../../../../etc/passwd", b"/api/v1/detections/ 1",
    b"/api/v1/detections/99999", b"/api/v1/detections/99999/audio",
    # sources: names that are no source, trailing parts, arguments of the other suffix
    b"/api/v1/sources/", b"/api/v1/sources/%00", b"/api/v1/sources/" + BIG, b"/api/v1/sources/../../etc/passwd",
    b"/api/v1/sources/default/predictions/latest?since=1", b"/api/v1/sources/default/predictions?top=1",
    b"/api/v1/sources/default/predictions/latest/x", b"/api/v1/sources/default?limit=1",
    b"/api/v1/sources/default/predictions?since=-1", b"/api/v1/sources?x=1",
    # unknown paths, traversal, NUL
    b"/../../etc/passwd", b"/%2e%2e/%2e%2e/etc/passwd", b"/api/v1/health%00", b"/api/v1/health/..",
    b"/api/v1/../../etc/passwd", b"//etc/passwd", b"/etc/passwd", b"/api/v1/", b"/api", b"/api/v1/healthz",
    b"/api/v1/health/", b"/%00", b"/\xff\xfe", b"/api/v1/predictions/latest/../../../etc/shadow",
    b"/index.html", b"/dashboard.html", b"/.git/config", b"/api/v1/stream/../../etc/passwd",
]


def test_malformed_queries_and_paths_get_4xx_never_5xx(daemon):
    statuses = {}
    for t in BAD_TARGETS:
        status, hdrs, body = get(daemon.port, t)
        statuses[t] = status
        assert status is not None and 400 <= status < 500, (t, status, body[:300])
        assert b"root:" not in body and b"[core]" not in body, t
        if status not in (414, 431):  # libmicrohttpd's own refusals carry its HTML page
            assert hdrs.get("content-type") == "application/json", (t, hdrs)
            assert hdrs.get("x-content-type-options") == "nosniff", (t, hdrs)
    assert daemon.proc.poll() is None
    assert daemon.get("/api/v1/health")[0] == 200
    print("hostile targets: %d, statuses %s" % (len(BAD_TARGETS), sorted(set(statuses.values()))))


def test_huge_urls_headers_and_odd_request_lines_are_refused(daemon):
    cases = [
        b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/v1/predictions?since=" + b"1" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 100_000 + b"\r\n\r\n",
        b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(5000)) + b"\r\n",
        b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nCookie: " + b"c=" * 50_000 + b"\r\n\r\n",
        b"GET /api/v1/he\x00alth HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nBroken header line\r\n\r\n",
        b"GET\r\n\r\n", b"\r\n\r\n\r\n", b"GET  /api/v1/health  HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64),  # a TLS hello
        b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ]
    for data in cases:
        status, hdrs, body = raw(daemon.port, data)
        # refused with a 4xx, or the connection closed without an answer; never a 5xx
        assert status is None or 400 <= status < 500, (data[:80], status, body[:200])
    assert daemon.proc.poll() is None
    assert daemon.get("/api/v1/health")[0] == 200


def test_bodies_where_none_belong_get_413_without_being_read(daemon):
    for method in (b"GET", b"HEAD", b"DELETE", b"POST"):
        for target in (b"/api/v1/health", b"/api/v1/predictions/latest", b"/api/v1/reload", b"/nope"):
            status, hdrs, body = raw(daemon.port, method + b" " + target +
                                     b" HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world")
            assert status == 413, (method, target, status, body[:200])
    # a chunked body, and a large announced body that never comes
    status, _, _ = raw(daemon.port, b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"5\r\nhello\r\n0\r\n\r\n")
    assert status == 413
    status, _, _ = raw(daemon.port, b"POST /api/v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n")
    assert status == 413


def test_odd_methods_get_405_or_4xx(daemon):
    for m in (b"PUT", b"DELETE", b"PATCH", b"TRACE", b"CONNECT", b"FOO", b"GE", b"GETT", b"get", b"POST"):
        status, hdrs, body = raw(daemon.port, m + b" /api/v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        assert status is not None and 400 <= status < 500, (m, status, body[:200])
        if status == 405:
            assert "GET" in hdrs.get("allow", ""), hdrs


def test_every_response_has_content_type_and_nosniff(daemon):
    for path, hdr in [("/api/v1/health", {}), ("/api/v1/status", {}), ("/api/v1/species", {}),
                      ("/api/v1/predictions?limit=2", {}), ("/api/v1/detections", {}),
                      ("/api/v1/detections/summary", {}), ("/metrics", {}), ("/", {}), ("/nope", {}),
                      ("/api/v1/predictions/latest", {"If-None-Match": "*"})]:
        status, hdrs, _ = daemon.request("GET", path, hdr)
        assert status < 500, (path, status)
        assert hdrs.get("X-Content-Type-Options") == "nosniff", (path, hdrs)
        assert hdrs.get("Content-Type"), (path, hdrs)
    status, hdrs, _ = daemon.request("POST", "/api/v1/health")
    assert status == 405 and hdrs.get("X-Content-Type-Options") == "nosniff"


# ---- CORS ------------------------------------------------------------------------------

def test_cors_only_for_the_configured_origin(daemon):
    ok = "https://station.example.org"
    status, hdrs, _ = daemon.request("GET", "/api/v1/health", {"Origin": ok})
    assert status == 200 and hdrs.get("Access-Control-Allow-Origin") == ok
    for evil in ("https://evil.example", "null", "https://station.example.org.evil.example", "http://station.example.org"):
        status, hdrs, _ = daemon.request("GET", "/api/v1/health", {"Origin": evil})
        assert status == 200 and "Access-Control-Allow-Origin" not in hdrs, (evil, hdrs)
    status, hdrs, _ = daemon.request("OPTIONS", "/api/v1/predictions/latest",
                                     {"Origin": ok, "Access-Control-Request-Method": "GET"})
    assert status == 204 and hdrs.get("Access-Control-Allow-Origin") == ok
    assert "GET" in hdrs["Access-Control-Allow-Methods"]
    status, hdrs, _ = daemon.request("OPTIONS", "/api/v1/health", {"Origin": "https://evil.example"})
    assert status == 403 and "Access-Control-Allow-Origin" not in hdrs


def test_no_cors_headers_without_cors_origins(files, tmp_path):
    with start(files, tmp_path) as d:
        status, hdrs, _ = d.request("GET", "/api/v1/health", {"Origin": "https://station.example.org"})
        assert "Access-Control-Allow-Origin" not in hdrs
        status, hdrs, _ = d.request("OPTIONS", "/api/v1/health", {"Origin": "https://station.example.org"})
        assert status == 403


# ---- slow clients and connection limits ------------------------------------------------

def test_slow_clients_trickling_requests_do_not_block_others(daemon):
    stop = threading.Event()
    socks = []

    def trickle():
        s = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
        socks.append(s)
        req = b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"z" * 200
        for i in range(len(req)):
            if stop.is_set():
                return
            try:
                s.send(req[i:i + 1])
            except OSError:
                return
            time.sleep(0.02)

    threads = [threading.Thread(target=trickle) for _ in range(16)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    worst = 0.0
    for _ in range(40):
        t0 = time.monotonic()
        assert daemon.get("/api/v1/predictions/latest")[0] == 200
        worst = max(worst, time.monotonic() - t0)
    stop.set()
    for t in threads:
        t.join()
    for s in socks:
        s.close()
    assert worst < 1.0, "a request took %.2f s while 16 clients trickled" % worst


def test_per_ip_and_total_connection_limits(files, tmp_path):
    def burst(port, n):
        """n connections at once, each holding an unfinished request, then finished: how many
        were served (the others were closed by the server on arrival)."""
        socks = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            try:
                s.send(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")
            except OSError:
                pass
            socks.append(s)
        time.sleep(0.3)
        served = 0
        for s in socks:
            try:
                s.send(b"\r\n")
                served += s.recv(15).startswith(b"HTTP/1.1 200")
            except OSError:
                pass
            s.close()
        return served

    # one server thread: with a pool, libmicrohttpd keeps the counts per thread
    with start(files, tmp_path, "--set", "http_per_ip_connection_limit=4", "--set", "http_threads=1") as d:
        served = burst(d.port, 10)
        assert 1 <= served <= 4, served
        d.wait_for(lambda: d.get("/api/v1/health")[0] == 200, what="service after the burst")
        assert "connection limit" in d.output()
    with start(files, tmp_path, "--set", "http_per_ip_connection_limit=0", "--set", "http_connection_limit=6",
               "--set", "http_threads=1") as d:
        # at the total limit the server stops accepting: a 7th waits in the backlog until one goes
        held = []
        for _ in range(6):
            h = socket.create_connection(("127.0.0.1", d.port), timeout=5)
            h.send(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")
            held.append(h)
        time.sleep(0.3)
        s = socket.create_connection(("127.0.0.1", d.port), timeout=1)
        s.send(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        with pytest.raises(socket.timeout):
            s.recv(15)
        held[0].close()
        s.settimeout(5)
        assert s.recv(15).startswith(b"HTTP/1.1 200")
        for h in held + [s]:
            h.close()
        d.wait_for(lambda: d.get("/api/v1/health")[0] == 200, what="service after the burst")


# ---- bearer token ----------------------------------------------------------------------

def test_reload_does_not_exist_without_a_token(daemon):
    status, hdrs, body = daemon.request("POST", "/api/v1/reload")
    assert status == 404, (status, body)


def test_bearer_token_guards_writes_and_optionally_reads(files, tmp_path):
    with start(files, tmp_path, "--set", "auth_token=" + TOKEN) as d:
        # reads are open by default (a closed read would stay 401; the wait only covers a
        # first window that is late on a loaded machine, when health is 503 for a moment)
        d.wait_for(lambda: d.get("/api/v1/health")[0] == 200, what="health without a token")
        for hdr in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer " + TOKEN[:-1]},
                    {"Authorization": "Bearer " + TOKEN + "x"}, {"Authorization": "Basic " + TOKEN},
                    {"Authorization": TOKEN}, {"Authorization": "Bearer"}, {"Authorization": "Bearer \x01"}):
            status, hdrs, body = d.request("POST", "/api/v1/reload", hdr)
            assert status == 401, (hdr, status, body)
            assert hdrs.get("WWW-Authenticate", "").startswith("Bearer"), hdrs
        before = d.json("/api/v1/status")["model"]["reload"]["succeeded"]
        status, hdrs, body = d.request("POST", "/api/v1/reload", {"Authorization": "Bearer " + TOKEN})
        assert status == 200, body
        assert d.json("/api/v1/status")["model"]["reload"]["succeeded"] == before + 1
        # a damaged model: refused, the old one stays, the answer says why
        with open(files["model"], "rb") as f:
            good = f.read()
        bad = tmp_path / "bad.bsm"
        bad.write_bytes(good[: len(good) // 2])
        os.replace(files["model"], str(tmp_path / "saved.bsm"))
        try:
            os.symlink(str(bad), files["model"])
            status, _, body = d.request("POST", "/api/v1/reload", {"Authorization": "bearer  " + TOKEN})
            assert status == 500 and b"reloaded\":false" in body, body
        finally:
            os.unlink(files["model"])
            os.replace(str(tmp_path / "saved.bsm"), files["model"])
        assert d.get("/api/v1/health")[0] == 200
    with start(files, tmp_path, "--set", "auth_token=" + TOKEN, "--set", "auth_read=yes",
               port=None) as d:
        pass_hdr = {"Authorization": "Bearer " + TOKEN}
        for path in ("/api/v1/status", "/api/v1/predictions/latest", "/metrics", "/", "/api/v1/stream"):
            status, hdrs, _ = d.request("GET", path)
            assert status == 401, (path, status)
        assert d.request("GET", "/api/v1/status", pass_hdr)[0] == 200
        assert d.proc.poll() is None


def test_token_settings_are_checked_at_start(files, tmp_path):
    def check(*sets):
        args = [DAEMON, "--model", files["model"], "--check-config"]
        for s in sets:
            args += ["--set", s]
        return subprocess.run(args, capture_output=True, text=True, timeout=30)

    r = check("auth_token=short")
    assert r.returncode == 2 and "auth_token" in r.stderr and "16" in r.stderr, r.stderr
    r = check("auth_read=yes")
    assert r.returncode == 2 and "auth_read" in r.stderr
    tok = tmp_path / "token"
    tok.write_text(TOKEN + "\n")
    os.chmod(tok, 0o644)
    r = check("auth_token_file=%s" % tok)
    assert r.returncode == 2 and "auth_token_file" in r.stderr and "0644" in r.stderr, r.stderr
    os.chmod(tok, 0o600)
    r = check("auth_token_file=%s" % tok)
    assert r.returncode == 0, r.stderr
    r = check("auth_token_file=%s" % (tmp_path / "missing"))
    assert r.returncode == 2 and "missing" in r.stderr
    r = check("cors_origins=https://ok.example, station.local")
    assert r.returncode == 2 and "cors_origins" in r.stderr and "station.local" in r.stderr
    # the file's token is the one asked for
    with start(files, tmp_path, "--set", "auth_token_file=%s" % tok) as d:
        assert d.request("POST", "/api/v1/reload", {"Authorization": "Bearer " + TOKEN})[0] == 200
        assert d.request("POST", "/api/v1/reload", {"Authorization": "Bearer x" + TOKEN})[0] == 401


def test_loopback_is_the_default_listen_address():
    out = subprocess.run([DAEMON, "--help-config"], capture_output=True, text=True, check=True).stdout
    assert "\nlisten = 127.0.0.1:8080\n" in out
    assert "\nauth_read = false\n" in out and "\nauth_token = \n" in out
