"""JTFS engine: path counts, exactness against kymatio main (golden fixtures), per-path = slice of full, gradients."""
import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from scraplab.scattering import JTFS

FIXTURES = Path(__file__).parent / "fixtures"


def load_fixture(name):
    d = np.load(FIXTURES / f"jtfs_{name}.npz")
    N, J, Q1, Q2, J_fr, Q_fr, T, F = (int(v) for v in d["config"])
    module = JTFS(N, J, (Q1, Q2), J_fr, Q_fr, None if T < 0 else T, None if F < 0 else F,
                  first_order=True, dtype=torch.float64)
    return module, d


def assert_matches_oracle(S, ref):
    # The oracle (kymatio main fork in scrapl-loss) adds 1e-12 to every modulus; nothing else may differ.
    np.testing.assert_allclose(S, ref, rtol=1e-6, atol=5e-12)


@pytest.mark.parametrize("kw, p2, p_all", [
    (dict(shape=32768, J=12, Q=(8, 2), J_fr=3, Q_fr=2), 315, 323),
    (dict(shape=44100, J=12, Q=(8, 2), J_fr=5, Q_fr=2, T=2048, F=1), 483, 495),
    (dict(shape=8096, J=3, Q=(1, 1), J_fr=2, Q_fr=1), 7, 11),
])
def test_path_counts_match_paper(kw, p2, p_all):
    assert JTFS(**kw).n_paths == p2
    m = JTFS(**kw, first_order=True)
    assert m.n_paths == p_all
    orders = [p.order for p in m.paths]
    assert orders == sorted(orders)  # kymatio's joint layout: order 1 first


def test_path_meta():
    m = JTFS(32768, 12, (8, 2), 3, 2)
    spins = [p.spin for p in m.paths]
    assert spins.count(0) == 21 and spins.count(1) == spins.count(-1) == 21 * 7
    p = next(q for q in m.paths if q.spin == -1)
    assert p.rate_hz(8192) == pytest.approx(p.xi2 * 8192)
    assert p.scale_cpo < 0 and p.fm_rate_oct_per_s(8192) < 0
    assert all(q.j2 > m.filter_meta["psi1"][q.n1_max - 1]["j"] for q in m.paths)


@pytest.mark.parametrize("name", ["tiny", "tiny_f1"])
def test_full_transform_equals_kymatio_main(name):
    m, d = load_fixture(name)
    S = m(torch.from_numpy(d["x"])).numpy()
    assert S.shape == d["S"].shape
    assert_matches_oracle(S, d["S"])


@pytest.mark.parametrize("name", ["granular", "tr808"])
def test_paper_configs_equal_kymatio_main_on_sampled_paths(name):
    m, d = load_fixture(name)
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(d["kept"]), size=8, replace=False))
    S = m.forward_paths(torch.from_numpy(d["x"]), d["kept"][pick]).numpy()
    assert_matches_oracle(S, d["S"][:, pick])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["granular", "tr808"])
def test_paper_configs_equal_kymatio_main_all_paths(name):
    m, d = load_fixture(name)
    S = m.forward_paths(torch.from_numpy(d["x"]), d["kept"]).numpy()
    assert_matches_oracle(S, d["S"])


def test_forward_path_is_exact_slice_of_forward():
    m = JTFS(512, 4, (4, 2), 2, 2, first_order=True, dtype=torch.float64)
    x = torch.randn(3, 512, dtype=torch.float64)
    full = m(x)
    for idx in range(m.n_paths):
        one = m.forward_path(x, idx)
        rel = (one - full[:, idx]).norm() / full[:, idx].norm()
        assert rel < 1e-6, (idx, rel)
    some = m.forward_paths(x, [30, 3, 30 - 1])
    torch.testing.assert_close(some, full[:, [30, 3, 29]], rtol=1e-12, atol=0)


def test_first_layer_matches_kymatio_030_scattering1d():
    """Same Morlet filters as kymatio 0.3.0; its first order equals ours up to its known level scaling: 0.3.0
    periodises the low-pass by averaging (kymatio bug #984), main (and we) by summation, a factor 2**k1 per row."""
    from kymatio.scattering1d.filter_bank import scattering_filter_factory
    from kymatio.scattering1d.frontend.torch_frontend import ScatteringTorch1D

    N, J, Q = 2048, 6, (4, 2)
    m = JTFS(N, J, Q, 2, 1, first_order=True, dtype=torch.float64)
    _, psi1, _ = scattering_filter_factory(m.padding.n_padded, J, Q, 2**J)
    np.testing.assert_array_equal(np.stack([p["levels"][0] for p in psi1]), m.psi1.numpy())
    x = torch.randn(2, N, dtype=torch.float64)
    ref = ScatteringTorch1D(J, N, Q=Q, max_order=1).double()(x)[:, 1:]
    S1 = m._first_order_input(m._first_layer(m._prepare(x), m.n1_total))
    start, stop = m._unpad()
    scale = torch.tensor([2.0 ** k for a, b, k in m._groups for _ in range(a, b)], dtype=torch.float64)
    # kymatio 0.3.0 stores float32-rounded filters even after .double(), hence 1e-6 and not 1e-12.
    torch.testing.assert_close(S1[..., start:stop] / scale[:, None], ref, rtol=1e-6, atol=1e-12)


def test_gradcheck_tiny():
    m = JTFS(256, 4, (2, 1), 1, 1, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    base = torch.randn(1, 256, generator=g, dtype=torch.float64)
    basis = torch.randn(6, 256, generator=g, dtype=torch.float64)  # check the Jacobian along 6 directions
    a = torch.zeros(1, 6, dtype=torch.float64, requires_grad=True)
    for idx in (0, m.n_paths - 2):
        assert torch.autograd.gradcheck(lambda v: m.forward_path(base + v @ basis, idx), (a,), eps=1e-6,
                                        atol=1e-7, rtol=1e-5)


def test_gradgradcheck_tiny():
    """Double backward (θ-IS) through the fused frequential stage, the saved-output modulus and the rfft."""
    m = JTFS(256, 4, (2, 1), 1, 1, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    base = torch.randn(1, 256, generator=g, dtype=torch.float64)
    basis = torch.randn(3, 256, generator=g, dtype=torch.float64)
    a = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    f = lambda v: (m.forward_path(base + v @ basis, m.n_paths - 1) ** 2).sum()
    assert torch.autograd.gradgradcheck(f, (a,), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_chunked_frequential_stage_is_exact(monkeypatch):
    """The fused frequential stage gives the same values and gradients however the frames are chunked."""
    from scraplab.scattering import core
    m = JTFS(2048, 6, (4, 2), 2, 1, first_order=True, dtype=torch.float64)
    x = torch.randn(2, 2048, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    idx = [0, 5, m.n_paths // 2, m.n_paths - 1]

    def run():
        xr = x.clone().requires_grad_(True)
        S = m.forward_paths(xr, idx)
        (gx,) = torch.autograd.grad((S * torch.linspace(-1, 2, S.numel(), dtype=S.dtype).view_as(S)).sum(), xr)
        return S.detach(), gx

    S_one, g_one = run()  # default: one chunk at this size
    monkeypatch.setattr(core, "CHUNK_ELEMENTS", 64)
    assert len(core._chunks(2, 1024, 8)) > 1
    S_many, g_many = run()
    torch.testing.assert_close(S_many, S_one, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(g_many, g_one, rtol=1e-10, atol=1e-14)


def test_chunk_sizes_are_chosen_per_device():
    """CPU chunks stay cache-sized; on an accelerator a chunk is a kernel launch, so a training batch of the
    P = 315 settings (B·C = 32 · 240 values per frame, 2048 frames) takes one chunk there and many on CPU."""
    from scraplab.scattering import core

    assert core.chunk_elements("cpu") == core.CHUNK_ELEMENTS == core.chunk_elements(None)
    assert core.chunk_elements(torch.device("cuda")) == core.chunk_elements("mps") == core.ACCELERATOR_CHUNK_ELEMENTS
    assert core.ACCELERATOR_CHUNK_ELEMENTS >= 32 * core.CHUNK_ELEMENTS
    assert len(core._chunks(32, 2048, 240, torch.device("cuda"))) == 1
    assert len(core._chunks(32, 2048, 240, torch.device("cpu"))) > 30
    for dev in ("cpu", "cuda"):  # the ranges tile the frames
        r = core._chunks(4, 1000, 77, dev)
        assert r[0][0] == 0 and r[-1][1] == 1000 and all(a[1] == b[0] for a, b in zip(r, r[1:]))


def test_rfft_backward_matches_torch():
    from scraplab.scattering.core import rfft
    u = torch.randn(3, 64, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 33, dtype=torch.complex128)
    (a,) = torch.autograd.grad(rfft(u), u, g)
    (b,) = torch.autograd.grad(torch.fft.rfft(u), u, g)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradgradcheck(rfft, (u.detach()[:1, :16].clone().requires_grad_(True),))


def test_time_shift_invariance_for_small_shifts():
    N = 8192
    m = JTFS(N, 9, (4, 2), 2, 1, dtype=torch.float64)
    t = torch.arange(N, dtype=torch.float64)
    x = torch.exp(-((t - N / 2) / 600) ** 2) * torch.sin(2 * torch.pi * (0.01 + 2e-6 * t) * t)
    S, S_shift = m(x[None]), m(torch.roll(x, 8)[None])
    rel = (S - S_shift).norm() / S.norm()
    S_far = m(torch.roll(x, 1500)[None])
    assert rel < 0.02
    assert (S - S_far).norm() / S.norm() > 5 * rel  # the invariance is local: large shifts do show


def test_batch_and_channel_shapes():
    m = JTFS(1024, 5, (4, 1), 2, 1)
    x = torch.randn(2, 3, 1024)
    out = m.forward_path(x, 0)
    assert out.shape == (2, 3) + m.output_shape()
    torch.testing.assert_close(out[1, 2], m.forward_path(x[1, 2][None], 0)[0])


def test_dtype_and_device_round_trip():
    m = JTFS(1024, 5, (4, 1), 2, 1)
    assert all(b.dtype == torch.float32 for b in m.buffers())
    x = torch.randn(2, 1024)
    y32 = m.forward_path(x, 3)
    m64 = m.double()
    assert all(b.dtype == torch.float64 for b in m64.buffers())
    y64 = m64.forward_path(x.double(), 3)
    assert y64.dtype == torch.float64
    torch.testing.assert_close(y64.float(), y32, rtol=1e-4, atol=1e-7)
    assert all(b.dtype == torch.float16 for b in JTFS(1024, 5, (4, 1), 2, 1).half().buffers())
    assert m.to("cpu").psi1.device.type == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    m = JTFS(2048, 6, (4, 2), 2, 1)
    x = torch.randn(2, 2048)
    torch.testing.assert_close(m.cuda()(x.cuda()).cpu(), m.cpu()(x), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(shape=1024, J=12), "exceeds the signal length"),
    (dict(shape=1024, J=5, F=64), "F must be"),
    (dict(shape=1024, J=5, T=4096), "T must be"),
    (dict(shape=1024, J=5, Q=(0, 1)), "Q must be"),
    (dict(shape=1024, J=5, T=4), "T=4 is shorter"),
])
def test_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        JTFS(**{"J_fr": 2, "Q_fr": 1, **kwargs})


def test_bad_input():
    m = JTFS(1024, 5, (4, 1), 2, 1)
    with pytest.raises(ValueError, match="1024 samples"):
        m(torch.randn(2, 1000))
    with pytest.raises(ValueError, match="floating-point"):
        m(torch.ones(2, 1024, dtype=torch.int64))
    with pytest.raises(IndexError, match="out of range"):
        m.forward_path(torch.randn(1, 1024), m.n_paths)


def test_skipped_operator_columns_are_round_off(monkeypatch):
    """Operator entries and columns below OPERATOR_TOL are float64 FFT round-off: a JTFS built with them zeroed and
    skipped (the default) and one built with OPERATOR_TOL = 0 (nothing dropped) agree to 1e-12 of the largest
    coefficient, values and gradients, while the default does drop entries and skip columns."""
    from scraplab.scattering import jtfs as jtfs_mod
    kw = dict(shape=4096, J=8, Q=(4, 2), J_fr=3, Q_fr=2, dtype=torch.float64)
    m = JTFS(**kw)
    W, keep = m._operator_columns(1, 6)
    assert 0 < keep.numel() < W.shape[-1]
    monkeypatch.setattr(jtfs_mod, "OPERATOR_TOL", 0.0)
    m_all = JTFS(**kw)
    dropped = sum(int(((b == 0) & (a != 0)).sum()) for (n, b), a in zip(m.named_buffers(), m_all.buffers())
                  if n.startswith(("wfr", "tavg", "favg")))
    assert dropped > 0
    assert m_all._operator_columns(1, 6)[1].numel() == W.shape[-1]
    x = torch.randn(2, 4096, dtype=torch.float64, generator=torch.Generator().manual_seed(3), requires_grad=True)
    S, S_all = m(x), m_all(x)
    assert (S - S_all).abs().max() <= 1e-12 * S_all.abs().max()
    w = torch.randn(S.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    g, g_all = (torch.autograd.grad((s * w).sum(), x)[0] for s in (S, S_all))
    assert (g - g_all).abs().max() <= 1e-12 * g_all.abs().max()


def test_filters_hold_no_subnormal_values_after_any_cast():
    """Subnormal filter taps (Gaussian tails below float32's 1.2e-38) made matmuls ~10× slower on x86; the module
    flushes them at construction and after every cast. Flushing changes nothing a float32 coefficient can show."""
    def n_subnormal(m, dtype=None):  # entries that are subnormal in dtype (default: each buffer's own dtype)
        return sum(int(((b.abs() > 0) & (b.abs() < torch.finfo(dtype or b.dtype).tiny)).sum()) for b in m.buffers()
                   if b.is_floating_point())

    kw = dict(shape=4096, J=8, Q=(8, 2), J_fr=3, Q_fr=2, T=512, F=1)
    m64 = JTFS(**kw, dtype=torch.float64)
    # the float64 filters do reach below float32's normal range, so a plain cast would make subnormals
    assert n_subnormal(m64, torch.float32) > 0
    m32 = JTFS(**kw)
    assert n_subnormal(m32) == 0
    x = torch.randn(2, 4096, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    S64 = m64(x)
    cast = copy.deepcopy(m64).float()  # after m64 ran: its cached support tensors must follow the cast
    assert n_subnormal(cast) == 0 and n_subnormal(copy.deepcopy(m64).half()) == 0
    torch.testing.assert_close(cast(x.float()).double(), S64, rtol=1e-4, atol=1e-6 * S64.abs().max().item())
    torch.testing.assert_close(m32(x.float()), cast(x.float()))
