"""Helpers for integration tests of birdsongd on the real binary (shared by test files).

Daemon(...) starts build/birdsongd on a free loopback port and stops it; make_model() writes
a random-weight model with build/tools/make_test_model; write_wav() a 16-bit test signal;
alsa_config() an ALSA configuration whose default capture device plays a file through the
project's ioplug plugin (build/alsa/libasound_module_pcm_bsfile.so, REFERENCES.md §5).
"""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time
import wave

import numpy as np

BUILD = os.environ.get("BIRDSONG_BUILD") or os.path.join(os.path.dirname(__file__), "..", "..", "build")
BUILD = os.path.abspath(BUILD)
DAEMON = os.path.join(BUILD, "birdsongd")
TRAINER = os.path.join(BUILD, "birdsong")
MAKE_MODEL = os.path.join(BUILD, "tools", "make_test_model")
PLUGIN = os.path.join(BUILD, "alsa", "libasound_module_pcm_bsfile.so")

# BIRDSONG_VALGRIND=1 (make test-valgrind): every daemon the tests start runs under valgrind
# memcheck; an invalid access or a definite leak makes it exit 99 and is written to
# $BIRDSONG_VALGRIND_LOGDIR/vg-<pid>.log (the make target fails when any is not empty).
# Timing-bound assertions may fail under valgrind (~20x slower); SLOW stretches start-up waits.
VALGRIND = os.environ.get("BIRDSONG_VALGRIND") == "1"
SLOW = 10 if VALGRIND else 1


def valgrind_prefix():
    if not VALGRIND:
        return []
    out = ["valgrind", "--quiet", "--leak-check=full", "--errors-for-leak-kinds=definite",
           "--show-leak-kinds=definite", "--error-exitcode=99", "--child-silent-after-fork=yes"]
    logdir = os.environ.get("BIRDSONG_VALGRIND_LOGDIR")
    if logdir:
        out.append("--log-file=%s/vg-%%p.log" % logdir)
    return out


def under_valgrind(args):
    return valgrind_prefix() + list(args)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_model(path, labels, seed=1, arch="convnet-lite"):
    subprocess.run([MAKE_MODEL, str(path), ",".join(labels), arch, str(seed)], check=True)
    return str(path)


def write_wav(path, seconds=4.0, sr=22050, seed=0):
    """A chirp plus noise, 16-bit mono. Returns the samples as libsndfile reads them (x/32768)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * (800 + 700 * t) * t) + 0.05 * rng.standard_normal(t.size)
    pcm = np.clip(np.round(x * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
    return pcm.astype(np.float32) / 32768.0


def alsa_config(path, devices):
    """devices: {name: {"file": ..., "loop": bool, "fail": "start"|"open", "stall_after": s,
    "present": marker path (the device is unplugged while it does not exist)}}.
    The one named "default" becomes pcm.!default (PortAudio needs a default PCM)."""
    lines = ['pcm_type.bsfile { lib "%s" }' % PLUGIN]
    for name, d in devices.items():
        key = "pcm.!default" if name == "default" else "pcm.%s" % name
        body = 'type bsfile file "%s"' % d["file"]
        if d.get("loop"):
            body += " loop true"
        if d.get("fail"):
            body += ' fail "%s"' % d["fail"]
        if d.get("present"):
            body += ' present "%s"' % d["present"]
        if d.get("stall_after"):
            body += " stall_after %g" % d["stall_after"]
        lines.append("%s { %s }" % (key, body))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return str(path)


class Daemon:
    def __init__(self, args, env=None, port=None, tmp=None):
        self.port = port or free_port()
        self.args = under_valgrind([DAEMON, "--listen", "127.0.0.1:%d" % self.port] + list(args))
        self.env = dict(os.environ)
        self.env.pop("JOURNAL_STREAM", None)
        self.env.update(env or {})
        self.log_path = os.path.join(str(tmp), "birdsongd-%d.log" % self.port) if tmp else os.devnull
        self.proc = None

    def start(self, wait=True):
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        if wait:
            deadline = time.time() + 10 * SLOW
            while time.time() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError("birdsongd exited with %s:\n%s" % (self.proc.returncode, self.output()))
                try:
                    self.get("/api/v1/health")
                    return self
                except OSError:
                    time.sleep(0.05)
            raise AssertionError("birdsongd did not answer within 10 s:\n" + self.output())
        return self

    def output(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def request(self, method, path, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            c.request(method, path, headers=headers or {})
            r = c.getresponse()
            body = r.read()
            return r.status, dict(r.getheaders()), body
        finally:
            c.close()

    def get(self, path, headers=None):
        status, hdrs, body = self.request("GET", path, headers)
        return status, hdrs, (json.loads(body) if body else None)

    def json(self, path):
        status, _, j = self.get(path)
        assert status == 200, (path, status, j)
        return j

    def wait_for(self, predicate, timeout=10, what="condition"):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            last = predicate()
            if last:
                return last
            if self.proc.poll() is not None:
                raise AssertionError("birdsongd exited (%s) while waiting for %s:\n%s"
                                     % (self.proc.returncode, what, self.output()))
            time.sleep(0.05)
        raise AssertionError("timed out waiting for %s; log:\n%s" % (what, self.output()[-3000:]))

    def latest_seq(self):
        return self.json("/api/v1/status")["results"]["latest_seq"]

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=5 * SLOW):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()
        return self.proc.returncode if self.proc else None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# ---- documented schemas (docs/openapi.yaml) ----------------------------------------------

def check_schema(value, schema, spec, where):
    """The subset of OpenAPI schema checking the docs use: $ref, type, required, properties,
    items, additionalProperties, enum, nullable, minimum/maximum, pattern."""
    if "$ref" in schema:
        return check_schema(value, spec["components"]["schemas"][schema["$ref"].split("/")[-1]], spec, where)
    if value is None:
        assert schema.get("nullable"), "%s: null but not nullable" % where
        return
    types = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int, "number": (int, float)}
    t = schema.get("type")
    if t:
        assert isinstance(value, types[t]) and not (t in ("integer", "number") and isinstance(value, bool)), \
            "%s: expected %s, found %r" % (where, t, value)
    if "enum" in schema:
        assert value in schema["enum"], where
    if "minimum" in schema:
        assert value >= schema["minimum"], where
    if "maximum" in schema:
        assert value <= schema["maximum"], where
    if "pattern" in schema:
        assert re.match(schema["pattern"], value), "%s: %r" % (where, value)
    for k in schema.get("required", []):
        assert k in value, "%s: missing %s" % (where, k)
    for k, sub in schema.get("properties", {}).items():
        if isinstance(value, dict) and k in value:
            check_schema(value[k], sub, spec, where + "." + k)
    if isinstance(schema.get("additionalProperties"), dict):
        for k, v in value.items():
            check_schema(v, schema["additionalProperties"], spec, where + "." + k)
    if "items" in schema:
        for i, v in enumerate(value):
            check_schema(v, schema["items"], spec, "%s[%d]" % (where, i))
