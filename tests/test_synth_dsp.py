"""Seed-derived randomness and DSP helpers of the synths (synths/rng.py, synths/dsp.py)."""
import numpy as np
import pytest
import scipy.signal as ss
import torch

from scraplab.synths import dsp, rng


def _lowbias32_np(x: np.ndarray) -> np.ndarray:
    """Independent uint32 reference of the hash (numpy wraps uint32 products natively)."""
    x = x.astype(np.uint32)
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


def test_hash_matches_uint32_reference():
    x = np.random.default_rng(0).integers(0, 2**32, size=10000, dtype=np.uint64)
    x[:4] = [0, 1, 2**32 - 1, 2**31]
    got = rng.hash32(torch.from_numpy(x.astype(np.int64))).numpy()
    np.testing.assert_array_equal(got, _lowbias32_np(x).astype(np.int64))


def test_random_bits_depend_on_seed_stream_and_counter():
    seeds = torch.tensor([0, 1, -1, 2**40, 2**40 + 1])
    a = rng.random_bits(seeds, 0, 1000)
    assert a.shape == (5, 1000) and a.min() >= 0 and a.max() < 2**32
    assert len({tuple(r) for r in a.tolist()}) == 5  # every seed (both int64 halves) gives its own stream
    assert (a != rng.random_bits(seeds, 1, 1000)).float().mean() > 0.99
    assert all(len(set(r)) == 1000 for r in a.tolist())  # no repeats along the counter (a bijection per key)
    assert torch.equal(a, rng.random_bits(seeds, 0, 1000))


def test_uniform_and_randint_distribution():
    u = rng.uniform(torch.arange(20), 3, 5000)
    assert u.dtype == torch.float64 and 0 < u.min() and u.max() < 1
    assert abs(u.mean().item() - 0.5) < 0.005 and abs(u.var().item() - 1 / 12) < 0.002
    k = rng.randint(torch.arange(20), 4, 5000, -3, 3)
    assert k.min() == -3 and k.max() == 3
    counts = torch.bincount((k + 3).flatten(), minlength=7).double()
    assert (counts / counts.mean() - 1).abs().max() < 0.05
    with pytest.raises(ValueError, match="high - low"):
        rng.randint(torch.arange(2), 0, 1, 5, 4)


@pytest.mark.parametrize("bad", [torch.zeros(3), torch.zeros(2, 2, dtype=torch.int64), [1, 2]])
def test_bad_seed_raises(bad):
    with pytest.raises(ValueError, match="seed"):
        rng.random_bits(bad, 0, 4)


def test_time_shift_matches_manual_zero_filled_shift():
    x = torch.arange(1.0, 11.0).repeat(3, 1)
    y = dsp.time_shift(x, torch.tensor([0, 3, -4]))
    assert torch.equal(y[0], x[0])
    assert torch.equal(y[1], torch.tensor([0, 0, 0, 1, 2, 3, 4, 5, 6, 7.0]))
    assert torch.equal(y[2], torch.tensor([5, 6, 7, 8, 9, 10, 0, 0, 0, 0.0]))


def test_envelope_running_sum_matches_cumsum_float64():
    d = torch.tensor([441.0, 5000.0, 88200.0], dtype=torch.float64)
    env = dsp.exp_decay_envelope(d, 3000, 44)
    assert torch.allclose(env[:, :44], torch.linspace(0, 1, 44, dtype=torch.float64).expand(3, -1), atol=1e-15)
    assert torch.allclose(env[:, 44 + 441], torch.tensor([1e-3, 10 ** (-3 * 441 / 5000), 10 ** (-3 * 441 / 88200)],
                                                          dtype=torch.float64))
    ref = torch.nn.functional.pad(env.cumsum(-1), (1, 0))[:, :-1]
    assert torch.allclose(dsp.exp_decay_envelope_cumsum(d, 3000, 44), ref, rtol=1e-12, atol=1e-9)


def test_chirp_phase_is_integral_of_frequency():
    t = torch.linspace(-0.5, 0.5, 20001, dtype=torch.float64)
    for rate in (-8.0, 0.0, 3.0):
        f = 300.0 * 2.0 ** (rate * t)
        integral = torch.cat([torch.zeros(1, dtype=torch.float64),
                              torch.cumulative_trapezoid(f, t)])  # from t = −0.5
        phase = dsp.exp_chirp_cycles(300.0, torch.tensor(rate, dtype=torch.float64), t)
        assert torch.allclose(phase - phase[0], integral, atol=1e-5)
        assert abs(phase[10000]) < 1e-12  # zero phase at t = 0 (linspace gives t ≈ 0 there)
    r = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    dsp.exp_chirp_cycles(300.0, r, t).sum().backward()  # rate = 0 exactly: finite gradient
    assert torch.isfinite(r.grad)


HP_CASES = [(1000.0, 0.7071), (200.0, 10.0), (20.0, 0.5), (8000.0, 2.0), (19000.0, 0.5)]


def test_highpass_coefficients_equal_butterworth_at_q_sqrt_half():
    b, a = dsp.biquad_highpass_coeffs(torch.tensor([1000.0, 5000.0], dtype=torch.float64),
                                      torch.full((2,), 2**-0.5, dtype=torch.float64), 44100)
    for i, fc in enumerate((1000.0, 5000.0)):
        bb, aa = ss.butter(2, fc, "highpass", fs=44100)
        np.testing.assert_allclose(b[i].numpy(), bb, rtol=1e-12)
        np.testing.assert_allclose(a[i].numpy(), aa, rtol=1e-12)


def test_fsm_highpass_matches_scipy_lfilter_float64():
    x = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, (len(HP_CASES), 44100)))
    fc = torch.tensor([c[0] for c in HP_CASES], dtype=torch.float64)
    q = torch.tensor([c[1] for c in HP_CASES], dtype=torch.float64)
    b, a = dsp.biquad_highpass_coeffs(fc, q, 44100)
    y = dsp.fsm_filter(x, b, a)
    for i in range(len(HP_CASES)):
        ref = ss.lfilter(b[i].numpy(), a[i].numpy(), x[i].numpy())
        np.testing.assert_allclose(y[i].numpy(), ref, atol=1e-9, err_msg=str(HP_CASES[i]))
    # worst corner of the TR-808 range (20 Hz, Q 10): the IIR tail aliases, still below −80 dB of full scale
    b, a = dsp.biquad_highpass_coeffs(torch.tensor([20.0], dtype=torch.float64),
                                      torch.tensor([10.0], dtype=torch.float64), 44100)
    y = dsp.fsm_filter(x[:1], b, a)
    assert np.abs(y[0].numpy() - ss.lfilter(b[0].numpy(), a[0].numpy(), x[0].numpy())).max() < 1e-4


def test_fsm_filter_gradcheck():
    x = torch.randn(2, 32, dtype=torch.float64, requires_grad=True)
    fc = torch.tensor([3000.0, 9000.0], dtype=torch.float64, requires_grad=True)
    q = torch.tensor([0.7, 4.0], dtype=torch.float64, requires_grad=True)

    def f(x, fc, q):
        b, a = dsp.biquad_highpass_coeffs(fc, q, 44100)
        return dsp.fsm_filter(x, b, a)

    assert torch.autograd.gradcheck(f, (x, fc, q), fast_mode=True)


def test_cutoff_guard_keeps_filter_finite_near_nyquist():
    fc = torch.tensor([1000.0, 19845.0, 21000.0, 22050.0, 30000.0], dtype=torch.float64, requires_grad=True)
    g = dsp.guard_cutoff(fc, 44100)
    assert torch.equal(g[:2].detach(), fc[:2].detach())  # identity below the knee (0.9·Nyquist)
    assert (g[2:] < 0.98 * 22050).all() and (g.diff() > 0).all()
    g.sum().backward()
    assert (fc.grad > 0).all()  # monotone and never a dead gradient
    b, a = dsp.biquad_highpass_coeffs(fc.detach(), torch.full((5,), 10.0, dtype=torch.float64), 44100)
    assert torch.isfinite(b).all() and torch.isfinite(a).all()
    poles = [np.abs(np.roots(ai)).max() for ai in a.numpy()]
    assert max(poles) < 1  # stable at and above Nyquist
    with pytest.raises(ValueError, match="knee"):
        dsp.guard_cutoff(fc, 44100, knee=0.99, ceiling=0.98)


def test_fft_size_is_smooth_and_large_enough():
    for n in (1, 7, 88200, 65537, 100001):
        m = dsp.fft_size(n)
        assert m >= n
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        assert r == 1
    assert dsp.fft_size(88200) == 90000
