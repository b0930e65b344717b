"""make test-arm64's end-to-end check (run by scripts/test-arm64.sh, not by `make integration`):
the arm64 build, run under qemu-user, gives the x86 build's probabilities within 1e-4 for
`birdsong classify` of a real recording and for `birdsongd --input FILE` serving
/api/v1/predictions/latest.

The recording: the bundled soundscape (data/soundscapes, MIT) always, plus one xeno-canto
recording from ../shared/data/birds-6sp when that is present (the first by path whose size
puts it at a few to ~30 s of audio, to keep emulated runs short).
Environment: ARM64_OUT (the cross build), ARM64_SYSROOT, QEMU, BIRDSONG_BUILD (x86 build)."""
import glob
import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from birdsongd_helpers import BUILD, Daemon  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.environ.get("ARM64_OUT", "")
SYSROOT = os.environ.get("ARM64_SYSROOT", "")
QEMU = os.environ.get("QEMU", "qemu-aarch64")
MODEL = os.path.join(ROOT, "models", "demo.bsm")
BUNDLED = os.path.join(ROOT, "data", "soundscapes", "opensoundscape_birds_10s.flac")
TOL = 1e-4

pytestmark = pytest.mark.skipif(not (OUT and SYSROOT), reason="run by make test-arm64 (ARM64_OUT, ARM64_SYSROOT)")


def emulated(program):
    return [QEMU, "-L", SYSROOT, os.path.join(OUT, program)]


def recordings():
    out = [BUNDLED]
    shared = os.environ.get("BIRDSONG_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))
    for f in sorted(glob.glob(os.path.join(shared, "birds-6sp", "*", "*.flac"))):
        if 100_000 <= os.path.getsize(f) <= 600_000:
            out.append(f)
            break
    return out


def classify(cmd, path):
    r = subprocess.run(cmd + ["classify", "--model", MODEL, "--format", "json", path],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    return j["species"], j["files"][0]["windows"]


def assert_close(got, want, where):
    assert len(got) == len(want), where
    worst = max(abs(a - b) for a, b in zip(got, want))
    assert worst <= TOL, "%s: probabilities differ by %.3g (> %g): %s vs %s" % (where, worst, TOL, got, want)


@pytest.mark.parametrize("path", recordings(), ids=os.path.basename)
def test_classify_matches_x86(path):
    species, x86 = classify([os.path.join(BUILD, "birdsong")], path)
    species_arm, arm = classify(emulated("birdsong"), path)
    assert species_arm == species
    assert len(arm) == len(x86) > 0
    for w_arm, w_x86 in zip(arm, x86):
        assert (w_arm["start"], w_arm["end"]) == (w_x86["start"], w_x86["end"])
        assert_close(w_arm["probabilities"], w_x86["probabilities"], "window at %g s" % w_x86["start"])


def last_prediction(daemon, n_windows, timeout):
    """Runs the daemon until the file has ended and its last window is published."""
    with daemon:
        daemon.wait_for(lambda: daemon.latest_seq() == n_windows
                        and daemon.json("/api/v1/status")["audio"]["state"] == "ended",
                        timeout=timeout, what="window %d and the end of the file" % n_windows)
        latest = daemon.json("/api/v1/predictions/latest")
    assert daemon.proc.returncode == 0, daemon.output()
    return {p["species"]: p["probability"] for p in latest["probabilities"]}


@pytest.mark.parametrize("path", recordings(), ids=os.path.basename)
def test_daemon_latest_matches_x86(path, tmp_path):
    species, windows = classify([os.path.join(BUILD, "birdsong")], path)
    n = len(windows)
    seconds = windows[-1]["end"]
    # the file at 2x real time: the emulated worker keeps up with two windows per second
    args = ["--model", MODEL, "--input", path, "--input-speed", "2", "--state-dir", str(tmp_path)]
    x86 = last_prediction(Daemon(args, tmp=tmp_path), n, timeout=seconds + 30)
    d = Daemon(args, tmp=tmp_path)
    d.args = emulated("birdsongd") + d.args[1:]
    arm = last_prediction(d, n, timeout=seconds * 2 + 60)
    assert sorted(arm) == sorted(species) == sorted(x86)
    assert_close([arm[s] for s in species], [x86[s] for s in species], "latest (arm64 vs x86 daemon)")
    # and the daemon's last window is classify's last window
    assert_close([arm[s] for s in species], windows[-1]["probabilities"], "latest vs classify")


@pytest.mark.skipif(os.geteuid() != 0, reason="dpkg --root needs root to give the files their owners")
def test_arm64_package_installs_runs_and_removes(tmp_path):
    """The arm64 .deb (make deb ARCH=arm64, built by make test-arm64 before this runs), with
    the amd64 package's checks (tests/integration/test_deb.py), its programs run under qemu."""
    from test_deb import check_package, make_root
    debs = sorted(glob.glob(os.path.join(BUILD, "deb", "birdsong_*_arm64.deb")))
    assert debs, "no build/deb/birdsong_*_arm64.deb"
    check_package(debs[-1], make_root(tmp_path / "root"), run=[QEMU, "-L", SYSROOT], host_depends=False,
                  dpkg_args=("--force-architecture",))
