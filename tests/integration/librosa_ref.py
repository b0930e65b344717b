"""librosa 0.10's log-mel formulas (REFERENCES.md section 1) in plain numpy, float64.

An independent reference for birdsong's C feature path: it shares no code with it. Also a
small libsndfile reader through ctypes (Debian's python has no soundfile module), so the
reference decodes the recordings with the library itself, not with birdsong's decoder.
"""
import ctypes
import ctypes.util
import wave

import numpy as np


def hz_to_mel(f):
    f = np.asanyarray(f, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    mel = f / f_sp
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-300) / min_log_hz) / logstep, mel)


def mel_to_hz(m):
    m = np.asanyarray(m, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(sr=22050, n_fft=2048, n_mels=128, fmin=0.0, fmax=None):
    """librosa.filters.mel(htk=False, norm='slaney'): built in float64, returned float32."""
    if fmax is None:
        fmax = sr / 2.0
    fftfreqs = np.arange(1 + n_fft // 2, dtype=np.float64) * sr / n_fft
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fftfreqs[None, :]
    weights = np.zeros((n_mels, len(fftfreqs)))
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels])
    weights *= enorm[:, None]
    return weights.astype(np.float32)


_HANN = {}


def hann(n_fft):
    """Periodic Hann (scipy get_window('hann', n_fft, fftbins=True)), cached."""
    if n_fft not in _HANN:
        _HANN[n_fft] = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)
    return _HANN[n_fft]


def logmel_db(y, sr=22050, n_fft=2048, hop=512, n_mels=128, fmin=0.0, fmax=None,
              amin=1e-10, top_db=80.0, mel=None, ref=1.0):
    """One window y -> (n_mels, 1 + len(y) // hop) dB, librosa 0.10 semantics:
    periodic Hann, centre zero padding, power 2, slaney mel, power_to_db(ref) with ref a
    power (1.0) or "max" (librosa's ref=np.max over the window)."""
    y = np.asarray(y, dtype=np.float64)
    if mel is None:
        mel = mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    win = hann(n_fft)
    padded = np.pad(y, n_fft // 2, mode="constant")
    n_frames = 1 + len(y) // hop
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:n_frames]
    spec = np.abs(np.fft.rfft(frames * win, axis=1)) ** 2          # (frames, freqs)
    S = np.asarray(mel, dtype=np.float64) @ spec.T                  # (mels, frames)
    ref_value = S.max() if ref == "max" else ref
    D = 10.0 * np.log10(np.maximum(amin, S)) - 10.0 * np.log10(np.maximum(amin, ref_value))
    if top_db is not None and top_db > 0:
        D = np.maximum(D, D.max() - top_db)
    return D


def segments(y, sr=22050, seconds=1.0, min_residual=0.25):
    """Non-overlapping windows; a tail >= min_residual is zero-padded, a shorter one dropped."""
    seg = int(round(seconds * sr))
    min_res = int(np.floor(min_residual * sr + 1e-9))
    out, starts = [], []
    i = 0
    while i + seg <= len(y):
        out.append(y[i:i + seg])
        starts.append(i / sr)
        i += seg
    tail = len(y) - i
    if tail > 0 and tail >= min_res:
        out.append(np.concatenate([y[i:], np.zeros(seg - tail)]))
        starts.append(i / sr)
    return out, starts


# ---- libsndfile through ctypes ---------------------------------------------------------

class _SFInfo(ctypes.Structure):
    _fields_ = [("frames", ctypes.c_int64), ("samplerate", ctypes.c_int),
                ("channels", ctypes.c_int), ("format", ctypes.c_int),
                ("sections", ctypes.c_int), ("seekable", ctypes.c_int)]


def read_audio(path):
    """-> (mono float32 samples = mean of channels, sample rate), via libsndfile."""
    lib = ctypes.CDLL(ctypes.util.find_library("sndfile") or "libsndfile.so.1")
    lib.sf_open.restype = ctypes.c_void_p
    lib.sf_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(_SFInfo)]
    lib.sf_readf_float.restype = ctypes.c_int64
    lib.sf_readf_float.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    lib.sf_close.argtypes = [ctypes.c_void_p]
    info = _SFInfo()
    h = lib.sf_open(str(path).encode(), 0x10, ctypes.byref(info))
    if not h:
        raise IOError(f"libsndfile cannot open {path}")
    buf = np.zeros(info.frames * info.channels, dtype=np.float32)
    got = lib.sf_readf_float(h, buf.ctypes.data, info.frames)
    lib.sf_close(h)
    x = buf[:got * info.channels].reshape(-1, info.channels)
    return x.mean(axis=1, dtype=np.float64).astype(np.float32), info.samplerate


def write_wav16(path, y, sr):
    """Mono 16-bit PCM WAV from float samples in [-1, 1]."""
    data = np.clip(np.round(np.asarray(y) * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(data.tobytes())


def write_wav_float(path, y, sr, channels=1):
    """IEEE float32 WAV (format 3); y is (frames,) or (frames, channels). NaN allowed."""
    y = np.asarray(y, dtype="<f4")
    if y.ndim == 1:
        y = y[:, None]
    data = y.tobytes()
    ch = y.shape[1]
    import struct
    fmt = struct.pack("<HHIIHH", 3, ch, sr, sr * 4 * ch, 4 * ch, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", len(body)) + body)
