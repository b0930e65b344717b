"""The amd64 Debian package (make deb, scripts/make-deb.sh; built by `make test` before the
integration tests): installed into a throwaway root with `dpkg --root` (maintainer scripts
run chrootless with DPKG_ROOT set, so deb-systemd-helper enables the unit inside that root and
nothing on this machine changes), the installed unit checked with `systemd-analyze verify`,
the installed binaries run, the edited conffile kept over an upgrade, then removed and purged
without leaving a file behind."""
import glob
import os
import shutil
import subprocess

import pytest

from birdsongd_helpers import BUILD

UNIT = "lib/systemd/system/birdsongd.service"
WANTS = "etc/systemd/system/multi-user.target.wants/birdsongd.service"
CONF = "etc/birdsong/birdsongd.conf"
MODEL = "usr/share/birdsong/models/demo.bsm"


def the_deb():
    debs = sorted(glob.glob(os.path.join(BUILD, "deb", "birdsong_*_amd64.deb")))
    return debs[-1] if debs else None


pytestmark = [
    pytest.mark.skipif(shutil.which("dpkg") is None, reason="not a Debian system: no dpkg"),
    pytest.mark.skipif(the_deb() is None, reason="no build/deb/birdsong_*_amd64.deb: run make deb"),
    pytest.mark.skipif(os.geteuid() != 0, reason="dpkg --root needs root to give the files their owners"),
]


def dpkg(root, *args):
    r = subprocess.run(["dpkg", "--root=%s" % root, "--force-script-chrootless", "--force-depends",
                        "--log=/dev/null"] + list(args), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, "dpkg %s:\n%s%s" % (" ".join(args), r.stdout, r.stderr)
    return r


def files_in(root):
    """Every file and symlink under root except dpkg's own database and what the test put."""
    out = []
    for d, dirs, files in os.walk(root):
        rel = os.path.relpath(d, root)
        if rel in ("var/lib/dpkg", "usr/lib/systemd/system", "bin") or rel.startswith("var/lib/dpkg/"):
            dirs[:] = []
            continue
        out += [os.path.join(rel, f) for f in files]
        out += [os.path.join(rel, x) for x in dirs if os.path.islink(os.path.join(d, x))]
    return sorted(out)


@pytest.fixture
def root(tmp_path):
    return make_root(tmp_path / "root")


def make_root(r):
    for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "usr/lib/systemd/system", "bin"):
        (r / d).mkdir(parents=True)
    (r / "var/lib/dpkg/status").touch()
    # what `systemd-analyze verify --root` needs besides the package: the host's targets,
    # slices and sockets (the unit's dependencies) and /bin/kill (its ExecReload)
    for pattern in ("*.target", "*.slice", "*.socket"):
        for f in glob.glob("/lib/systemd/system/" + pattern):
            shutil.copy(f, r / "usr/lib/systemd/system", follow_symlinks=False)
    shutil.copy(shutil.which("kill") or "/bin/kill", r / "bin/kill")
    return r


def test_install_verify_run_upgrade_remove(root):
    check_package(the_deb(), root)


def check_package(deb, root, run=(), host_depends=True, dpkg_args=()):
    """Install, check, upgrade, remove and purge deb in root. run: the prefix that runs the
    package's programs (qemu for arm64); host_depends: check that every Depends is a package
    installed on this machine (amd64 only)."""
    run = list(run)
    before = files_in(root)

    # --- the package as built ---
    fields = subprocess.run(["dpkg-deb", "-f", deb, "Version", "Depends"], capture_output=True, text=True,
                            check=True).stdout
    depends = fields.split("Depends:", 1)[1]
    if host_depends:
        for dep in depends.split(","):
            name = dep.split()[0]
            q = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", name], capture_output=True, text=True)
            assert q.stdout.startswith("ii"), "Depends names %s, which is not installed here" % name
    assert "libopenblas0" in depends and "libmicrohttpd12" in depends, depends

    # --- install: files in their Debian places, the unit enabled by deb-systemd-helper ---
    dpkg(root, *dpkg_args, "-i", deb)
    for f in ("usr/bin/birdsongd", "usr/bin/birdsong", UNIT, CONF, MODEL, "usr/share/man/man1/birdsong.1.gz",
              "usr/share/man/man8/birdsongd.8.gz", "usr/share/doc/birdsong/copyright",
              "usr/share/doc/birdsong/changelog.Debian.gz", "usr/share/doc/birdsong/demo-credits.tsv.gz"):
        assert (root / f).exists(), f
    assert os.readlink(root / WANTS) == "/" + UNIT, "the unit was not enabled on install"
    conffiles = subprocess.run(["dpkg-query", "--admindir=%s" % (root / "var/lib/dpkg"), "-W",
                                "-f=${Conffiles}", "birdsong"], capture_output=True, text=True, check=True).stdout
    assert "/" + CONF in conffiles
    conf = (root / CONF).read_text()
    assert "\nmodel = /" + MODEL + "\n" in conf, "the installed config must name the installed model"
    unit = (root / UNIT).read_text()
    assert "ExecStart=/usr/bin/birdsongd --config /" + CONF in unit and "@PREFIX@" not in unit

    # --- the installed unit, verified against the installed tree ---
    v = subprocess.run(["systemd-analyze", "verify", "--root=%s" % root, "birdsongd.service"],
                       capture_output=True, text=True, timeout=60)
    complaints = [ln for ln in (v.stdout + v.stderr).splitlines() if "birdsongd" in ln]
    assert v.returncode == 0 and not complaints, v.stdout + v.stderr

    # --- the installed binaries run ---
    for prog in ("birdsong", "birdsongd"):
        r = subprocess.run(run + [str(root / "usr/bin" / prog), "--version"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and r.stdout.startswith(prog + " "), r.stdout + r.stderr
    r = subprocess.run(run + [str(root / "usr/bin/birdsong"), "inspect", str(root / MODEL)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "convnet-gp-wide" in r.stdout and "Vireo_griseus" in r.stdout, r.stdout + r.stderr
    # the installed config and model pass the daemon's own check (the model named by its
    # place inside the throwaway root: the config's absolute path is for the real system)
    r = subprocess.run(run + [str(root / "usr/bin/birdsongd"), "--config", str(root / CONF), "--model", str(root / MODEL),
                        "--check-config"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr

    # --- upgrade (the same version again: postinst configure with the old version): an
    # edited conffile survives ---
    edited = conf.replace("\nmodel = /" + MODEL + "\n", "\nmodel = /srv/birds/mine.bsm\n")
    assert edited != conf
    (root / CONF).write_text(edited)
    dpkg(root, *dpkg_args, "-i", deb)
    assert (root / CONF).read_text() == edited, "the upgrade overwrote the edited configuration"
    assert os.readlink(root / WANTS) == "/" + UNIT

    # --- remove keeps the conffile, purge takes everything ---
    dpkg(root, "-r", "birdsong")
    assert not (root / "usr/bin/birdsongd").exists() and not (root / UNIT).exists()
    assert (root / CONF).exists(), "remove must keep the conffile"
    dpkg(root, "-P", "birdsong")
    left = files_in(root)
    assert left == before, "left behind after purge: %s" % sorted(set(left) - set(before))
