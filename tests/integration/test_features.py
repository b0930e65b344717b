"""`birdsong features` end to end: against a numpy implementation of librosa's formulas on
real recordings, the 48 kHz -> 22050 Hz resampling of a sine, and the command's errors."""
import os
import pathlib
import subprocess

import numpy as np
import pytest

import librosa_ref as R

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("BIRDSONG_BUILD", ROOT / "build"))
BIRDSONG = BUILD / "birdsong"
DATA = pathlib.Path(os.environ.get("BIRDSONG_SHARED_DATA", ROOT.parent / "shared" / "data"))
BIRDS = DATA / "birds-6sp"


def run(*args, check=True):
    p = subprocess.run([str(BIRDSONG), "features", *map(str, args)], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"birdsong features {args} failed ({p.returncode}): {p.stderr}")
    return p


def real_recordings(per_species=2):
    """The first recordings of each species, sorted: a fixed, varied sample (short and long)."""
    if not BIRDS.is_dir():
        pytest.skip(f"real recordings not found at {BIRDS} (set BIRDSONG_SHARED_DATA)")
    files = []
    for sp in sorted(p for p in BIRDS.iterdir() if p.is_dir()):
        files += sorted(sp.glob("*.flac"))[:per_species]
    assert len(files) >= 6, f"expected recordings of 6 species under {BIRDS}"
    return files


def test_matches_librosa_formulas_on_real_recordings(tmp_path):
    mel = R.mel_filterbank()
    worst = 0.0
    total = 0
    for f in real_recordings():
        out = tmp_path / "f.npy"
        times = tmp_path / "t.txt"
        run(f, "-o", out, "--times", times, "-q")
        got = np.load(out)
        y, sr = R.read_audio(f)
        assert sr == 22050
        segs, starts = R.segments(y)
        ref = np.stack([R.logmel_db(s, mel=mel) for s in segs])
        assert got.dtype == np.float32
        assert got.shape == ref.shape == (len(segs), 128, 44), f"{f}: {got.shape} vs {ref.shape}"
        np.testing.assert_allclose(np.loadtxt(times, ndmin=1), starts, atol=1e-6)
        diff = np.abs(got.astype(np.float64) - ref).max()
        assert diff <= 0.05, f"{f}: max |C - numpy| = {diff:.4f} dB"
        worst = max(worst, diff)
        total += got.size
    print(f"max |C - numpy librosa| over {total} values: {worst:.5f} dB")


def test_avx2_and_baseline_bodies_give_the_same_bits(tmp_path):
    """The log-mel has an AVX-512 body and an AVX2 body (picked at run time) and a baseline
    body; BIRDSONG_NO_AVX512=1 stops at AVX2, BIRDSONG_NO_AVX2=1 forces the baseline. A model
    trained on one CPU must see the same numbers on another."""
    for i, f in enumerate(real_recordings(per_species=1)):
        for mels in ("128", "61"):
            outs = []
            env = {k: v for k, v in os.environ.items() if k not in ("BIRDSONG_NO_AVX2", "BIRDSONG_NO_AVX512")}
            for name, extra in (("fast", {}), ("avx2", {"BIRDSONG_NO_AVX512": "1"}), ("base", {"BIRDSONG_NO_AVX2": "1"})):
                out = tmp_path / f"{name}{i}_{mels}.npy"
                p = subprocess.run([str(BIRDSONG), "features", str(f), "--n-mels", mels, "-o", str(out), "-q"],
                                   capture_output=True, text=True, env={**env, **extra})
                assert p.returncode == 0, p.stderr
                outs.append(out.read_bytes())
            assert outs[0] == outs[2], f"{f} ({mels} mels): the fastest body and the baseline differ"
            assert outs[1] == outs[2], f"{f} ({mels} mels): the AVX2 body and the baseline differ"


@pytest.mark.parametrize("settings", [
    ["--segment", "0.97"],                      # 42 frames: 6 lanes of the last 16 unused
    ["--segment", "0.99", "--n-mels", "13"],    # 43 frames, mels not a multiple of 8
    ["--segment", "1.03"],                      # 45 frames
    ["--segment", "1.05", "--n-mels", "40"],    # 46 frames
    ["--hop-length", "2048"],                   # 11 frames: one group of 16, partly used
    ["--hop-length", "1024"],                   # 22 frames: two groups of 16
    ["--segment", "1.5"],                       # 65 frames: 48 at once, then 2 groups of 16
    ["--n-fft", "1000", "--hop-length", "250"], # half (500) not a multiple of 16
    ["--n-fft", "4096", "--n-mels", "200"],
    ["--n-fft", "256", "--hop-length", "64"],   # 345 frames, 20 mel rows with no weight
])
def test_bodies_give_the_same_bits_at_other_settings(tmp_path, settings):
    """The same on a synthetic recording at settings away from the defaults: frame counts that
    leave 1 or 2 groups of 16 frames after the mel projection's blocks of 48 and fill the last
    group partly, FFT sizes whose half is not a multiple of 16 lanes, odd mel counts (the
    leftover paths of the wide bodies)."""
    sr = 22050
    t = np.arange(int(2.6 * sr)) / sr
    rng = np.random.default_rng(11)
    y = 0.3 * np.sin(2 * np.pi * (2500 * t + 600 * np.sin(2 * np.pi * 4 * t))) + 0.05 * rng.standard_normal(t.size)
    wav = tmp_path / "chirp.wav"
    R.write_wav_float(wav, y.astype(np.float32), sr)
    env = {k: v for k, v in os.environ.items() if k not in ("BIRDSONG_NO_AVX2", "BIRDSONG_NO_AVX512")}
    outs = []
    for name, extra in (("fast", {}), ("avx2", {"BIRDSONG_NO_AVX512": "1"}), ("base", {"BIRDSONG_NO_AVX2": "1"})):
        out = tmp_path / f"{name}.npy"
        p = subprocess.run([str(BIRDSONG), "features", str(wav), *settings, "-o", str(out), "-q"],
                           capture_output=True, text=True, env={**env, **extra})
        assert p.returncode == 0, p.stderr
        outs.append(out.read_bytes())
    assert np.load(tmp_path / "base.npy").size > 0
    assert outs[0] == outs[2], f"{settings}: the fastest body and the baseline differ"
    assert outs[1] == outs[2], f"{settings}: the AVX2 body and the baseline differ"


def test_sine_48k_resampled_to_22050(tmp_path):
    """A 1 kHz sine at 48 kHz comes out at 22050 Hz with its peak in the right mel band and
    its level within 0.1 dB of the same sine generated at 22050 Hz."""
    amp, f0, seconds = 0.5, 1000.0, 3.0
    t48 = np.arange(int(48000 * seconds)) / 48000
    wav = tmp_path / "sine48k.wav"
    R.write_wav_float(wav, amp * np.sin(2 * np.pi * f0 * t48), 48000)
    out = tmp_path / "s.npy"
    run(wav, "-o", out, "-q")
    got = np.load(out)
    assert got.shape == (3, 128, 44)

    t22 = np.arange(22050) / 22050
    ref = R.logmel_db(amp * np.sin(2 * np.pi * f0 * t22))
    band_ref = int(np.argmax(ref[:, 22]))
    mel_f = R.mel_to_hz(np.linspace(R.hz_to_mel(0), R.hz_to_mel(11025), 130))
    assert abs(mel_f[band_ref + 1] - f0) < 20, "reference peak band is not the one around 1 kHz"
    for w in range(3):
        interior = got[w][:, 4:40]                 # away from the window's zero-padded edges
        band = np.bincount(np.argmax(interior, axis=0)).argmax()
        assert band == band_ref, f"window {w}: peak in band {band}, expected {band_ref}"
        level = interior[band].mean()
        level_ref = ref[band_ref, 4:40].mean()
        assert abs(level - level_ref) <= 0.1, f"window {w}: {level:.3f} dB vs {level_ref:.3f} dB"
        print(f"window {w}: band {band}, level {level:.4f} dB vs {level_ref:.4f} dB at 22050 Hz")


def test_soundscape_at_22000_hz(tmp_path):
    d = DATA / "soundscapes" / "scikit-maad_24h_S4A03895"
    files = sorted(d.glob("*.flac")) if d.is_dir() else []
    if not files:
        pytest.skip(f"soundscapes not found at {d}")
    y, sr = R.read_audio(files[0])
    assert sr == 22000
    out = tmp_path / "s.npy"
    run(files[0], "-o", out, "-q")
    got = np.load(out)
    n22 = round(len(y) * 22050 / 22000)
    expect = n22 // 22050 + (1 if n22 % 22050 >= 5512 else 0)
    assert got.shape == (expect, 128, 44)
    assert np.isfinite(got).all()


def test_short_file_gives_zero_windows(tmp_path):
    wav = tmp_path / "short.wav"
    R.write_wav16(wav, 0.1 * np.ones(2000), 22050)
    out = tmp_path / "z.npy"
    p = run(wav, "-o", out)
    assert np.load(out).shape == (0, 128, 44)
    assert "0 window(s)" in p.stderr


def test_settings_flags(tmp_path):
    wav = tmp_path / "n.wav"
    rng = np.random.default_rng(1)
    y = rng.uniform(-0.3, 0.3, 16000 * 2)
    R.write_wav16(wav, y, 16000)
    out = tmp_path / "o.npy"
    run(wav, "-o", out, "-q", "--sample-rate", 16000, "--n-mels", 64, "--n-fft", 1024,
        "--hop-length", 256, "--segment", 0.5, "--fmin", 50)
    got = np.load(out)
    assert got.shape == (4, 64, 1 + 8000 // 256)
    y16, _ = R.read_audio(wav)
    mel = R.mel_filterbank(16000, 1024, 64, 50.0, 8000.0)
    ref = R.logmel_db(y16[:8000], sr=16000, n_fft=1024, hop=256, mel=mel)
    assert np.abs(got[0] - ref).max() <= 0.05


def test_empty_mel_rows_and_many_frames_match_numpy(tmp_path):
    """n_fft 256 with 128 mels leaves 20 filterbank rows without a nonzero weight (their
    power is 0, so they sit at the window's floor), and a 64-sample hop makes 345 frames: 7
    passes of 48 frames and one of 16 in the mel projection. Every window against numpy."""
    sr = 22050
    t = np.arange(int(2.3 * sr)) / sr
    rng = np.random.default_rng(5)
    y = (0.2 * np.sin(2 * np.pi * 3000 * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
    wav = tmp_path / "s.wav"
    R.write_wav_float(wav, y, sr)
    out = tmp_path / "o.npy"
    run(wav, "-o", out, "-q", "--n-fft", 256, "--hop-length", 64)
    got = np.load(out)
    mel = R.mel_filterbank(sr, 256, 128)
    assert (mel.max(axis=1) == 0).sum() == 20
    y_read, _ = R.read_audio(wav)
    segs, _ = R.segments(y_read)
    assert got.shape == (len(segs), 128, 345)
    for i, s in enumerate(segs):
        ref = R.logmel_db(s, n_fft=256, hop=64, mel=mel)
        assert np.abs(got[i] - ref).max() <= 0.05, f"window {i}"


@pytest.mark.parametrize("ref", ["max", "10", "1e-6"])
def test_db_reference_matches_numpy(tmp_path, ref):
    """--db-ref: librosa's power_to_db ref as Keras pipelines use it (ref=np.max over the
    window, or a fixed power), top_db after it, every window against numpy."""
    sr = 22050
    t = np.arange(int(2.5 * sr)) / sr
    rng = np.random.default_rng(7)
    y = (0.3 * np.sin(2 * np.pi * 2500 * t) * (t < 1.2) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    wav = tmp_path / "s.wav"
    R.write_wav_float(wav, y, sr)
    run(wav, "-o", tmp_path / "one.npy", "-q")
    run(wav, "-o", tmp_path / "ref.npy", "-q", "--db-ref", ref)
    one, got = np.load(tmp_path / "one.npy"), np.load(tmp_path / "ref.npy")
    y_read, _ = R.read_audio(wav)
    segs, _ = R.segments(y_read)
    assert got.shape == one.shape == (len(segs), 128, 44)
    for i, s in enumerate(segs):
        want = R.logmel_db(s, ref="max" if ref == "max" else float(ref))
        assert np.abs(got[i] - want).max() <= 0.05, f"window {i}"
        if ref == "max":
            assert got[i].max() == 0.0 and got[i].min() >= -80.0
        else:  # a fixed reference only shifts the window
            np.testing.assert_allclose(got[i], one[i] - 10 * np.log10(float(ref)), atol=1e-3)
    p = run(wav, "-o", tmp_path / "x.npy", "--db-ref", "0", check=False)
    assert p.returncode == 2 and "--db-ref expects a reference power > 0 or max" in p.stderr


def one_line_error(p, *needles):
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got: {p.stderr!r}"
    for n in needles:
        assert str(n) in lines[0], f"{n!r} not in {lines[0]!r}"


def test_errors_are_one_line_naming_the_file(tmp_path):
    out = tmp_path / "o.npy"
    missing = tmp_path / "missing.flac"
    p = run(missing, "-o", out, check=False)
    assert p.returncode == 1
    one_line_error(p, missing)
    txt = tmp_path / "notes.wav"
    txt.write_text("this is a text file, not audio\n")
    p = run(txt, "-o", out, check=False)
    assert p.returncode == 1
    one_line_error(p, txt)
    nan = tmp_path / "nan.wav"
    R.write_wav_float(nan, np.array([0.0, 0.1, np.nan, 0.2] * 5000), 22050)
    p = run(nan, "-o", out, check=False)
    assert p.returncode == 1
    one_line_error(p, nan, "NaN")
    assert not out.exists()
    p = run(txt, check=False)
    assert p.returncode == 2
    one_line_error(p, "-o")
    p = run(txt, "-o", out, "--n-fft", "2047", check=False)
    assert p.returncode == 2
    one_line_error(p, "n_fft")
    p = run(txt, "-o", out, "--hop-length", "x", check=False)
    assert p.returncode == 2
    one_line_error(p, "--hop-length")
    wav = tmp_path / "ok.wav"
    R.write_wav16(wav, np.zeros(22050), 22050)
    p = run(wav, "-o", tmp_path / "no" / "such" / "dir.npy", check=False)
    assert p.returncode == 1
    one_line_error(p, "dir.npy")
