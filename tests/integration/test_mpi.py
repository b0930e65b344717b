"""Training over MPI (issue 17): `mpirun -np 2 birdsong train` over loopback gives the model
`birdsong train --threads 2` gives in one process, rank 0 alone writes, `mpirun -np 2 birdsong
bench` reports both ranks, and no program links libmpi (it is loaded only under mpirun)."""
import json
import os
import shutil
import subprocess

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("BIRDSONG_BUILD", os.path.join(ROOT, "build"))
BIN = os.path.join(BUILD, "birdsong")
DATA = os.environ.get("BIRDSONG_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))
BIRDS = os.path.join(DATA, "birds-6sp")
MPIRUN = shutil.which("mpirun")

needs_mpi = pytest.mark.skipif(MPIRUN is None, reason="mpirun not found (openmpi-bin; scripts/install-deps.sh installs it)")
needs_data = pytest.mark.skipif(not os.path.isdir(BIRDS), reason=f"real data not found at {BIRDS}")


def mpi_env():
    """OpenMPI confined to loopback in a sandbox: TCP between the ranks over lo (shared-memory
    transports need more than a container may allow), the runtime's own channel over lo too,
    and running as root allowed (CI runs as root)."""
    env = dict(os.environ)
    env.update({"OMPI_MCA_btl": "self,tcp", "OMPI_MCA_btl_tcp_if_include": "lo",
                "OMPI_MCA_oob_tcp_if_include": "lo", "OMPI_ALLOW_RUN_AS_ROOT": "1",
                "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMPI_MCA_rmaps_base_oversubscribe": "1"})
    return env


def mpirun(n, *args, timeout=300):
    return subprocess.run([MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", str(n), BIN, *args],
                          capture_output=True, text=True, timeout=timeout, env=mpi_env())


def run(*args, timeout=300):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout)


def test_no_program_links_libmpi():
    for prog in ("birdsong", "birdsongd"):
        path = os.path.join(BUILD, prog)
        if not os.path.exists(path):
            continue
        out = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
        assert "libmpi" not in out, out
    # outside mpirun nothing is loaded: train and bench run as one rank
    r = run("bench", "--arch", "convnet-lite", "--classes", "3", "--iters", "1", "--train-steps", "1", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["ranks"] == 1


@needs_mpi
def test_mpirun_bench_reports_both_ranks():
    r = mpirun(2, "bench", "--arch", "convnet-lite", "--classes", "3", "--iters", "1", "--train-steps", "2", "--json")
    assert r.returncode == 0, r.stderr
    lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    assert len(lines) == 1, r.stdout  # rank 0 alone reports
    j = json.loads(lines[0])
    assert j["ranks"] == 2 and j["train_samples_per_s"] > 0


def short_files(species, n):
    d = os.path.join(BIRDS, species)
    files = sorted(os.listdir(d), key=lambda f: (os.path.getsize(os.path.join(d, f)), f))
    return [os.path.join(d, f) for f in files if f.endswith(".flac")][:n]


def probs(model, wav):
    r = run("classify", "--model", str(model), "--format", "json", wav)
    assert r.returncode == 0, r.stderr
    return [p for w in json.loads(r.stdout)["files"][0]["windows"] for p in w["probabilities"]]


@needs_mpi
@needs_data
def test_two_ranks_train_the_model_of_two_threads(tmp_path):
    manifest = tmp_path / "m.tsv"
    rows = ["path\tlabels\tgroup"]
    for sp in ("Vireo_griseus", "Cecropis_daurica"):
        rows += [f"{f}\t{sp}\t{os.path.basename(f)}" for f in short_files(sp, 5)]
    manifest.write_text("\n".join(rows) + "\n")
    args = ["train", "--data", str(manifest), "--arch", "convnet-lite", "--epochs", "3", "--patience", "0",
            "--val-fraction", "0.4", "--cache", str(tmp_path / "cache")]
    one = run(*args, "--threads", "2", "--out", str(tmp_path / "threads.bsm"))
    assert one.returncode == 0, one.stderr
    log = tmp_path / "log.jsonl"
    two = mpirun(2, *args, "--threads", "1", "--out", str(tmp_path / "mpi.bsm"), "--log-json", str(log))
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("wrote ") == 1, two.stdout  # rank 0 alone writes and reports
    assert len(log.read_text().splitlines()) == 3
    wav = short_files("Vireo_griseus", 1)[0]
    a, b = probs(tmp_path / "threads.bsm", wav), probs(tmp_path / "mpi.bsm", wav)
    assert len(a) == len(b) > 0
    # the same shares, seeds and order of sums: stated tolerance 1e-5 (equal in practice)
    assert max(abs(x - y) for x, y in zip(a, b)) <= 1e-5, (a, b)


@needs_mpi
@needs_data
def test_two_ranks_with_folds_run_the_trainings_in_turn(tmp_path):
    """With --folds, the trainings run one after another under MPI (every rank must enter the
    same reductions in the same order): the run ends, with the cross-validation summary."""
    manifest = tmp_path / "m.tsv"
    rows = ["path\tlabels\tgroup"]
    for sp in ("Vireo_griseus", "Cecropis_daurica"):
        rows += [f"{f}\t{sp}\t{os.path.basename(f)}" for f in short_files(sp, 4)]
    manifest.write_text("\n".join(rows) + "\n")
    r = mpirun(2, "train", "--data", str(manifest), "--arch", "convnet-lite", "--epochs", "1", "--folds", "2",
               "--val-fraction", "0.3", "--threads", "2", "--cache", str(tmp_path / "cache"),
               "--out", str(tmp_path / "cv.bsm"))
    assert r.returncode == 0, r.stderr
    assert "2-fold cross-validation" in r.stdout and (tmp_path / "cv.bsm").exists()
