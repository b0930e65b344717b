"""numpy reference timing of the same log-mel windows (librosa's formulas, as librosa runs
them: frames matrix, rfft, power, mel matmul, power_to_db), one window at a time.
usage: features_numpy.py AUDIO.npy REPS -> prints numpy_logmel_seconds and a checksum.
Times are CPU time of the thread (best of REPS), like the C side: the machine is shared."""
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "integration"))
import librosa_ref as R  # noqa: E402

y = np.load(sys.argv[1]).astype(np.float32)
reps = int(sys.argv[2])
mel = R.mel_filterbank().astype(np.float64)  # librosa's float32 values, cast once
segs, _ = R.segments(y)
best = 1e30
for _ in range(reps):
    t = time.thread_time()
    out = [R.logmel_db(s, mel=mel) for s in segs]
    best = min(best, time.thread_time() - t)
print(f"numpy_windows {len(segs)}")
print(f"numpy_logmel_seconds {best:.6f}")
print(f"numpy_checksum {float(np.sum(out)):.3f}")
