"""Per-frame perceptual features and transient/decay errors for the TR-808 evaluation (paper §4.4, Tables 8–9,
after Shier et al. 2024; digest ``paper_and_package.md`` §2.6). Plain torch, batched, no torchaudio.

Frames: 2048 samples, hop 512, no centring (frame 0 covers samples 0–2047). **Transient** = frames 0–1, **decay** =
frames 2–65 (64 frames, fewer if the signal is shorter). Exact definitions (per signal, per frame t):

* ``loudness`` (LU, i.e. dB re full scale on the LKFS scale): the signal is K-weighted (ITU-R BS.1770-4: high shelf
  +4 dB above ≈1.68 kHz, then a ≈38 Hz high-pass; both biquads re-derived for any sample rate from their analogue
  design values, see :func:`k_weighting_coefficients`), then ``L_t = −0.691 + 10·log10(mean(y_t²) + 1e-12)``. A
  full-scale 997 Hz / 1 kHz sine reads −3.01 LKFS. Single channel (G = 1), ungated.
* ``centroid`` (semitones, MIDI scale 69 + 12·log2(c/440 Hz)): ``c = Σ f_k |X_k| / Σ |X_k|`` of the flat-top-windowed
  frame (periodic flat-top as the authors), clamped below at one bin (sr/2048 Hz) so silence stays finite. The
  authors' "kazazis" perceptual scaling could not be verified from any source available here; the log-frequency
  (pitch-like) scale is the scaling we can justify (the ear resolves centroid changes roughly by ratio), so the
  absolute numbers are **not** comparable with Tables 8–9, only the protocol is. ``centroid_scale="hz"`` gives Hz.
* ``flatness`` (ratio in [0, 1]): geometric over arithmetic mean of the power spectrum ``|X_k|² + 1e-10`` of the same
  flat-top-windowed frame (white noise ≈ 0.56, a pure tone ≈ 0).
* Loudness weighting (``weighting="loudness"``, default, the paper's "loudness-weighted" variants): spectral features
  are multiplied by ``w_t = max(L_t + 70, 0) / 70``, i.e. the frame's loudness above the BS.1770 absolute gate
  (−70 LKFS), normalised to ≈1 at full scale. The authors weight by "loudness − min"; we take the gate as the minimum
  so that the weight does not depend on how silent the quietest frame happens to be. ``weighting="none"`` disables it.
* ``temporal_centroid`` (ms): energy centroid ``Σ t·x_t² / Σ x_t²`` over the first 125 ms (5512 samples at 44.1 kHz);
  plain time scale (the authors' "schlauch" scaling is not reproduced).

:func:`transient_decay_errors` returns, per example, the L1 error (mean over the frames of the window of
|feature(x̂) − feature(x)|) for each feature and window, plus the absolute temporal-centroid difference.
"""
from __future__ import annotations

import math

import torch
from scipy.signal import windows as sp_windows

FRAME, HOP = 2048, 512
N_TRANSIENT, N_DECAY = 2, 64
ABS_GATE_LKFS = -70.0
_K_SHELF = dict(gain_db=3.999843853973347, q=0.7071752369554196, fc=1681.974450955533)
_K_HIGHPASS = dict(q=0.5003270373238773, fc=38.13547087602444)


def k_weighting_coefficients(sr: float) -> tuple[tuple[list[float], list[float]], tuple[list[float], list[float]]]:
    """BS.1770-4 K-weighting biquads ``((b_shelf, a_shelf), (b_hp, a_hp))`` for sample rate ``sr`` (float64 lists).

    Bilinear-transform designs from the analogue prototype values that reproduce the standard's 48 kHz table
    (shelf: b = [1.53512485958697, −2.69169618940638, 1.19839281085285], a = [1, −1.69065929318241, 0.73248077421585];
    high-pass: b = [1, −2, 1], a = [1, −1.99004745483398, 0.99007225036621]) to ~1e-9.
    """
    if not sr > 0:
        raise ValueError(f"sample rate must be positive, got {sr}")
    k = math.tan(math.pi * _K_SHELF["fc"] / sr)
    q = _K_SHELF["q"]
    vh = 10.0 ** (_K_SHELF["gain_db"] / 20.0)
    vb = vh ** 0.4996667741545416
    a0 = 1.0 + k / q + k * k
    shelf = ([(vh + vb * k / q + k * k) / a0, 2.0 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0],
             [1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0])
    k = math.tan(math.pi * _K_HIGHPASS["fc"] / sr)
    q = _K_HIGHPASS["q"]
    a0 = 1.0 + k / q + k * k
    highpass = ([1.0, -2.0, 1.0], [1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0])
    return shelf, highpass


def k_weighting_response(sr: float, n_fft: int) -> torch.Tensor:
    """Complex frequency response of the K-weighting cascade on the ``n_fft//2 + 1`` rfft bins, complex128."""
    w = 2.0 * math.pi * torch.arange(n_fft // 2 + 1, dtype=torch.float64) / n_fft
    z1 = torch.exp(-1j * w)  # z^-1 on the unit circle
    h = torch.ones_like(z1)
    for b, a in k_weighting_coefficients(sr):
        num = b[0] + b[1] * z1 + b[2] * z1 * z1
        den = a[0] + a[1] * z1 + a[2] * z1 * z1
        h = h * num / den
    return h


def _as_bn(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    if x.dim() == 3:
        if x.shape[1] != 1:
            raise ValueError(f"{name} must be mono (B, 1, N) or (B, N), got {tuple(x.shape)}")
        x = x[:, 0]
    if x.dim() != 2:
        raise ValueError(f"{name} must be (B, N) or (B, 1, N), got {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise ValueError(f"{name} must be a float tensor, got {x.dtype}")
    return x


def k_weight(x: torch.Tensor, sr: float) -> torch.Tensor:
    """Apply the K-weighting IIR cascade (zero initial state) to ``x`` (B, N) → (B, N).

    Implemented as frequency sampling of the exact IIR response on an FFT grid padded by ≥ 1 s of zeros: this equals
    ``scipy.signal.lfilter`` up to the impulse-response tail beyond the padding (< 1e-12 relative for ≥ 8 kHz).
    Computed in float64 when the input is float64, else in float32.
    """
    x = _as_bn(x)
    n = x.shape[-1]
    n_fft = 1 << (n + max(int(sr), 4096) - 1).bit_length()
    h = k_weighting_response(sr, n_fft)
    h = h.to(torch.complex128 if x.dtype == torch.float64 else torch.complex64).to(x.device)
    return torch.fft.irfft(torch.fft.rfft(x, n=n_fft) * h, n=n_fft)[..., :n]


def frames(x: torch.Tensor, frame: int = FRAME, hop: int = HOP) -> torch.Tensor:
    """(B, N) → (B, T, frame) with T = 1 + (N − frame) // hop (no centring, no padding)."""
    x = _as_bn(x)
    if x.shape[-1] < frame:
        raise ValueError(f"signal of {x.shape[-1]} samples is shorter than one frame ({frame})")
    return x.unfold(-1, frame, hop)


def frame_loudness(x: torch.Tensor, sr: float, frame: int = FRAME, hop: int = HOP) -> torch.Tensor:
    """Momentary K-weighted loudness per frame in LKFS: (B, N) → (B, T)."""
    ms = frames(k_weight(x, sr), frame, hop).square().mean(-1)
    return -0.691 + 10.0 * torch.log10(ms + 1e-12)


def _spectra(x: torch.Tensor, frame: int, hop: int) -> torch.Tensor:
    fr = frames(x, frame, hop)
    win = torch.as_tensor(sp_windows.flattop(frame, sym=False), dtype=fr.dtype, device=fr.device)
    return torch.fft.rfft(fr * win, dim=-1).abs()  # (B, T, frame//2 + 1)


def spectral_centroid(x: torch.Tensor, sr: float, scale: str = "midi", frame: int = FRAME,
                      hop: int = HOP) -> torch.Tensor:
    """Magnitude-weighted mean frequency per frame: (B, N) → (B, T), in semitones (``"midi"``) or Hz (``"hz"``)."""
    if scale not in ("midi", "hz"):
        raise ValueError(f"centroid scale must be 'midi' or 'hz', got {scale!r}")
    mag = _spectra(x, frame, hop)
    freqs = torch.arange(mag.shape[-1], dtype=mag.dtype, device=mag.device) * (sr / frame)
    c = (mag * freqs).sum(-1) / mag.sum(-1).clamp_min(torch.finfo(mag.dtype).tiny)
    c = c.clamp_min(sr / frame)
    return c if scale == "hz" else 69.0 + 12.0 * torch.log2(c / 440.0)


def spectral_flatness(x: torch.Tensor, frame: int = FRAME, hop: int = HOP) -> torch.Tensor:
    """Geometric / arithmetic mean of the power spectrum per frame: (B, N) → (B, T), in [0, 1]."""
    power = _spectra(x, frame, hop).square() + 1e-10
    return torch.exp(torch.log(power).mean(-1)) / power.mean(-1)


def temporal_centroid(x: torch.Tensor, sr: float, duration_s: float = 0.125) -> torch.Tensor:
    """Energy centroid of the first ``duration_s`` seconds in ms: (B, N) → (B,); 0 for silence."""
    x = _as_bn(x)
    n = min(x.shape[-1], max(1, int(round(duration_s * sr))))
    e = x[:, :n].square()
    t_ms = torch.arange(n, dtype=x.dtype, device=x.device) * (1000.0 / sr)
    return (e * t_ms).sum(-1) / e.sum(-1).clamp_min(torch.finfo(x.dtype).tiny)


def frame_features(x: torch.Tensor, sr: float, weighting: str = "loudness", centroid_scale: str = "midi",
                   frame: int = FRAME, hop: int = HOP) -> dict[str, torch.Tensor]:
    """``{"loudness", "centroid", "flatness"}`` each (B, T), with the spectral ones loudness-weighted by default."""
    if weighting not in ("loudness", "none"):
        raise ValueError(f"weighting must be 'loudness' or 'none', got {weighting!r}")
    x = _as_bn(x)
    loud = frame_loudness(x, sr, frame, hop)
    cen = spectral_centroid(x, sr, centroid_scale, frame, hop)
    flat = spectral_flatness(x, frame, hop)
    if weighting == "loudness":
        w = (loud - ABS_GATE_LKFS).clamp_min(0.0) / -ABS_GATE_LKFS
        cen, flat = cen * w, flat * w
    return {"loudness": loud, "centroid": cen, "flatness": flat}


def transient_decay_errors(x_hat: torch.Tensor, x: torch.Tensor, sr: float, weighting: str = "loudness",
                           centroid_scale: str = "midi", frame: int = FRAME, hop: int = HOP,
                           n_transient: int = N_TRANSIENT, n_decay: int = N_DECAY) -> dict[str, torch.Tensor]:
    """Per-example feature L1 errors (paper Tables 8–9). ``x_hat``, ``x``: (B, N) or (B, 1, N), same shape.

    Returns ``{"<feature>_transient", "<feature>_decay"}`` for loudness / centroid / flatness, each (B,) = mean over
    frames [0, n_transient) resp. [n_transient, n_transient + n_decay) of |f(x̂) − f(x)|, plus
    ``"temporal_centroid"`` (B,) in ms. Needs at least n_transient + 1 frames.
    """
    x_hat, x = _as_bn(x_hat, "x_hat"), _as_bn(x, "x")
    if x_hat.shape != x.shape:
        raise ValueError(f"x_hat {tuple(x_hat.shape)} and x {tuple(x.shape)} must have the same shape")
    n_frames = 1 + (x.shape[-1] - frame) // hop if x.shape[-1] >= frame else 0
    if n_frames < n_transient + 1:
        raise ValueError(f"{x.shape[-1]} samples give {n_frames} frames of {frame}/{hop}; the transient/decay split "
                         f"needs at least {n_transient + 1}")
    f_hat = frame_features(x_hat, sr, weighting, centroid_scale, frame, hop)
    f = frame_features(x, sr, weighting, centroid_scale, frame, hop)
    out = {}
    for name in ("loudness", "centroid", "flatness"):
        err = (f_hat[name] - f[name]).abs()
        out[f"{name}_transient"] = err[:, :n_transient].mean(-1)
        out[f"{name}_decay"] = err[:, n_transient:n_transient + n_decay].mean(-1)
    out["temporal_centroid"] = (temporal_centroid(x_hat, sr) - temporal_centroid(x, sr)).abs()
    return out
