"""Helpers for the station integration tests: a birdsongd process on a free port playing a
recording, HTTP and SSE clients, a Prometheus text-format parser, a minimal MQTT subscriber
and a minimal Chrome DevTools Protocol client (standard library only)."""
import base64
import json
import math
import os
import re
import signal
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("BIRDSONG_BUILD", os.path.join(REPO, "build"))
DAEMON = os.path.join(BUILD, "birdsongd")
MAKE_MODEL = os.path.join(BUILD, "tools", "make_test_model")
# MIT-licensed soundscape committed with its licence (data/soundscapes/LICENSE-opensoundscape).
AUDIO = os.path.join(REPO, "data", "soundscapes", "opensoundscape_birds_10s.flac")
LABELS = ["Parus_major", "Sitta_europaea", "Turdus_merula"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_model(path):
    subprocess.run([MAKE_MODEL, path, ",".join(LABELS)], check=True, capture_output=True)
    return path


class Daemon:
    """birdsongd reading AUDIO in a loop at `speed` x real time."""

    def __init__(self, model, state_dir, *settings, speed=4.0, log=None, extra=()):
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        args = [DAEMON, "-m", model, "-i", AUDIO, "--input-loop", "--input-speed", str(speed),
                "-l", "127.0.0.1:%d" % self.port, "--state-dir", state_dir, "--log-level", "info"] + list(extra)
        for s in settings:
            args += ["-s", s]
        self.log_path = log or os.path.join(state_dir + ".log")
        self.log = open(self.log_path, "wb")
        if os.environ.get("BIRDSONG_VALGRIND") == "1":  # see birdsongd_helpers.under_valgrind
            from birdsongd_helpers import valgrind_prefix
            args = valgrind_prefix() + args
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + (120 if os.environ.get("BIRDSONG_VALGRIND") == "1" else 20)
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("birdsongd exited with %d: %s" % (self.proc.returncode, self.read_log()))
            try:
                if self.status("/api/v1/predictions/latest") == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError("birdsongd did not publish a prediction in 20 s: " + self.read_log())

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-3000:]

    def request(self, path, headers=None):
        req = urllib.request.Request(self.base + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def status(self, path):
        return self.request(path)[0]

    def json(self, path, expect=200):
        st, _, body = self.request(path)
        assert st == expect, "%s: HTTP %d %s" % (path, st, body[:300])
        return json.loads(body)

    def wait_for(self, fn, timeout=15, what="condition"):
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = fn()
            if v:
                return v
            time.sleep(0.1)
        raise AssertionError("timed out waiting for " + what + "\n" + self.read_log())

    def stop(self, sig=signal.SIGTERM, timeout=60 if os.environ.get("BIRDSONG_VALGRIND") == "1" else 15):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=timeout)
        self.log.close()
        return self.proc.returncode

    def kill(self):
        return self.stop(signal.SIGKILL)


# ---- Server-Sent Events ------------------------------------------------------------------

class SSE:
    """Reads text/event-stream over a raw socket (HTTP/1.1, chunked or not)."""

    def __init__(self, port, last_event_id=None, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        hdr = "GET /api/v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
        if last_event_id is not None:
            hdr += "Last-Event-ID: %s\r\n" % last_event_id
        self.sock.sendall((hdr + "\r\n").encode())
        self.buf = b""
        head = self._until(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:] if l)}
        self.chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        self.text = ""

    def _recv(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("stream closed")
        self.buf += data

    def _until(self, sep):
        while sep not in self.buf:
            self._recv()
        out, _, self.buf = self.buf.partition(sep)
        return out

    def _body(self):
        if not self.chunked:
            if not self.buf:
                self._recv()
            out, self.buf = self.buf, b""
            return out.decode()
        size = int(self._until(b"\r\n").split(b";")[0], 16)
        if size == 0:
            raise EOFError("stream ended")
        while len(self.buf) < size + 2:
            self._recv()
        out, self.buf = self.buf[:size], self.buf[size + 2:]
        return out.decode()

    def next(self):
        """The next event as a dict (id, event, data) or a comment {"comment": ...}."""
        while "\n\n" not in self.text:
            self.text += self._body()
        block, _, self.text = self.text.partition("\n\n")
        ev = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                ev.setdefault("comment", line[1:].strip())
                continue
            k, _, v = line.partition(":")
            ev[k] = v[1:] if v.startswith(" ") else v
        return ev

    def events(self, n, kinds=("prediction", "detection")):
        out = []
        while len(out) < n:
            ev = self.next()
            if ev.get("event") in kinds:
                out.append(ev)
        return out

    def close(self):
        self.sock.close()


# ---- Prometheus text format (version 0.0.4) ----------------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(r"^(" + _NAME + r")(\{.*\})?[ \t]+(\S+)([ \t]+-?\d+)?$")


def _parse_labels(text, where):
    labels = {}
    i, n = 1, len(text) - 1  # inside the braces
    while i < n:
        m = re.match(r"[a-zA-Z_][a-zA-Z0-9_]*", text[i:])
        assert m, "%s: bad label name at %r" % (where, text[i:])
        key = m.group(0)
        i += len(key)
        assert text[i:i + 2] == '="', "%s: expected =\" after label %s" % (where, key)
        i += 2
        val = []
        while True:
            assert i < n, "%s: unterminated label value" % where
            c = text[i]
            if c == "\\":
                nxt = text[i + 1]
                assert nxt in '\\"n', "%s: bad escape \\%s" % (where, nxt)
                val.append({"\\": "\\", '"': '"', "n": "\n"}[nxt])
                i += 2
            elif c == '"':
                i += 1
                break
            else:
                assert c != "\n"
                val.append(c)
                i += 1
        assert key not in labels, "%s: label %s twice" % (where, key)
        labels[key] = "".join(val)
        if i < n:
            assert text[i] == ",", "%s: expected , between labels" % where
            i += 1
    return labels


def _value(s, where):
    if s in ("+Inf", "Inf"):
        return math.inf
    if s == "-Inf":
        return -math.inf
    if s == "NaN":
        return math.nan
    try:
        return float(s)
    except ValueError:
        raise AssertionError("%s: bad value %r" % (where, s))


def parse_prometheus(text):
    """Parses the text exposition format strictly; returns {family: {"type", "help",
    "samples": [(name, labels, value)]}}. Raises AssertionError naming the line."""
    assert text.endswith("\n"), "the page must end with a newline"
    families, current = {}, None
    seen = set()
    for no, line in enumerate(text.split("\n")[:-1], 1):
        where = "line %d" % no
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                assert re.fullmatch(_NAME, name), "%s: bad metric name %r" % (where, name)
                fam = families.setdefault(name, {"type": "untyped", "help": None, "samples": []})
                if parts[1] == "TYPE":
                    assert not fam["samples"], "%s: TYPE after samples of %s" % (where, name)
                    assert len(parts) == 4 and parts[3] in ("counter", "gauge", "histogram", "summary", "untyped"), \
                        "%s: bad TYPE" % where
                    fam["type"] = parts[3]
                else:
                    assert fam["help"] is None, "%s: second HELP for %s" % (where, name)
                    fam["help"] = parts[3] if len(parts) == 4 else ""
                current = name
            continue
        if not line.strip():
            continue
        m = _SAMPLE.match(line)
        assert m, "%s: not a sample: %r" % (where, line)
        name, labels = m.group(1), _parse_labels(m.group(2), where) if m.group(2) else {}
        value = _value(m.group(3), where)
        fam_name = name
        for suffix in ("_bucket", "_sum", "_count"):
            base = name[: -len(suffix)]
            if name.endswith(suffix) and base in families and families[base]["type"] in ("histogram", "summary"):
                fam_name = base
        assert fam_name in families, "%s: sample %s before its HELP/TYPE" % (where, name)
        assert fam_name == current, "%s: sample %s outside its family block" % (where, name)
        key = (name, tuple(sorted(labels.items())))
        assert key not in seen, "%s: duplicate series %s%s" % (where, name, labels)
        seen.add(key)
        fam = families[fam_name]
        if fam["type"] == "counter":
            assert value >= 0, "%s: negative counter" % where
        fam["samples"].append((name, labels, value))
    for name, fam in families.items():
        if fam["type"] != "histogram":
            continue
        groups = {}
        for n, labels, v in fam["samples"]:
            rest = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
            groups.setdefault(rest, {"buckets": [], "sum": None, "count": None})
            g = groups[rest]
            if n == name + "_bucket":
                g["buckets"].append((_value(labels["le"], name), v))
            elif n == name + "_sum":
                g["sum"] = v
            elif n == name + "_count":
                g["count"] = v
        for rest, g in groups.items():
            les = [le for le, _ in g["buckets"]]
            assert les == sorted(les) and les[-1] == math.inf, "%s: buckets must increase up to +Inf" % name
            counts = [c for _, c in g["buckets"]]
            assert counts == sorted(counts), "%s: bucket counts must be cumulative" % name
            assert g["count"] == counts[-1], "%s: _count must equal the +Inf bucket" % name
            assert g["sum"] is not None, "%s: _sum missing" % name
    return families


def metric(families, name, **labels):
    fam = name
    for suffix in ("_bucket", "_sum", "_count"):
        if fam not in families and name.endswith(suffix):
            fam = name[: -len(suffix)]
    for n, l, v in families[fam]["samples"]:
        if n == name and all(l.get(k) == x for k, x in labels.items()):
            return v
    raise KeyError(name)


# ---- a minimal MQTT 3.1.1 subscriber (QoS 0) ------------------------------------------------

def _mqtt_str(s):
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def _mqtt_packet(kind, body):
    n, rem = len(body), b""
    while True:
        byte = n % 128
        n //= 128
        rem += bytes([byte | (0x80 if n else 0)])
        if not n:
            break
    return bytes([kind]) + rem + body


class MQTTSubscriber:
    def __init__(self, port, topic, name="sub"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        body = (_mqtt_str("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 60)
                + _mqtt_str("station-test-%s-%d" % (name, os.getpid())))
        self.sock.sendall(_mqtt_packet(0x10, body))
        kind, payload = self._read()
        assert kind >> 4 == 2 and payload[1] == 0, "CONNACK refused"
        self.sock.sendall(_mqtt_packet(0x82, struct.pack("!H", 1) + _mqtt_str(topic) + b"\x00"))
        kind, payload = self._read()
        assert kind >> 4 == 9 and payload[2] != 0x80, "SUBACK refused"

    def _exact(self, n):
        out = b""
        while len(out) < n:
            d = self.sock.recv(n - len(out))
            if not d:
                raise EOFError("broker closed the connection")
            out += d
        return out

    def _read(self):
        kind = self._exact(1)[0]
        mult, n = 1, 0
        while True:
            b = self._exact(1)[0]
            n += (b & 0x7F) * mult
            mult *= 128
            if not b & 0x80:
                break
        return kind, self._exact(n)

    def messages(self, count, timeout=15):
        out, deadline = [], time.time() + timeout
        while len(out) < count:
            self.sock.settimeout(max(0.1, deadline - time.time()))
            kind, p = self._read()
            if kind >> 4 != 3:
                continue
            tlen = struct.unpack("!H", p[:2])[0]
            topic, rest = p[2:2 + tlen].decode(), p[2 + tlen:]
            if (kind >> 1) & 3:  # QoS > 0: skip the packet id
                rest = rest[2:]
            out.append((topic, rest.decode()))
        return out

    def publish(self, topic, payload, retain=True):
        """QoS 0."""
        self.sock.sendall(_mqtt_packet(0x31 if retain else 0x30, _mqtt_str(topic) + payload.encode()))

    def retained(self, seconds=2.0):
        """{topic: payload} of the retained messages (the broker's copies, sent on subscribing)
        read within `seconds`."""
        out, deadline = {}, time.time() + seconds
        while time.time() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.time()))
            try:
                kind, p = self._read()
            except (socket.timeout, TimeoutError):
                break
            if kind >> 4 != 3 or not kind & 1:
                continue
            tlen = struct.unpack("!H", p[:2])[0]
            topic, rest = p[2:2 + tlen].decode(), p[2 + tlen:]
            if (kind >> 1) & 3:
                rest = rest[2:]
            out[topic] = rest.decode()
        return out

    def close(self):
        try:
            self.sock.sendall(b"\xe0\x00")
        finally:
            self.sock.close()


# ---- PNG decoding (standard library: zlib) ---------------------------------------------------

def decode_png(data):
    """(width, height, rows of (r, g, b) tuples) of an 8-bit RGB or RGBA, non-interlaced PNG."""
    import zlib
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack("!I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        assert zlib.crc32(kind + body) == struct.unpack("!I", data[pos + 8 + n:pos + 12 + n])[0], "bad CRC"
        if kind == b"IHDR":
            ihdr = struct.unpack("!IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = ihdr
    assert depth == 8 and ctype in (2, 6) and interlace == 0, ihdr
    bpp = 3 if ctype == 2 else 4
    raw, stride, prev, rows = zlib.decompress(idat), w * bpp, bytearray(w * bpp), []
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[i:i + 3]) for i in range(0, stride, bpp)])
        prev = line
    return w, h, rows


# The viridis anchors (matplotlib's 11-step hex codes): a pixel is viridis-like when it lies
# near the polyline through them.
VIRIDIS = [(0x44, 0x01, 0x54), (0x48, 0x24, 0x75), (0x41, 0x44, 0x87), (0x35, 0x5f, 0x8d), (0x2a, 0x78, 0x8e),
           (0x21, 0x91, 0x8c), (0x22, 0xa8, 0x84), (0x44, 0xbf, 0x70), (0x7a, 0xd1, 0x51), (0xbd, 0xdf, 0x26),
           (0xfd, 0xe7, 0x25)]


def viridis_like(px, tol=12):
    for a, b in zip(VIRIDIS, VIRIDIS[1:]):
        d = [b[k] - a[k] for k in range(3)]
        dd = sum(x * x for x in d)
        t = max(0.0, min(1.0, sum((px[k] - a[k]) * d[k] for k in range(3)) / dd))
        if sum((px[k] - a[k] - t * d[k]) ** 2 for k in range(3)) <= tol * tol:
            return True
    return False


# ---- a minimal Chrome DevTools Protocol client (WebSocket) --------------------------------

class CDP:
    def __init__(self, ws_url):
        u = urllib.parse.urlparse(ws_url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           % (u.path, u.hostname, u.port, key)).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert b" 101 " in head.split(b"\r\n")[0], head
        self.next_id = 0
        self.events = []

    def _exact(self, n):
        out = b""
        while len(out) < n:
            d = self.sock.recv(n - len(out))
            if not d:
                raise EOFError("devtools closed")
            out += d
        return out

    def _send(self, obj):
        data = json.dumps(obj).encode()
        n = len(data)
        hdr = bytes([0x81])
        if n < 126:
            hdr += bytes([0x80 | n])
        elif n < 65536:
            hdr += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            hdr += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        self.sock.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _recv(self):
        msg = b""
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._exact(8))[0]
            payload = self._exact(n)
            if b0 & 0x0F in (0x9, 0xA):  # ping/pong
                continue
            msg += payload
            if b0 & 0x80:
                return json.loads(msg)

    def call(self, method, **params):
        self.next_id += 1
        self._send({"id": self.next_id, "method": method, "params": params})
        while True:
            m = self._recv()
            if m.get("id") == self.next_id:
                assert "error" not in m, m
                return m.get("result", {})
            self.events.append(m)

    def evaluate(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        assert "exceptionDetails" not in r, r
        return r["result"].get("value")

    def pump(self, seconds):
        """Collects events for a while (CDP events arrive unasked)."""
        deadline = time.time() + seconds
        while time.time() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.time()))
            try:
                self.events.append(self._recv())
            except socket.timeout:
                break
        self.sock.settimeout(30)

    def close(self):
        self.sock.close()


# ---- documented schemas (docs/openapi.yaml): one checker, in birdsongd_helpers -------------

from birdsongd_helpers import check_schema  # noqa: E402,F401  (re-exported for the station tests)
