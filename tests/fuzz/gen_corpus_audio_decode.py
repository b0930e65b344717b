"""Writes the seed corpus of fuzz_audio_decode: tiny generated files (sines and noise, no
recordings) in the formats libsndfile reads, through libsndfile itself (ctypes).
Run from the repository root: /usr/bin/python3 tests/fuzz/gen_corpus_audio_decode.py"""
import ctypes
import ctypes.util
import pathlib

import numpy as np

OUT = pathlib.Path(__file__).resolve().parent / "corpus" / "fuzz_audio_decode"
lib = ctypes.CDLL(ctypes.util.find_library("sndfile") or "libsndfile.so.1")


class SFInfo(ctypes.Structure):
    _fields_ = [("frames", ctypes.c_int64), ("samplerate", ctypes.c_int),
                ("channels", ctypes.c_int), ("format", ctypes.c_int),
                ("sections", ctypes.c_int), ("seekable", ctypes.c_int)]


lib.sf_open.restype = ctypes.c_void_p
lib.sf_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(SFInfo)]
lib.sf_writef_float.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
lib.sf_close.argtypes = [ctypes.c_void_p]

WAV, AIFF, AU, FLAC, OGG, CAF, W64 = 0x010000, 0x020000, 0x030000, 0x170000, 0x200060, 0x180000, 0x0B0000
PCM_S8, PCM_16, PCM_24, PCM_32, PCM_U8, FLOAT, DOUBLE, VORBIS = 1, 2, 3, 4, 5, 6, 7, 0x60


def write(name, fmt, sr, ch, n, freq=440.0):
    t = np.arange(n) / sr
    y = np.stack([0.5 * np.sin(2 * np.pi * freq * (c + 1) * t) for c in range(ch)], axis=1)
    y = np.ascontiguousarray(y, dtype=np.float32)
    info = SFInfo(0, sr, ch, fmt, 0, 0)
    h = lib.sf_open(str(OUT / name).encode(), 0x20, ctypes.byref(info))
    assert h, f"cannot write {name}"
    lib.sf_writef_float(h, y.ctypes.data, n)
    lib.sf_close(h)


OUT.mkdir(parents=True, exist_ok=True)
write("mono16.wav", WAV | PCM_16, 22050, 1, 64)
write("stereo_float.wav", WAV | FLOAT, 48000, 2, 48)
write("u8_16k.wav", WAV | PCM_U8, 16000, 1, 80)
write("s24_22000.wav", WAV | PCM_24, 22000, 1, 40)
write("s32_3ch.wav", WAV | PCM_32, 44100, 3, 30)
write("double.wav", WAV | DOUBLE, 8000, 1, 20)
write("mono16.flac", FLAC | PCM_16, 22050, 1, 300)
write("stereo24.flac", FLAC | PCM_24, 48000, 2, 200)
write("mono.aiff", AIFF | PCM_16, 11025, 1, 50)
write("mono.au", AU | PCM_16, 8000, 1, 50)
write("s8.caf", CAF | PCM_S8, 32000, 1, 50)
write("mono.w64", W64 | PCM_16, 22050, 1, 30)
write("quarter_second.wav", WAV | PCM_16, 8000, 1, 2000)
(OUT / "text.wav").write_bytes(b"not audio, just text\n")
print(f"wrote {len(list(OUT.iterdir()))} files to {OUT}")
