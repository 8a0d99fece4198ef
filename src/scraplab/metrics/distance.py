"""Distances between two audio files or two folders of paired files: JTFS (exact or SCRAPL estimate) and MSS.

The JTFS distance of a pair is the mean over all P paths of the per-path distance d_p of
:class:`scraplab.losses.SCRAPLLoss` (``scaling="norm"``: ‖ΔS_p‖₂, optionally after ρ = log1p) — what
``SCRAPLLoss.full`` returns for one pair. With K < P paths drawn uniformly *without replacement* the path mean is an
unbiased estimate of it, and its standard error, with the finite-population correction, is

    SE = sqrt(s² / K · (1 − K / P)),   s² = the sample variance (divisor K − 1) of the K path distances,

so K = P gives SE = 0 and the exact value; K = 1 has no SE (NaN). Every pair uses the same K paths, so a batch of
pairs is one ``JTFS.forward_paths`` call, and the mean over pairs has an SE of the same form (computed on the
pair-averaged path distances).

The interval estimate ± 1.96·SE is a normal approximation. Per-path distances are skewed for tonal sounds, and at
small K it then covers less than 95 %: 200 repetitions on a pair of decaying tones (J=8, P=195, 4096 samples;
``experiments/distance_se_coverage.py``) gave 75.0 / 88.0 / 92.5 / 94.0 % at K = 4 / 16 / 32 / 64, on a pair of
decaying noises 88.5 / 92.5 / 92.0 / 94.0 % (± 1.5 % binomial noise; ``tests/test_distance.py`` asserts 90–99 % at
K = 32 and 97). E[SE²] equals the estimate's variance at every K ≥ 2 (tested at K = 8 and 97).

On a CPU, batches of more than one pair cost more per pair at 1 s / 44.1 kHz (same compute, more time in the kernel
allocating large buffers), so the CLI scores one pair per JTFS call by default; ``batch_size`` is for GPUs and short
signals.

Library use::

    from scraplab.metrics.distance import compare
    result = compare("targets/", "matches/", paths=16, seed=0)   # dict, see :func:`compare`
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import soundfile as sf
import torch

from ..data.wav_folder import list_audio, load_audio
from ..losses.scrapl import SCRAPLLoss, path_distance
from .audio import MSSDistances

PathCount = Union[None, str, int]  # None / "all" → every path; int K → K random paths


@dataclass
class JTFSSettings:
    """JTFS metric settings (defaults: the granular/paper ones, P = 315 second-order paths)."""

    J: int = 12
    Q: tuple = (8, 2)
    J_fr: int = 3
    Q_fr: int = 2
    T: Optional[int] = None
    F: Optional[int] = None
    log1p: bool = False
    scaling: str = "norm"
    first_order: bool = False

    def build(self, n_samples: int) -> SCRAPLLoss:
        """The loss whose per-path distance defines the metric, for signals of ``n_samples`` samples."""
        try:
            return SCRAPLLoss(shape=int(n_samples), J=self.J, Q=tuple(self.Q), J_fr=self.J_fr, Q_fr=self.Q_fr,
                              T=self.T, F=self.F, first_order=self.first_order, scaling=self.scaling,
                              log1p=self.log1p)
        except ValueError as err:
            raise ValueError(f"invalid JTFS settings for {n_samples}-sample signals ({self}): {err}") from err


def path_estimate(d: torch.Tensor, n_paths: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard error of a path mean from K paths drawn uniformly without replacement out of P.

    Args:
        d: (..., K) per-path distances of the drawn paths (distinct paths).
        n_paths: P, the population size.
    Returns:
        (estimate, se), each of shape (...): SE is 0 for K = P and NaN for K = 1 (no variance estimate).
    """
    k = d.shape[-1]
    if not 1 <= k <= n_paths:
        raise ValueError(f"need 1 <= K <= P, got K={k}, P={n_paths}")
    est = d.mean(-1)
    if k == n_paths:
        return est, torch.zeros_like(est)
    if k == 1:
        return est, torch.full_like(est, float("nan"))
    var = d.var(-1, correction=1)
    return est, torch.sqrt(var / k * (1.0 - k / n_paths))


def draw_paths(n_paths: int, k: int, seed: int = 0) -> list[int]:
    """K distinct path indices, uniform without replacement, from a private generator (sorted, for readability)."""
    if not 1 <= k <= n_paths:
        raise ValueError(f"number of paths must be in [1, {n_paths}], got {k}")
    gen = torch.Generator().manual_seed(int(seed))
    return sorted(torch.randperm(n_paths, generator=gen)[:k].tolist())


def resolve_paths(n_paths: int, paths: PathCount, seed: int = 0) -> list[int]:
    """``None``/``"all"`` → ``range(P)``; an int K (or its string) → :func:`draw_paths` (K = P is all paths)."""
    if paths is None or paths == "all":
        return list(range(n_paths))
    try:
        k = int(paths)
    except (TypeError, ValueError):
        raise ValueError(f"paths must be 'all' or a positive integer, got {paths!r}") from None
    return list(range(n_paths)) if k == n_paths else draw_paths(n_paths, k, seed)


def pair_files(a: Union[str, Path], b: Union[str, Path]) -> list[tuple[Path, Path, str]]:
    """Pairs ``(file_a, file_b, name)``: two files → one pair; two folders → files paired by relative path without
    extension (``x/kick.wav`` ↔ ``x/kick.flac``). Raises ValueError naming unpaired or ambiguous files."""
    a, b = Path(a).expanduser(), Path(b).expanduser()
    for p in (a, b):
        if not p.exists():
            raise FileNotFoundError(f"audio path {p} does not exist")
    if a.is_file() and b.is_file():
        return [(a, b, a.name if a.name == b.name else f"{a.name} | {b.name}")]
    if a.is_file() != b.is_file():
        raise ValueError(f"compare two files or two folders, not a file and a folder: {a}, {b}")
    keyed = []
    for root in (a, b):
        files = {}
        for f in list_audio(root):
            key = f.relative_to(root).with_suffix("").as_posix()
            if key in files:
                raise ValueError(f"ambiguous pairing in {root}: {files[key]} and {f} have the same name")
            files[key] = f
        keyed.append(files)
    only_a = sorted(set(keyed[0]) - set(keyed[1]))
    only_b = sorted(set(keyed[1]) - set(keyed[0]))
    if only_a or only_b:
        msg = [f"unpaired files between {a} and {b}:"]
        msg += [f"  only in {a}: {keyed[0][k]}" for k in only_a]
        msg += [f"  only in {b}: {keyed[1][k]}" for k in only_b]
        raise ValueError("\n".join(msg))
    return [(keyed[0][k], keyed[1][k], k) for k in sorted(keyed[0])]


def default_format(files: Sequence[Path], sample_rate: Optional[int] = None) -> tuple[int, int]:
    """(sample rate, n_samples): the given rate or the first file's; the longest file's length at that rate."""
    infos = []
    for f in files:
        try:
            infos.append(sf.info(str(f)))
        except Exception as err:  # soundfile raises several types
            raise ValueError(f"cannot read audio file {f}: {err}") from err
    sr = int(sample_rate) if sample_rate else int(infos[0].samplerate)
    n = max(math.ceil(i.frames * sr / i.samplerate) for i in infos)
    if n < 1:
        raise ValueError(f"all audio files are empty: {[str(f) for f in files]}")
    return sr, n


@torch.no_grad()
def path_distances(loss: SCRAPLLoss, x_hat: torch.Tensor, x: torch.Tensor, paths: Sequence[int]) -> torch.Tensor:
    """Per-pair, per-path distances d (B, K) of ``x_hat``, ``x`` (B, N): one ``forward_paths`` call on both sides."""
    if x_hat.shape != x.shape or x.dim() != 2:
        raise ValueError(f"x_hat {tuple(x_hat.shape)} and x {tuple(x.shape)} must be equal (B, N)")
    S = loss.jtfs.forward_paths(torch.cat([x_hat, x]), paths)
    if loss.log1p:
        S = torch.log1p(S / loss.log1p_eps)
    S_hat, S = S.chunk(2)
    return path_distance(S_hat, S, loss.scaling, loss.n_paths)


@dataclass
class Scores:
    """Per-pair results: ``jtfs``/``jtfs_se`` (M,), ``path_d`` (M, K), ``mss`` {name: (M,)}."""

    paths: list
    n_paths: int
    path_d: torch.Tensor
    jtfs: torch.Tensor
    jtfs_se: torch.Tensor
    mss: dict = field(default_factory=dict)


def score(x_hat: torch.Tensor, x: torch.Tensor, loss: SCRAPLLoss, paths: Sequence[int],
          mss: Optional[MSSDistances] = None, batch_size: int = 1) -> Scores:
    """JTFS (over ``paths``) and MSS distances of M pairs ``x_hat``, ``x`` (M, N), batch by batch."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    d, m = [], {}
    for start in range(0, x.shape[0], batch_size):
        xh, xt = x_hat[start:start + batch_size], x[start:start + batch_size]
        d.append(path_distances(loss, xh, xt, paths))
        if mss is not None:
            for name, v in mss(xh.unsqueeze(1), xt.unsqueeze(1)).items():
                m.setdefault(name, []).append(v)
    path_d = torch.cat(d)
    est, se = path_estimate(path_d, loss.n_paths)
    return Scores(list(paths), loss.n_paths, path_d, est, se, {k: torch.cat(v) for k, v in m.items()})


def _num(v: float) -> Optional[float]:
    return None if math.isnan(v) else float(v)


def compare(a: Union[str, Path], b: Union[str, Path], paths: PathCount = "all", seed: int = 0,
            settings: Optional[JTFSSettings] = None, sample_rate: Optional[int] = None,
            n_samples: Optional[int] = None, batch_size: int = 1, mss: bool = True) -> dict:
    """Distances between two files or two folders of paired files (see :func:`pair_files`).

    Audio: mono, resampled to ``sample_rate`` (default: the first file's), padded/cropped to ``n_samples`` (default:
    the longest file). ``paths``: ``"all"`` (exact) or K random paths drawn with ``seed``, shared by every pair.
    Returns a JSON-ready dict: ``settings``, ``jtfs`` (P, K, exact, the path indices), ``pairs`` (per pair: names,
    ``jtfs``, ``jtfs_se`` — None when K = 1 — and the MSS distances) and ``mean`` (over pairs, same keys).
    """
    settings = settings or JTFSSettings()
    pairs = pair_files(a, b)
    files = [f for pa, pb, _ in pairs for f in (pa, pb)]
    sr, n = default_format(files, sample_rate)
    n = int(n_samples) if n_samples else n
    loss = settings.build(n)
    idx = resolve_paths(loss.n_paths, paths, seed)
    x = torch.cat([load_audio(pa, sr, n) for pa, _, _ in pairs])  # (M, N); WavLoadError names a bad file
    x_hat = torch.cat([load_audio(pb, sr, n) for _, pb, _ in pairs])
    s = score(x_hat, x, loss, idx, MSSDistances() if mss else None, batch_size)
    mean_est, mean_se = path_estimate(s.path_d.mean(0), loss.n_paths)
    rows = []
    for i, (pa, pb, name) in enumerate(pairs):
        row = {"name": name, "a": str(pa), "b": str(pb), "jtfs": float(s.jtfs[i]), "jtfs_se": _num(float(s.jtfs_se[i]))}
        row.update({k: float(v[i]) for k, v in s.mss.items()})
        rows.append(row)
    mean = {"jtfs": float(mean_est), "jtfs_se": _num(float(mean_se))}
    mean.update({k: float(v.mean()) for k, v in s.mss.items()})
    return {"a": str(a), "b": str(b), "sample_rate": sr, "n_samples": n,
            "settings": {**asdict(settings), "Q": list(settings.Q)},
            "jtfs": {"n_paths": loss.n_paths, "k": len(idx), "exact": len(idx) == loss.n_paths, "seed": int(seed),
                     "paths": idx},
            "pairs": rows, "mean": mean}


__all__ = ["JTFSSettings", "Scores", "compare", "draw_paths", "pair_files", "path_distances", "path_estimate",
           "resolve_paths", "score"]
