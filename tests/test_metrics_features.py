"""TR-808 features (paper Tables 8–9): K-weighting vs scipy, LKFS calibration, centroid, flatness, windows."""
import math

import numpy as np
import pytest
import scipy.signal as ss
import torch

from scraplab.metrics.features import (FRAME, HOP, frame_features, frame_loudness, k_weight,
                                       k_weighting_coefficients, k_weighting_response, spectral_centroid,
                                       spectral_flatness, temporal_centroid, transient_decay_errors)

SR = 44100
# ITU-R BS.1770-4 Table 1 / 2 (48 kHz)
SHELF_48K = ([1.53512485958697, -2.69169618940638, 1.19839281085285], [1.0, -1.69065929318241, 0.73248077421585])
HP_48K = ([1.0, -2.0, 1.0], [1.0, -1.99004745483398, 0.99007225036621])


def tone(freq, n=SR, sr=SR, amp=1.0):
    t = torch.arange(n, dtype=torch.float64) / sr
    return amp * torch.sin(2 * math.pi * freq * t)[None]


def test_coefficients_reproduce_the_48k_table():
    shelf, hp = k_weighting_coefficients(48000)
    for (b, a), (b_ref, a_ref) in ((shelf, SHELF_48K), (hp, HP_48K)):
        np.testing.assert_allclose(b, b_ref, atol=1e-9)
        np.testing.assert_allclose(a, a_ref, atol=1e-9)


@pytest.mark.parametrize("sr", [44100, 48000])
def test_k_weighting_response_matches_scipy(sr):
    n_fft = 8192
    h = k_weighting_response(sr, n_fft).numpy()
    w = 2 * np.pi * np.arange(n_fft // 2 + 1) / n_fft
    (b1, a1), (b2, a2) = k_weighting_coefficients(sr)
    ref = ss.freqz(b1, a1, worN=w)[1] * ss.freqz(b2, a2, worN=w)[1]
    np.testing.assert_allclose(h, ref, rtol=1e-10, atol=1e-12)
    mag_db = 20 * np.log10(np.abs(ref[1:]))  # DC is an exact zero of the high-pass
    f = w[1:] * sr / (2 * np.pi)
    assert abs(mag_db[np.argmin(abs(f - 10000))] - 4.0) < 0.1  # +4 dB shelf at high frequencies
    assert mag_db[np.argmin(abs(f - 20))] < -5.0               # high-pass below ~38 Hz
    # at 44.1 kHz the response follows the same analogue design as 48 kHz at 1 kHz (≈ +0.69 dB)
    assert abs(mag_db[np.argmin(abs(f - 1000))] - 0.69) < 0.05


def test_k_weight_equals_scipy_lfilter():
    x = torch.randn(2, 8000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    (b1, a1), (b2, a2) = k_weighting_coefficients(SR)
    ref = ss.lfilter(b2, a2, ss.lfilter(b1, a1, x.numpy(), axis=-1), axis=-1)
    np.testing.assert_allclose(k_weight(x, SR).numpy(), ref, atol=1e-10)


@pytest.mark.parametrize("freq", [997.0, 1000.0])
def test_full_scale_sine_is_minus_3_01_lkfs(freq):
    loud = frame_loudness(tone(freq), SR)
    assert loud.shape == (1, 1 + (SR - FRAME) // HOP)
    steady = loud[0, 4:]  # after the filters' start-up
    assert float((steady + 3.01).abs().max()) < 0.1
    # −20 dB amplitude → −20 LU
    assert float((frame_loudness(tone(freq, amp=0.1), SR)[0, 4:] - steady + 20).abs().max()) < 1e-6


def test_centroid_of_pure_tone_is_its_frequency():
    for f0 in (440.0, 1000.0, 5000.0):
        c = spectral_centroid(tone(f0), SR, scale="hz")[0, 2:]
        # within half an FFT bin (10.8 Hz): the flat-top main lobe (±5 bins) is symmetric up to the image leakage
        assert float((c - f0).abs().max()) < SR / FRAME / 2
    midi = spectral_centroid(tone(440.0), SR, scale="midi")[0, 2:]
    assert float((midi - 69).abs().max()) < 12 * math.log2(1 + SR / FRAME / 2 / 440)  # the same half bin


def test_flatness_noise_above_tone():
    noise = torch.randn(1, SR, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    fn, ft = spectral_flatness(noise), spectral_flatness(tone(1000.0))
    assert float(fn.min()) > 0.4 and float(ft.max()) < 0.01  # white noise ≈ e^-γ ≈ 0.56 for exponential power
    assert float(fn.max()) <= 1.0


def test_temporal_centroid_of_impulse():
    x = torch.zeros(1, SR, dtype=torch.float64)
    x[0, 441] = 1.0  # 10 ms
    assert float(temporal_centroid(x, SR)) == pytest.approx(10.0)
    assert float(temporal_centroid(torch.zeros(1, SR, dtype=torch.float64), SR)) == 0.0


def test_loudness_weighting_zeroes_silent_frames():
    x = torch.cat([tone(1000.0, n=SR // 2), torch.zeros(1, SR // 2, dtype=torch.float64)], -1)
    f = frame_features(x, SR)
    assert float(f["centroid"][0, -1]) == 0.0 and float(f["flatness"][0, -1]) == 0.0
    raw = frame_features(x, SR, weighting="none")
    w = (f["loudness"][0, 5] + 70) / 70
    assert float(f["centroid"][0, 5]) == pytest.approx(float(raw["centroid"][0, 5] * w))


def test_transient_decay_shapes_and_windows():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 1, SR, generator=g, dtype=torch.float64) * 0.1
    err = transient_decay_errors(x.clone(), x, SR)
    assert set(err) == {f"{n}_{w}" for n in ("loudness", "centroid", "flatness")
                        for w in ("transient", "decay")} | {"temporal_centroid"}
    assert all(v.shape == (3,) and float(v.abs().max()) == 0.0 for v in err.values())
    # a change confined to the tail (after frame 1) leaves the transient error at 0 and makes the decay error > 0
    y = x.clone()
    y[..., FRAME + HOP:] *= 0.5
    err = transient_decay_errors(y, x, SR)
    assert float(err["loudness_transient"].abs().max()) < 1e-9  # FFT filtering: round-off only
    # frames 2–4 straddle the change, frames 5–65 are fully −6.02 LU
    assert bool(((err["loudness_decay"] > 61 / 64 * 6.02) & (err["loudness_decay"] < 6.03)).all())
    # a gain change on everything: loudness error −6.02 LU in both windows, flatness unchanged before weighting
    err = transient_decay_errors(0.5 * x, x, SR, weighting="none")
    assert torch.allclose(err["loudness_transient"], torch.full((3,), 20 * math.log10(2), dtype=torch.float64), atol=1e-6)
    assert float(err["flatness_decay"].max()) < 1e-6 and float(err["temporal_centroid"].max()) < 1e-9


def test_transient_decay_bad_input():
    x = torch.zeros(2, FRAME + HOP, dtype=torch.float64)
    with pytest.raises(ValueError, match="at least 3"):
        transient_decay_errors(x, x, SR)
    with pytest.raises(ValueError, match="same shape"):
        transient_decay_errors(torch.zeros(2, SR), torch.zeros(3, SR), SR)
    with pytest.raises(ValueError, match="mono"):
        transient_decay_errors(torch.zeros(2, 2, SR), torch.zeros(2, 2, SR), SR)
