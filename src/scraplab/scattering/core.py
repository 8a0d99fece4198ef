"""JTFS computations on tensors (no module state): first layer, one ψ2 "rate", frequential filtering, averaging.

All signals are complex spectra or real envelopes with a leading batch axis. The maths is kymatio main's
``joint_timefrequency_scattering`` + ``jtfs_average_and_format`` (joint format): the same products, the same
Fourier-domain subsampling (periodisation by averaging) and the same unpadding, batched over filters so that one
call serves a single path (SCRAPL) or every path of a rate (full JTFS) with identical arithmetic.
"""
from __future__ import annotations

import torch


class _Modulus(torch.autograd.Function):
    """|z| in one pass; backward g·z / max(|z|, eps), written in differentiable ops so that the double backward
    of θ-IS works. The gradient at z = 0 is 0 and the second derivative is bounded by 1/eps.

    The backward reuses the saved output |z| instead of recomputing it (on CPU the complex ``abs`` of the
    scalogram costs as much as an FFT); in a double backward that output is differentiated through this same
    Function, so the second derivative is unchanged.
    """

    @staticmethod
    def forward(ctx, z, eps):
        r = _abs(z)
        ctx.save_for_backward(z, r)
        ctx.eps = eps
        return r

    @staticmethod
    def backward(ctx, g):
        z, r = ctx.saved_tensors
        return z * (g / r.clamp_min(ctx.eps)), None


def modulus(z: torch.Tensor, eps: float) -> torch.Tensor:
    """Complex modulus |z| (kymatio main's value) with a finite, eps-regularised gradient at z = 0."""
    if not torch.is_grad_enabled() or not z.requires_grad:
        return _abs(z)
    return _Modulus.apply(z, eps)


def vmapped(*ts) -> bool:
    """Whether a tensor is wrapped by a torch.func transform (vmap, grad) or batched by autograd's is_grads_batched:
    out= ops and in-place ops with an unbatched destination fail under vmap."""
    f = torch._C._functorch
    return any(f.is_functorch_wrapped_tensor(t) or f.is_legacy_batchedtensor(t) for t in ts)


def _abs(z):
    # sqrt(re² + im²) in two fused passes: about 2x faster than hypot and 5x faster than complex abs on CPU.
    # float32 overflows only beyond |z| ~ 1e19; values below ~1e-19 square to denormals, which are slow (not
    # wrong) on x86 — the frequential stage skips its round-off-level columns (jtfs.OPERATOR_TOL) for that reason.
    # One new tensor: re² is accumulated into in place (fresh multi-MB tensors cost page faults on CPU).
    re, im = z.real, z.imag
    return torch.mul(re, re).addcmul_(im, im).sqrt_()


class _RFFT(torch.autograd.Function):
    """``torch.fft.rfft`` along the last axis (even length) with a half-size backward.

    torch's own backward zero-fills a full-length complex spectrum and runs a complex FFT; the adjoint of the
    rfft is also N·irfft of the gradient with the interior bins halved (irfft counts each of them
    twice), which needs half the work. Written in differentiable ops, so double backward works.
    """

    @staticmethod
    def forward(ctx, u):
        ctx.n = u.shape[-1]
        return torch.fft.rfft(u)

    @staticmethod
    def backward(ctx, g):
        return torch.fft.irfft(g * rfft_adjoint_weights(g), n=ctx.n) * ctx.n


def rfft_adjoint_weights(g: torch.Tensor) -> torch.Tensor:
    """(n_half,) weights of the rfft's adjoint on a half spectrum ``g``: 1 at DC and Nyquist, ½ on the interior
    bins, which irfft counts twice."""
    w = torch.full((g.shape[-1],), 0.5, dtype=g.real.dtype, device=g.device)
    w[0] = w[-1] = 1.0
    return w


def rfft(u: torch.Tensor) -> torch.Tensor:
    """rfft of a real signal (last axis, even length) with the cheaper backward of ``_RFFT``."""
    if u.shape[-1] % 2 or not (torch.is_grad_enabled() and u.requires_grad):
        return torch.fft.rfft(u)
    return _RFFT.apply(u)


def subsample_fourier(X: torch.Tensor, k: int, dim: int = -1) -> torch.Tensor:
    """Decimate by ``2**k`` in the signal domain by periodising the spectrum (mean of the 2**k folds)."""
    if k == 0:
        return X
    dim = dim % X.dim()
    n = X.shape[dim]
    shape = X.shape[:dim] + (2**k, n // 2**k) + X.shape[dim + 1:]
    return X.reshape(shape).mean(dim)


def half_to_full(R: torch.Tensor, n: int) -> torch.Tensor:
    """Full length-n spectrum of a real signal from its rfft ``R`` (Hermitian symmetry; n even)."""
    return torch.cat([R, R[..., 1: n // 2].flip(-1).conj()], dim=-1)


def fold_product(X: torch.Tensor, h: torch.Tensor, k: int, support=None) -> torch.Tensor:
    """``subsample_fourier(X · h, k)``: product with a real Fourier filter, then periodisation to N / 2**k bins.

    Args:
        X: (B, N) complex spectrum shared by all filters, or (B, G, N) one spectrum per filter row.
        h: (G, N) real filters, or (N,) one filter for all rows.
        support: optional (idx, pos) long tensors — the bins where ``h`` is non-negligible (relative magnitude
            above 1e-30, far below float64 resolution) and their folded positions ``idx mod N/2**k``; ``idx`` is
            (G, M) for per-row filters or (M,) for a shared one, padded with bins of weight 0. The product is then
            formed on those bins only and summed into place, which is the same sum (the dropped terms are below
            1e-30 of the kept ones) at a fraction of the cost for narrow low-frequency filters.
            A support may carry two more entries (hidx, sign): then ``X`` is the rfft half of a real signal's
            spectrum and bin i > N/2 is read as conj(X[N - i]).
    Returns:
        (B, G, N / 2**k) complex.
    """
    if X.dim() == 2:
        X = X[:, None, :]
    if support is None:
        return subsample_fourier(X * h, k)
    idx, pos = support[:2]
    n_out = h.shape[-1] // 2**k
    if len(support) == 4:  # half spectrum: gather bin |i| and conjugate the negative frequencies
        vals = torch.view_as_real(X[..., support[2]]) * support[3]
        vals = torch.view_as_complex(vals.contiguous())
        w = h[idx]
        pos = pos.expand(X.shape[0], X.shape[1], -1)
    elif idx.dim() == 2:  # one filter per row, spectrum shared by the rows
        vals = X[:, 0, idx] if X.shape[1] == 1 else torch.gather(X, -1, idx.expand(X.shape[0], -1, -1))
        w = torch.gather(h, -1, idx)
        pos = pos.expand(X.shape[0], -1, -1)
    else:  # one filter for every row
        vals = X[..., idx]
        w = h[idx]
        pos = pos.expand(X.shape[0], X.shape[1], -1)
    vals = torch.view_as_real(vals * (w / 2**k))
    out = vals.new_zeros(vals.shape[:2] + (n_out, 2))
    out.scatter_add_(2, pos.unsqueeze(-1).expand(-1, -1, -1, 2), vals)
    return torch.view_as_complex(out)


# Complex values per chunk of the fused frequential stage on CPU (4 MiB in complex64). The full-JTFS step (batch 4,
# 32768 samples, P = 315 + 8, 2 threads) alternating in one process: 2^14 39 s, 2^16 22 s, 2^18 9.8-12.1 s,
# 2^19 8.7-8.9 s, 2^20 9.4 s (medians of 3-4 steps on a slow day); SCRAPL's mean step did not move (187 / 182 ms).
CHUNK_ELEMENTS = 1 << 19
# On accelerators a chunk is a kernel launch, and small matmuls leave the device idle: 16 M values (128 MiB in
# complex64, the product's memory bound per chunk) make one chunk of every P = 315 path at batch 32.
ACCELERATOR_CHUNK_ELEMENTS = 1 << 24


def chunk_elements(device: torch.device | str | None = None) -> int:
    """Complex values per chunk of the fused frequential stage on ``device`` (CPU: cache-sized)."""
    kind = torch.device(device).type if device is not None else "cpu"
    return CHUNK_ELEMENTS if kind == "cpu" else ACCELERATOR_CHUNK_ELEMENTS


def _chunks(B: int, T: int, C: int, device=None):
    """Frame ranges of the fused frequential stage: about ``chunk_elements(device)`` complex values each, so that
    on CPU the product, its modulus and the averaged partial sums stay in cache instead of streaming B·T·C values
    through memory."""
    c = max(16, chunk_elements(device) // max(1, B * C))
    return [(a, min(a + c, T)) for a in range(0, T, c)]


def _real_layout(X: torch.Tensor, W: torch.Tensor):
    """Real operands with Xᵀ W = Zr[..., :C] + i·Zr[..., C:] for Zr = Xr · Wb, frames first.

    Xr is (T, B, 2·n1) = [Re X_0, Im X_0, Re X_1, …] per frame and example (or (T, B, n1) for a real X) and Wb the
    real block matrix of W with its rows in that order, so that a chunk of frames is one contiguous (c·B, 2·n1)
    matrix, one real matmul yields the real and imaginary parts as two contiguous halves, and the modulus runs on
    contiguous memory (about 1.4x faster than on the strided views of a complex tensor). Xr comes from one permute
    of the complex (B, n1, T), which keeps each value's real and imaginary parts together: 1–2.6 ms at j2 = 1
    (batch 4, 10 rows, 32768 frames) where permuting the real view into [Re | Im] halves took 9.8 ms."""
    Wr, Wi = W.real, W.imag
    T, B = X.shape[-1], X.shape[0]
    if X.is_complex():
        Xr = torch.view_as_real(X.permute(2, 0, 1).contiguous()).reshape(T, B, -1)
        Wb = torch.stack([torch.cat([Wr, Wi], 1), torch.cat([-Wi, Wr], 1)], dim=1).reshape(-1, 2 * W.shape[-1])
    else:
        Xr, Wb = X.permute(2, 0, 1).contiguous(), torch.cat([Wr, Wi], 1)
    return Xr, Wb


def _from_real_layout(gXr: torch.Tensor, complex_: bool) -> torch.Tensor:
    """The inverse of ``_real_layout`` for X, as a view: (c, B, 2·n1) or (c, B, n1) -> (B, n1, c)."""
    if complex_:
        gXr = torch.view_as_complex(gXr.view(*gXr.shape[:-1], -1, 2))
    return gXr.permute(1, 2, 0)


class _ScatterAverage(torch.autograd.Function):
    """out = A · |Xᵀ W| computed frame chunk by frame chunk, so that the B·T·C complex product never exists in
    full. The backward recomputes each chunk's product and its modulus (cache-resident, so nearly free): keeping
    the modulus instead made the forward of a full JTFS store B·T·C reals per rate (0.7 GB at batch 4, j2 = 1),
    and writing them cost 4x the no-grad forward. Under create_graph (θ-IS double backward) the backward is
    recomputed in differentiable ops."""

    @staticmethod
    def forward(ctx, X, W, A, eps):
        out = _scatter_average(X, W, A)
        ctx.save_for_backward(X, W, A)
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx, g):
        X, W, A = ctx.saved_tensors
        B, T, C = X.shape[0], X.shape[-1], W.shape[-1]
        if torch.is_grad_enabled():  # create_graph: differentiable recomputation (the saved modulus is a constant)
            return _scatter_average_backward_graph(X, W, A, g, ctx.eps), None, None, None
        Xr, Wb = _real_layout(X, W)
        WbT = Wb.transpose(0, 1)
        g = g.transpose(0, 1).reshape(g.shape[1], B * C)  # (T', B·C)
        batched = vmapped(g)  # θ-IS runs this backward under vmap (is_grads_batched): out of place there
        parts, gX = [], None if batched else torch.empty_like(X)
        for a, b in _chunks(B, T, C, X.device):
            Zr = torch.matmul(Xr[a:b].reshape((b - a) * B, -1), Wb)  # (c·B, 2C)
            ratio = torch.matmul(A[:, a:b].transpose(0, 1), g).view(-1, C).div_(_chunk_modulus(Zr, C).clamp_min_(ctx.eps))
            if batched:  # vmap refuses Zr.mul_(ratio) with ratio batched and Zr not
                gZr = (Zr.view(-1, 2, C) * ratio.unsqueeze(1)).view(-1, 2 * C)
                parts.append(torch.matmul(gZr, WbT).view(b - a, B, -1))  # (c, B, 2·n1) or (c, B, n1)
                continue
            Zr.view(-1, 2, C).mul_(ratio.unsqueeze(1))  # in place: 2.6x faster than a new product
            # each chunk's gradient written straight into its frames of the (B, n1, T) result: no concatenation
            # of the chunks and no permuting copy of the whole gradient afterwards
            gX[..., a:b].copy_(_from_real_layout(torch.matmul(Zr, WbT).view(b - a, B, -1), X.is_complex()))
        if not batched:
            return gX, None, None, None
        return _from_real_layout(torch.cat(parts, dim=0), X.is_complex()).contiguous(), None, None, None


def _chunk_modulus(Zr, C):
    """(c·B, C) modulus of a chunk laid out as [real | imaginary] halves (``_real_layout``)."""
    re, im = Zr[:, :C], Zr[:, C:]
    return torch.addcmul(re * re, im, im).sqrt_()


def _scatter_average(X, W, A):
    """A · |Xᵀ W| as (B, T', C), chunk by chunk."""
    B, T, C = X.shape[0], X.shape[-1], W.shape[-1]
    Xr, Wb = _real_layout(X, W)
    out = None
    for a, b in _chunks(B, T, C, X.device):
        Zr = torch.matmul(Xr[a:b].reshape((b - a) * B, -1), Wb).square_()  # (c·B, 2C), squared in place
        M = torch.add(Zr[:, :C], Zr[:, C:]).sqrt_()  # (c·B, C); 1.25x faster than _chunk_modulus's three passes
        part = torch.matmul(A[:, a:b], M.view(b - a, B * C))  # (T', B·C)
        out = part if out is None else out.add_(part)
    return out.view(-1, B, C).transpose(0, 1)


def _scatter_average_backward_graph(X, W, A, g, eps):
    """The backward of ``_ScatterAverage`` in differentiable ops (complex form; modulus via ``_Modulus``)."""
    B, T, C = X.shape[0], X.shape[-1], W.shape[-1]
    Wh = W.conj().transpose(0, 1)
    parts = []
    for a, b in _chunks(B, T, C, X.device):
        Z = torch.matmul(X[..., a:b].transpose(-1, -2).to(W.dtype), W)
        gM = torch.matmul(A[:, a:b].transpose(0, 1), g)  # (B, c, C)
        gZ = Z * (gM / _Modulus.apply(Z, eps).clamp_min(eps))
        parts.append(torch.matmul(gZ, Wh).transpose(-1, -2))  # (B, n1, c)
    gX = torch.cat(parts, dim=-1)
    return gX if X.is_complex() else gX.real


# The frequential filters' weights span 14 decades (OPERATOR_TOL), so in float32 about 0.7 % of the products
# |Xᵀ W| of a random unit-variance signal lie below 1e-19, where their squares are subnormal: x86 handles those
# 10-100x slower, and they took the fused modulus from 54 to 105 ms at the fastest rate of a full JTFS. Scaling W
# by 2**20 moves that threshold to |Xᵀ W| < 1e-25 (none in that measurement) and the float32 overflow of the
# squares from |Xᵀ W| > 1.8e19 to > 1.8e13, far beyond audio (about 3e-3 for unit-variance noise).
MODULUS_SCALE = 2.0**20


def modulus_scale(dtype: torch.dtype) -> float:
    """The power of two ``scatter_and_average`` scales by: MODULUS_SCALE, or 1 for float16 (range 6.5e4)."""
    return MODULUS_SCALE if torch.finfo(dtype).max > 1e30 else 1.0


def scatter_and_average(X: torch.Tensor, W: torch.Tensor, time_avg: torch.Tensor, eps: float) -> torch.Tensor:
    """Filter along log-frequency, take the modulus, average over time: ``time_avg · |Xᵀ W|``.

    The zero-padding to N_fr, FFT, product with ψ_fr, Fourier subsampling and inverse FFT of kymatio form one
    linear map per frequential filter, precomputed as a complex matrix (exactly the same operator); the K filters
    of a group are concatenated column-wise so that one matrix product serves them all. ``time_avg`` (T', T) maps
    a T-frame envelope to the T' kept frames of (U ∗ φ_T)[m·stride] (at order 1, where the input is averaged
    already, it only unpads): kymatio's Fourier-domain low-pass and subsampling written as its (exactly equal)
    circulant-and-decimate matrix. The three steps run fused over chunks of frames.

    Args:
        X: (B, n1, T) complex (second order) or real (first order), rows = scalogram channels.
        W: (n1, K·F_out) complex, the filters' matrices side by side (rows truncated to n1).
        time_avg: (T', T) real.
    Returns:
        (B, T', K·F_out) real.
    """
    W = W.to(X.dtype) if X.is_complex() else W
    # Scaled by a power of two (exact): A·|Xᵀ W| = (A / s)·|Xᵀ (s W)|, so that the modulus squares no subnormals.
    # Not in float16, whose range (6.5e4) the scaled weights would leave.
    s = modulus_scale(time_avg.dtype)
    W, time_avg = W * s, time_avg / s
    if torch.is_grad_enabled() and X.requires_grad:
        return _ScatterAverage.apply(X, W, time_avg, eps * s)  # the same eps in unscaled units
    return _scatter_average(X, W, time_avg)


def average_frequency(U: torch.Tensor, K: int, fr_avg) -> torch.Tensor:
    """Frequency averaging with stride F (spinned paths only: ``fr_avg`` None for spin 0), joint layout.

    ``fr_avg`` (F_out, F') is kymatio's φ_F product and subsampling along log-frequency as a matrix.

    Args:
        U: (B, T', K·F_out) time-averaged modulus of K paths.
    Returns:
        (B, K, F', T').
    """
    U = U.reshape(U.shape[0], U.shape[1], K, -1)
    if fr_avg is not None:
        U = torch.matmul(U, fr_avg)
    return U.permute(0, 2, 3, 1)
