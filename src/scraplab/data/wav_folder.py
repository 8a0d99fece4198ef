"""A user's folder of one-shot WAV files as training targets (``data=wav_folder data.path=DIR``).

Every file is read with soundfile, down-mixed to mono (channel mean), resampled to the synth's rate in plain torch
(windowed-sinc polyphase, :func:`resample`), then right-zero-padded or cropped to the synth's length. Files are loaded
once into memory (one-shots are short). Unreadable, empty or non-finite files raise one :class:`WavLoadError` naming
every such file, or are skipped with a warning (``on_bad_file="skip"``, config ``data.on_bad_file``).
"""
from __future__ import annotations

import math
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

AUDIO_EXTENSIONS = (".wav", ".flac", ".aif", ".aiff", ".ogg")
BAD_FILE_POLICIES = ("error", "skip")  # an unreadable, empty or non-finite file stops the run, or is left out


class WavLoadError(RuntimeError):
    """An audio file could not be read; the message names the file."""


ZEROS, ROLLOFF = 24, 0.945


def resample_half_width(orig_sr: int, new_sr: int, zeros: int = ZEROS, rolloff: float = ROLLOFF) -> int:
    """Half-width in input samples of :func:`resample`'s kernel (0 when the rates are equal)."""
    if orig_sr == new_sr:
        return 0
    return math.ceil(zeros / (min(1.0, new_sr / orig_sr) * rolloff))


def resample(x: torch.Tensor, orig_sr: int, new_sr: int, zeros: int = ZEROS, rolloff: float = ROLLOFF) -> torch.Tensor:
    """Band-limited resampling of ``x (..., N)`` from ``orig_sr`` to ``new_sr`` Hz → ``(..., ceil(N·new/orig))``.

    Polyphase windowed-sinc: the rate ratio is reduced to up/down integers; output sample m sits at input time
    m·down/up and is a Hann-windowed sinc interpolation over ``zeros`` zero crossings of the lower Nyquist, scaled by
    ``rolloff`` to keep the transition band below it (anti-aliasing when downsampling).
    """
    if orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} and {new_sr}")
    if orig_sr == new_sr:
        return x
    ratio = Fraction(int(new_sr), int(orig_sr))
    up, down = ratio.numerator, ratio.denominator
    cutoff = min(1.0, up / down) * rolloff  # in units of the input Nyquist
    width = math.ceil(zeros / cutoff)  # half-width of the kernel in input samples
    n_in = x.shape[-1]
    n_out = math.ceil(n_in * up / down)
    # Phase p = (m·down mod up)/up for output m; one kernel per phase, shared by all outputs of that phase.
    phases = torch.arange(up, dtype=torch.float64) / up
    taps = torch.arange(-width, width + 1, dtype=torch.float64)
    t = taps[None, :] - phases[:, None]  # (up, 2w+1): input offset of each tap relative to the output time
    window = torch.where(t.abs() <= width, torch.cos(math.pi * t / (2 * width)) ** 2, torch.zeros_like(t))
    kernels = (cutoff * torch.sinc(cutoff * t) * window).to(x.dtype)
    m = torch.arange(n_out)
    base = (m * down) // up  # integer input index at or before output time
    phase = (m * down) % up
    idx = base[:, None] + taps.long()[None, :]  # (n_out, 2w+1)
    valid = (idx >= 0) & (idx < n_in)  # zeros outside the signal
    gathered = x[..., idx.clamp(0, n_in - 1)] * valid.to(x.dtype)
    return (gathered * kernels[phase]).sum(-1)


def fit_length(x: torch.Tensor, n_samples: int) -> torch.Tensor:
    """Right-zero-pad or crop ``x (..., N)`` to ``n_samples``."""
    if x.shape[-1] >= n_samples:
        return x[..., :n_samples]
    return torch.nn.functional.pad(x, (0, n_samples - x.shape[-1]))


def load_audio(path: str | Path, sample_rate: int, n_samples: int) -> torch.Tensor:
    """One file → mono ``(1, n_samples)`` float32 at ``sample_rate`` Hz. Raises :class:`WavLoadError` naming the file."""
    path = Path(path)
    try:
        sr = sf.info(str(path)).samplerate
        # Only the frames the first n_samples output samples depend on: the crop point plus the resampling kernel's
        # half-width (a 60 s stereo 48 kHz file no longer goes through the resampler whole). Same values as
        # resampling the whole file and cropping.
        frames = math.ceil(n_samples * sr / sample_rate) + resample_half_width(sr, sample_rate) + 1
        data, sr = sf.read(str(path), frames=frames, dtype="float32", always_2d=True)  # (frames, channels)
    except Exception as err:  # soundfile raises several types (LibsndfileError, RuntimeError, ...)
        raise WavLoadError(f"cannot read audio file {path}: {err}") from err
    if data.shape[0] == 0:
        raise WavLoadError(f"audio file {path} is empty (0 frames)")
    if not np.isfinite(data).all():
        raise WavLoadError(f"audio file {path} contains NaN or inf samples")
    mono = torch.from_numpy(data.mean(axis=1))  # stereo (or more) → mono by channel mean
    mono = resample(mono, int(sr), int(sample_rate))
    return fit_length(mono, n_samples).unsqueeze(0)


def list_audio(path: str | Path, extensions: Sequence[str] = AUDIO_EXTENSIONS) -> list[Path]:
    """Sorted audio files under ``path`` (recursive), or ``[path]`` for a single file."""
    path = Path(path).expanduser()
    if path.is_file():
        return [path]
    if not path.is_dir():
        hint = " (the real drum one-shots: run `make drums` first)" if path.name == "drums" else ""
        raise FileNotFoundError(f"audio path {path} does not exist{hint}")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
    if not files:
        raise FileNotFoundError(f"no audio files ({', '.join(extensions)}) found under {path}")
    return files


class WavFolderDataset(Dataset):
    """Target one-shots: rows ``{"audio": (1, n_samples), "seed": int64, "index": int64}``.

    ``seed`` (= ``seed_offset + index``) is only used to render the prediction x̂ = synth(θ̂, seed); with a synth
    whose ``max_shift`` is 0 it selects nothing but the synth's noise.
    """

    def __init__(self, files: Sequence[str | Path], sample_rate: int, n_samples: int, seed_offset: int = 0,
                 silence_threshold: float = 1e-6, on_bad_file: str = "error") -> None:
        if on_bad_file not in BAD_FILE_POLICIES:
            raise ValueError(f"data.on_bad_file must be one of {BAD_FILE_POLICIES}, got {on_bad_file!r}")
        files = [Path(f) for f in files]
        if not files:
            raise ValueError("WavFolderDataset needs at least one file")
        loaded, bad = [], []
        for f in files:  # read every file first, so that one message lists all the bad ones
            try:
                loaded.append((f, load_audio(f, sample_rate, n_samples)))
            except WavLoadError as err:
                bad.append(str(err))
        if bad and (on_bad_file == "error" or not loaded):
            hint = " (data.on_bad_file=skip trains on the others)" if loaded else ""
            raise WavLoadError(f"{len(bad)} of {len(files)} audio file(s) unusable{hint}: " + "; ".join(bad[:5])
                               + ("; ..." if len(bad) > 5 else ""))
        if bad:
            warnings.warn(f"skipping {len(bad)} unusable audio file(s): " + "; ".join(bad[:5]), stacklevel=2)
        self.skipped = len(bad)
        self.files = [f for f, _ in loaded]
        self.audio = torch.stack([a for _, a in loaded])  # (M, 1, N)
        silent = [str(f) for f, a in zip(self.files, self.audio) if float(a.abs().max()) < silence_threshold]
        if silent:  # keep them (a silent target is legal) but say so: nothing can be matched there
            warnings.warn(f"{len(silent)} silent file(s) in the data, e.g. {silent[0]}", stacklevel=2)
        self.seed = torch.arange(len(self.files)) + seed_offset

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"audio": self.audio[i], "seed": self.seed[i], "index": torch.tensor(i)}
