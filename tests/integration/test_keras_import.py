"""Keras models into birdsong: the numpy reference (tests/reference/keras_ref.py) against
Keras's own outputs, then `birdsong import-keras` + `birdsong classify` on .npy windows
against the reference. Fixtures: tests/reference/keras (see its NOTICE)."""
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIX = os.path.join(ROOT, "tests", "reference", "keras")
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))

import keras_ref  # noqa: E402

MODELS = ["hls4ml_conv2d_1layer", "tinymaix_mnist_same", "tinymaix_mnist_valid"]


def test_reference_equals_keras_own_outputs():
    # the file that carries what Keras computed: the reference must reproduce it
    _, layers = keras_ref.load(os.path.join(FIX, "hls4ml_conv2d_1layer.h5"))
    x = np.loadtxt(os.path.join(FIX, "hls4ml_conv2d_1layer_input.dat")).reshape(-1, 5, 5, 1)
    want = np.loadtxt(os.path.join(FIX, "hls4ml_conv2d_1layer_output.dat")).reshape(len(x), -1)
    got = keras_ref.forward(layers, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.ptp(want))


@pytest.mark.parametrize("name", MODELS)
def test_committed_fixture_outputs_are_the_reference(name):
    _, layers = keras_ref.load(os.path.join(FIX, name + ".h5"))
    x = np.load(os.path.join(FIX, name + "_x.npy"))
    want = np.load(os.path.join(FIX, name + "_y.npy"))
    np.testing.assert_allclose(keras_ref.forward(layers, x[..., None].astype(np.float64)), want,
                               rtol=1e-5, atol=1e-6)
