"""Shared differentiable DSP helpers for the synths: levels, shifts, envelopes, chirps and an IIR high-pass.

All functions are batched over a leading dimension B, pure torch (no torchaudio, ecosystem_and_style.md §B.2) and
free of Python loops over examples or samples.
"""
from __future__ import annotations

import math

import torch

LN_1000 = math.log(1000.0)  # −60 dB


def db_to_amp(db: torch.Tensor) -> torch.Tensor:
    """Level in dB -> amplitude ratio 10^(dB/20)."""
    return torch.pow(10.0, db / 20.0)


def time_shift(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Delay each row by an integer number of samples with zero fill (no wrap-around).

    Args:
        x: (B, N) signals.
        shift: (B,) int64; positive delays, negative advances.
    Returns:
        (B, N) with y[b, n] = x[b, n − shift[b]] where that index is in [0, N), else 0. Differentiable in x to any
        order: the adjoint of a zero-filled shift by δ is the zero-filled shift by −δ, which is what backward runs.
    """
    return _TimeShift.apply(x, shift.to(x.device))


# Row copies on CPU (tests switch this off to run the other devices' gather path on the CPU).
CPU_ROW_SHIFT = True


def _time_shift_impl(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    n = x.shape[-1]
    if CPU_ROW_SHIFT and x.device.type == "cpu":  # one row copy per example, no (B, N) index tensor
        y = torch.zeros_like(x)
        for b, d in enumerate(shift.tolist()):
            if 0 <= d < n:
                y[b, d:] = x[b, : n - d]
            elif -n < d < 0:
                y[b, : n + d] = x[b, -d:]
        return y
    idx = torch.arange(n, device=x.device)[None, :] - shift[:, None]  # one gather, no host sync
    valid = (idx >= 0) & (idx < n)
    return torch.gather(x, 1, idx.clamp(0, n - 1)) * valid.to(x.dtype)


class _TimeShift(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, shift):
        ctx.save_for_backward(shift)
        return _time_shift_impl(x, shift)

    @staticmethod
    def backward(ctx, grad):
        (shift,) = ctx.saved_tensors
        return _TimeShift.apply(grad, -shift), None


def periodic_hann(n: int, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """(n,) periodic Hann window sin²(π k / n), w[0] = 0."""
    k = torch.arange(n, dtype=dtype, device=device)
    return torch.sin(math.pi * k / n) ** 2


def expm1_ratio(x: torch.Tensor) -> torch.Tensor:
    """E(x) = (e^x − 1)/x with E(0) = 1, finite value and gradient everywhere."""
    small = x.abs() < 1e-4
    x_safe = torch.where(small, torch.ones_like(x), x)  # keeps the unused branch's gradient finite
    return torch.where(small, 1.0 + x / 2.0 + x * x / 6.0, torch.expm1(x_safe) / x_safe)


def exp_chirp_cycles(f0_hz: torch.Tensor, rate_oct_s: torch.Tensor, t_s: torch.Tensor) -> torch.Tensor:
    """Phase in cycles of an exponential chirp with frequency f0·2^(rate·t), zero phase at t = 0.

    φ(t) = ∫₀ᵗ f0·2^(rate·τ) dτ = f0·t·E(rate·ln2·t), written with :func:`expm1_ratio` so rate = 0 (a pure tone)
    needs no special case. Arguments broadcast; f0 in Hz, rate in octaves/s, t in seconds.
    """
    return f0_hz * t_s * expm1_ratio(rate_oct_s * math.log(2.0) * t_s)


def exp_decay_envelope(decay_samples: torch.Tensor, n: int, attack: int) -> torch.Tensor:
    """Linear attack then exponential decay reaching −60 dB ``decay_samples`` after the attack (TR-808, ref §1.4).

    Args:
        decay_samples: (B,) decay time in samples (> 0).
        n: envelope length.
        attack: attack length A in samples; e[k] = k/(A−1) for k < A (A ≥ 2), otherwise no attack.
    Returns:
        (B, n) envelope with e[A + j] = r^j, r = 10^(−3/decay_samples).
    """
    attack = attack if attack >= 2 else 0
    k = torch.arange(n, dtype=decay_samples.dtype, device=decay_samples.device)[None, :]
    log_r = -LN_1000 / decay_samples[:, None]
    decay = torch.exp((k - attack).clamp_min(0) * log_r)
    if attack == 0:
        return decay
    return torch.where(k < attack, k / (attack - 1), decay)


def exp_decay_envelope_cumsum(decay_samples: torch.Tensor, n: int, attack: int) -> torch.Tensor:
    """Exclusive running sum S[k] = Σ_{j<k} e[j] of :func:`exp_decay_envelope`, in closed form.

    Closed form (quadratic over the attack, geometric series after it) avoids a length-N ``cumsum`` whose float32
    rounding would drift the oscillator phase. Returns (B, n).
    """
    attack = attack if attack >= 2 else 0
    k = torch.arange(n, dtype=decay_samples.dtype, device=decay_samples.device)[None, :]
    log_r = -LN_1000 / decay_samples[:, None]
    m = (k - attack).clamp_min(0)
    geometric = torch.expm1(m * log_r) / torch.expm1(log_r)  # Σ_{j<m} r^j
    if attack == 0:
        return geometric
    ramp = k * (k - 1) / (2.0 * (attack - 1))
    return torch.where(k <= attack, ramp, attack / 2.0 + geometric)


def guard_cutoff(cutoff_hz: torch.Tensor, sample_rate: float, knee: float = 0.9, ceiling: float = 0.98) -> torch.Tensor:
    """Keep a cutoff below Nyquist, smoothly, so tan(π·fc/sr) in the bilinear transform stays finite.

    Identity up to ``knee``·Nyquist, then a tanh saturation approaching ``ceiling``·Nyquist with slope 1 at the knee
    (C¹, gradient never exactly zero). Inputs above Nyquist are allowed and map below ``ceiling``·Nyquist.
    """
    if not 0 < knee < ceiling < 1:
        raise ValueError(f"need 0 < knee < ceiling < 1, got knee={knee}, ceiling={ceiling}")
    nyq = sample_rate / 2.0
    lo, width = knee * nyq, (ceiling - knee) * nyq
    over = (cutoff_hz - lo).clamp_min(0.0)
    return torch.where(cutoff_hz <= lo, cutoff_hz, lo + width * torch.tanh(over / width))


def biquad_highpass_coeffs(cutoff_hz: torch.Tensor, q: torch.Tensor, sample_rate: float,
                           knee: float = 0.9, ceiling: float = 0.98) -> tuple[torch.Tensor, torch.Tensor]:
    """Resonant 2nd-order high-pass by the bilinear transform (the TR-808 noise filter, ref §1.4).

    K = tan(π·fc/sr), N = 1/(1 + K/Q + K²), b = [N, −2N, N], a = [1, 2(K² − 1)N, (1 − K/Q + K²)N]. At Q = 1/√2 this
    is the Butterworth high-pass. ``fc`` goes through :func:`guard_cutoff` first.

    Args:
        cutoff_hz, q: (B,) tensors.
    Returns:
        b, a: (B, 3) numerator and denominator (a[:, 0] = 1).
    """
    fc = guard_cutoff(cutoff_hz, sample_rate, knee, ceiling)
    k = torch.tan(math.pi * fc / sample_rate)
    norm = 1.0 / (1.0 + k / q + k * k)
    b = torch.stack([norm, -2.0 * norm, norm], dim=-1)
    a = torch.stack([torch.ones_like(norm), 2.0 * (k * k - 1.0) * norm, (1.0 - k / q + k * k) * norm], dim=-1)
    return b, a


def fsm_filter(x: torch.Tensor, b: torch.Tensor, a: torch.Tensor, n_fft: int | None = None) -> torch.Tensor:
    """Apply per-example IIR filters by the frequency-sampling method (zero initial state).

    H(e^{jω}) = B(e^{jω}) / A(e^{jω}) is sampled on an rFFT grid of ``n_fft`` ≥ 2N points and multiplied with the
    signal's spectrum. This equals ``lfilter`` up to time-aliasing of the impulse-response tail beyond n_fft − N
    samples (negligible for stable poles with |p|^(n_fft−N) ≪ 1), and it is differentiable in x, b and a with plain
    FFTs, with no sequential recursion.

    Args:
        x: (B, N) signals.
        b, a: (B, M) filter coefficients (a[:, 0] ≠ 0).
        n_fft: FFT size, default the smallest 2^i·3^j·5^k ≥ 2N.
    Returns:
        (B, N) filtered signals, dtype of x.
    """
    n = x.shape[-1]
    if n_fft is None:
        n_fft = fft_size(2 * n)
    if n_fft < 2 * n:
        raise ValueError(f"n_fft must be >= 2 * N = {2 * n}, got {n_fft}")
    return _FSMFilter.apply(x, b.to(x.dtype), a.to(x.dtype), n_fft)


def _fsm_filter_reference(x: torch.Tensor, b: torch.Tensor, a: torch.Tensor, n_fft: int) -> torch.Tensor:
    """:func:`fsm_filter` as plain autograd ops (used for second derivatives)."""
    spec = torch.fft.rfft(x, n=n_fft)
    return torch.fft.irfft(spec * freq_response(b, a, n_fft), n=n_fft)[..., : x.shape[-1]]


class _FSMFilter(torch.autograd.Function):
    """Forward as :func:`_fsm_filter_reference` (same values); hand-written backward with one rFFT and one irFFT.

    With Ȳ = rfft(ȳ zero-padded to n_fft) and c_k/n_fft the irFFT's weights (c = 1 at DC and Nyquist, else 2):
    x̄ = crop(irfft(conj(H)·Ȳ)) (the adjoint of a circular convolution), and for a real coefficient p,
    ∂L/∂p = Re Σ_k W_k ∂H_k/∂p with W = (c/n_fft)·conj(Ȳ)·X, ∂H/∂b_j = e^{−iωj}/A, ∂H/∂a_j = −H·e^{−iωj}/A.
    Autograd's own backward of rfft/irfft runs a full complex FFT and several complex temporaries instead.
    """

    @staticmethod
    def forward(ctx, x, b, a, n_fft):
        spec = torch.fft.rfft(x, n=n_fft)
        h = freq_response(b, a, n_fft)
        ctx.save_for_backward(x, b, a, spec, h)
        ctx.n_fft = n_fft
        return torch.fft.irfft(spec * h, n=n_fft)[..., : x.shape[-1]]

    @staticmethod
    def backward(ctx, gy):
        x, b, a, spec, h = ctx.saved_tensors
        n_fft, n = ctx.n_fft, x.shape[-1]
        if torch.is_grad_enabled():  # create_graph=True: differentiate the reference expression instead
            with torch.enable_grad():
                ins = [t if t.requires_grad else t.detach().requires_grad_() for t in (x, b, a)]
                grads = torch.autograd.grad(_fsm_filter_reference(*ins, n_fft), ins, gy, create_graph=True)
            return (*[g if need else None for g, need in zip(grads, ctx.needs_input_grad[:3])], None)
        g_spec = torch.fft.rfft(gy, n=n_fft)
        g_x = g_b = g_a = None
        if ctx.needs_input_grad[0]:
            g_x = torch.fft.irfft(g_spec * h.conj(), n=n_fft)[..., :n]
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            f = n_fft // 2 + 1
            c = torch.full((f,), 2.0 / n_fft, dtype=x.dtype, device=x.device)
            c[0] = 1.0 / n_fft
            if n_fft % 2 == 0:
                c[-1] = 1.0 / n_fft
            m = max(b.shape[-1], a.shape[-1])
            omega = torch.arange(f, dtype=x.dtype, device=x.device) * (2.0 * math.pi / n_fft)
            phase = omega[:, None] * torch.arange(m, dtype=x.dtype, device=x.device)  # (F, M)
            cos, sin = torch.cos(phase), torch.sin(phase)
            a_pad = torch.nn.functional.pad(a, (0, m - a.shape[-1]))
            ar, ai = a_pad @ cos.T, a_pad @ sin.T  # A = ar − i·ai
            r = (ar * ar).addcmul_(ai, ai).reciprocal_().mul_(c)  # c/|A|², real
            inv_a = torch.complex(ar.mul_(r), ai.mul_(r))  # c/A = c·conj(A)/|A|² (real ops: no complex division)
            v = torch.conj_physical(g_spec).mul_(spec).mul_(inv_a)  # W / A
            if ctx.needs_input_grad[1]:  # Re Σ_k V_k e^{−iω_k j} = Vr·cos + Vi·sin
                vr = torch.view_as_real(v)
                g_b = (vr[..., 0] @ cos + vr[..., 1] @ sin)[:, : b.shape[-1]]
            if ctx.needs_input_grad[2]:
                ur = torch.view_as_real(v.mul_(h))
                g_a = -(ur[..., 0] @ cos + ur[..., 1] @ sin)[:, : a.shape[-1]]
        return g_x, g_b, g_a, None


def freq_response(b: torch.Tensor, a: torch.Tensor, n_fft: int) -> torch.Tensor:
    """H(e^{jω}) = Σ b_k e^{−jωk} / Σ a_k e^{−jωk} on the n_fft//2 + 1 rFFT bins; b, a (B, M) -> (B, n_fft//2 + 1).

    Evaluated as a small matmul with the (M, F) table of e^{−jωk} (cheaper than rFFTs of zero-padded coefficients).
    """
    m = max(b.shape[-1], a.shape[-1])
    omega = torch.arange(n_fft // 2 + 1, dtype=b.dtype, device=b.device) * (2.0 * math.pi / n_fft)
    k = torch.arange(m, dtype=b.dtype, device=b.device)[:, None]
    phase = omega[None, :] * k  # (M, F)
    cos, sin = torch.cos(phase), torch.sin(phase)
    b = torch.nn.functional.pad(b, (0, m - b.shape[-1]))
    a = torch.nn.functional.pad(a, (0, m - a.shape[-1]))
    return torch.complex(b @ cos, -(b @ sin)) / torch.complex(a @ cos, -(a @ sin))


def fft_size(n: int) -> int:
    """Smallest 2^i·3^j·5^k ≥ n (sizes pocketfft and cuFFT handle fast)."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best
