"""The synths' fast paths (issue 3): same draws, same audio and same gradients as the plain vectorised expressions.

No GPU here: the whole-batch paths other devices take are run on the CPU by switching the CPU-only paths off; that
checks their arithmetic, not CPU/GPU equality (tests/test_synth_audio.py has the GPU test, marked ``gpu``).
"""
import ast
import pathlib

import pytest
import torch

from scraplab.synths import dsp, granular, rng
from scraplab.synths.chirplet import ChirpletSynth
from scraplab.synths.granular import GranularSynth, overlap_add_grains, overlap_add_grains_reference
from scraplab.synths.tr808 import TR808Synth

SYNTH_DIR = pathlib.Path(granular.__file__).parent


BANNED = {"rand", "randn", "randint", "randperm", "rand_like", "randn_like", "randint_like", "normal", "bernoulli",
          "multinomial", "poisson", "Generator", "manual_seed", "seed", "initial_seed", "get_rng_state", "random",
          "uniform_", "normal_", "random_", "exponential_", "bernoulli_", "cauchy_", "geometric_", "log_normal_"}


def _random_calls(source: str) -> list[str]:
    """Attribute accesses / imports in code (not docstrings or comments) that could draw from a generator."""
    hits = []
    for node in ast.walk(ast.parse(source)):
        own = isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "rng"
        if isinstance(node, ast.Attribute) and node.attr in BANNED and not own:  # rng.randint is the counter hash
            hits.append(f"{node.lineno}: .{node.attr}")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [getattr(node, "module", None) or ""] + [a.name for a in node.names]
            hits += [f"{node.lineno}: import {m}" for m in names if m == "random" or m.endswith(".random")]
    return hits


def test_synth_sources_draw_randomness_only_through_the_counter_hash():
    """No torch/NumPy generator anywhere in synths/: every draw is rng.py's integer hash of (seed, stream, n)."""
    files = sorted(SYNTH_DIR.glob("*.py"))
    assert {"granular.py", "chirplet.py", "tr808.py", "rng.py", "dsp.py", "base.py"} <= {f.name for f in files}
    hits = [f"{f.name}:{h}" for f in files for h in _random_calls(f.read_text())]
    assert not hits, hits
    # the scan fires on the usual spellings
    for bad in ("x = torch.randn(3)", "t.normal_(0, 1)", "g = torch.Generator()", "import numpy.random",
                "np.random.rand(3)", "torch.rand_like(x)", "import random"):
        assert _random_calls(bad), bad
    assert not _random_calls("rng.randint(seed, 1, 4, 0, 9)")


@pytest.mark.parametrize("stream", [0, 1, 5, 1000, 2**31 - 1])
def test_numpy_hash_path_is_bit_identical_to_torch_int64_path(stream):
    seed = torch.tensor([0, 1, -1, 7, 2**31, -(2**63), 2**63 - 1, 123456789012345, -98765])
    ref = rng._random_bits_torch(seed, stream, 3000)
    assert torch.equal(rng.random_bits(seed, stream, 3000), ref)
    assert torch.equal(rng.uniform(seed, stream, 3000, torch.float32), ((ref.double() + 0.5) * 2.0**-32).float())
    assert torch.equal(rng.uniform(seed, stream, 3000), (ref.double() + 0.5) * 2.0**-32)
    assert torch.equal(rng.random_bits(seed.int(), stream, 5), rng._random_bits_torch(seed.int(), stream, 5))


def _ola_inputs(dtype=torch.float64, b=2, g=5, m=16, n=64):
    gen = torch.Generator().manual_seed(0)
    f0 = (200 + 800 * torch.rand(b, g, generator=gen, dtype=dtype)).requires_grad_()
    curve = (0.01 * torch.randn(b, m, generator=gen, dtype=dtype)).requires_grad_()
    scale = torch.rand(b, g, generator=gen, dtype=dtype).requires_grad_()
    window = dsp.periodic_hann(m, dtype=dtype)
    onset = torch.randint(0, n - m + 1, (b, g), generator=gen)
    onset[0, :2] = torch.tensor([0, n - m])  # both ends, and overlapping grains
    return f0, curve, scale, window, onset, n


@pytest.mark.parametrize("blocked", [True, False])
@pytest.mark.parametrize("block_elems", [16, 40, 1 << 17])  # one grain, 2.5 grains, everything per block
def test_grain_overlap_add_matches_reference_and_gradchecks(monkeypatch, blocked, block_elems):
    monkeypatch.setattr(granular, "CPU_BLOCKED", blocked)
    monkeypatch.setattr(granular, "CPU_BLOCK_ELEMS", block_elems)
    f0, curve, scale, window, onset, n = _ola_inputs()
    y, ref = overlap_add_grains(f0, curve, scale, window, onset, n), overlap_add_grains_reference(
        f0, curve, scale, window, onset, n)
    assert torch.equal(y, ref)  # same products, same accumulation order
    w = torch.randn_like(y)
    g_fast = torch.autograd.grad((y * w).sum(), (f0, curve, scale))
    g_ref = torch.autograd.grad((ref * w).sum(), (f0, curve, scale))
    for a, b in zip(g_fast, g_ref):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    fn = lambda f, c, s: overlap_add_grains(f, c, s, window, onset, n)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (f0, curve, scale))
    assert torch.autograd.gradgradcheck(fn, (f0, curve, scale))  # θ-importance needs second derivatives


def test_fsm_filter_backward_matches_autograd_and_gradgradchecks():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 40, generator=gen, dtype=torch.float64, requires_grad=True)
    fc = torch.tensor([300.0, 5000.0, 21000.0], dtype=torch.float64, requires_grad=True)
    q = torch.tensor([0.5, 0.7, 9.0], dtype=torch.float64, requires_grad=True)
    b, a = dsp.biquad_highpass_coeffs(fc, q, 44100)
    w = torch.randn(3, 40, generator=gen, dtype=torch.float64)
    y, ref = dsp.fsm_filter(x, b, a), dsp._fsm_filter_reference(x, b, a, dsp.fft_size(80))
    assert torch.equal(y, ref)
    g_fast = torch.autograd.grad((y * w).sum(), (x, fc, q), retain_graph=True)
    for g1, g2 in zip(g_fast, torch.autograd.grad((ref * w).sum(), (x, fc, q))):
        assert torch.allclose(g1, g2, rtol=1e-9, atol=1e-12)
    f = lambda x, fc, q: dsp.fsm_filter(x, *dsp.biquad_highpass_coeffs(fc, q, 44100), n_fft=81)  # odd n_fft  # noqa
    assert torch.autograd.gradcheck(f, (x, fc, q))
    assert torch.autograd.gradgradcheck(f, (x[:, :8], fc, q))


@pytest.mark.parametrize("row_shift", [True, False])
def test_time_shift_paths_agree_and_are_twice_differentiable(monkeypatch, row_shift):
    monkeypatch.setattr(dsp, "CPU_ROW_SHIFT", row_shift)
    x = torch.randn(5, 12, dtype=torch.float64, requires_grad=True)
    shift = torch.tensor([0, 3, -4, 12, -20])
    y = dsp.time_shift(x, shift)
    ref = torch.stack([torch.cat([torch.zeros(max(d, 0)), r, torch.zeros(max(-d, 0))]).to(x.dtype)[
        max(-d, 0): max(-d, 0) + 12] for r, d in zip(x.detach(), [min(max(s, -12), 12) for s in shift.tolist()])])
    assert torch.equal(y, ref)
    assert torch.autograd.gradcheck(lambda t: dsp.time_shift(t, shift), (x,))
    assert torch.autograd.gradgradcheck(lambda t: dsp.time_shift(t, shift) ** 2, (x,))


@pytest.mark.parametrize("make", [GranularSynth, lambda: ChirpletSynth(max_shift=2048),
                                  lambda: TR808Synth(max_shift=2048, pre_delay=2048)],
                         ids=["granular", "chirplet", "tr808"])
def test_cpu_fast_paths_render_the_same_float32_audio_and_gradients_as_whole_batch_paths(monkeypatch, make):
    s = make()
    seed = torch.tensor([3, 11, -2])
    theta = s.random_theta(seed).requires_grad_()
    w = rng.uniform(seed, 50, s.n_samples, torch.float32)[:, None] - 0.5
    y = s(theta, seed)
    (g,) = torch.autograd.grad((y * w).sum(), theta)
    monkeypatch.setattr(granular, "CPU_BLOCKED", False)
    monkeypatch.setattr(dsp, "CPU_ROW_SHIFT", False)
    y2 = s(theta, seed)
    (g2,) = torch.autograd.grad((y2 * w).sum(), theta)
    assert torch.equal(y, y2)  # float32 audio identical bit for bit
    assert torch.allclose(g, g2, rtol=1e-4, atol=1e-6 * g.abs().max().item())


def test_grain_ola_backward_under_batched_grads():
    """θ-IS (method='direct', vectorize=True) back-propagates with is_grads_batched (vmap): the blocked in-place
    backward must hand over to the reference expression there and give the per-vector gradients."""
    from scraplab.synths.granular import overlap_add_grains
    gen = torch.Generator().manual_seed(0)
    B, G, M, n = 2, 3, 16, 64
    f0 = torch.rand(B, G, generator=gen) + 1
    curve = torch.randn(B, M, generator=gen, requires_grad=True)
    scale = torch.rand(B, G, generator=gen, requires_grad=True)
    onset = torch.randint(0, n - M, (B, G), generator=gen)
    y = overlap_add_grains(f0, curve, scale, torch.hann_window(M), onset, n)
    gys = torch.randn(4, B, n, generator=gen)
    batched = torch.autograd.grad(y, (curve, scale), gys, is_grads_batched=True, retain_graph=True)
    for k, gy in enumerate(gys):
        one = torch.autograd.grad(y, (curve, scale), gy, retain_graph=True)
        for a, b in zip(batched, one):
            torch.testing.assert_close(a[k], b)


@pytest.mark.parametrize("make", [GranularSynth, ChirpletSynth, TR808Synth], ids=["granular", "chirplet", "tr808"])
def test_non_cpu_code_path_creates_no_cpu_tensor(make):
    """The path a GPU takes, run on the ``meta`` device: every CPU-only branch is off there (as on CUDA), and any
    tensor the synth made on the CPU instead of the input's device meets a meta tensor in an elementwise op and
    raises. This is the device-placement half of CPU/GPU equality that can be checked without a GPU; validation
    is off because it reads values (host syncs)."""
    s = make(validate=False)
    seed = torch.arange(3)
    theta = s.random_theta(seed).to("meta").requires_grad_()
    y = s(theta, seed.to("meta"))
    assert y.device.type == "meta" and y.shape == (3, 1, s.n_samples)
    y.sum().backward()
    assert theta.grad.device.type == "meta" and theta.grad.shape == theta.shape


def test_non_cpu_code_path_check_catches_a_forgotten_device(monkeypatch):
    """The meta check above fails when a synth builds a tensor without the input's device."""
    hann = dsp.periodic_hann
    monkeypatch.setattr(dsp, "periodic_hann", lambda n, dtype=torch.float32, device=None: hann(n, dtype))
    s = GranularSynth(validate=False)
    seed = torch.arange(2)
    with pytest.raises(RuntimeError, match="device"):
        s(s.random_theta(seed).to("meta"), seed.to("meta"))
