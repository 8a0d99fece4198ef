"""Synthetic (θ, seed) datasets: targets are rendered by the synth itself, inside the training step.

* **Grid** (paper §4.2–4.3, after the authors' ``ThetaDSDataModule``): each of the U parameters takes
  ``n_per_axis`` values ``linspace(0, 1, n+2)[1:-1]`` (1/33 … 32/33 for the paper's 32), every combination is
  repeated with ``n_seeds_per_theta`` seeds (32×32×5 = 5120 rows for 2 parameters). Splits are drawn over θ
  *combinations* with a generator seeded by ``split_seed`` (60/20/20 by default), so no θ combination appears in two
  splits, and every row has its own seed.
* **Uniform**: θ ~ U[0, 1]^U, i.i.d. per row, for synths with many parameters (the TR-808's 14). Each split owns a
  disjoint seed range and its own θ stream, so no row (θ or seed) is shared between splits.

A row is ``{"theta": (U,) float32 in [0, 1], "seed": int64, "index": int64}``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch.utils.data import Dataset

SPLITS = ("train", "val", "test")


class ThetaSeedDataset(Dataset):
    """Rows of ``theta (M, U)`` and ``seed (M,)``."""

    def __init__(self, theta: torch.Tensor, seed: torch.Tensor) -> None:
        if theta.dim() != 2 or seed.shape != theta.shape[:1]:
            raise ValueError(f"theta must be (M, U) and seed (M,), got {tuple(theta.shape)} and {tuple(seed.shape)}")
        self.theta, self.seed = theta.float(), seed.long()

    def __len__(self) -> int:
        return self.theta.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"theta": self.theta[i], "seed": self.seed[i], "index": torch.tensor(i)}


def _split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {list(fractions)}")
    n_train, n_val = round(n * fractions[0]), round(n * fractions[1])
    counts = [n_train, n_val, n - n_train - n_val]
    if min(counts) < 1:
        raise ValueError(f"{n} items cannot be split {list(fractions)} with at least one item per split")
    return counts


def grid_splits(n_params: int, n_per_axis: int = 32, n_seeds_per_theta: int = 5,
                fractions: Sequence[float] = (0.6, 0.2, 0.2), split_seed: int = 0,
                seed_offset: int = 0) -> dict[str, ThetaSeedDataset]:
    """The paper's θ grid split by θ combination (no combination in two splits). Seeds are unique per row."""
    if n_per_axis < 1 or n_seeds_per_theta < 1:
        raise ValueError(f"n_per_axis and n_seeds_per_theta must be >= 1, got {n_per_axis}, {n_seeds_per_theta}")
    if n_per_axis ** n_params > 10_000_000:
        raise ValueError(f"a {n_per_axis}^{n_params} grid is too large; use theta_sampling='uniform' for this synth")
    axis = torch.linspace(0, 1, n_per_axis + 2)[1:-1]
    combos = torch.cartesian_prod(*[axis] * n_params).reshape(-1, n_params)  # (n_per_axis^U, U)
    order = torch.randperm(combos.shape[0], generator=torch.Generator().manual_seed(split_seed))
    counts = _split_counts(combos.shape[0], fractions)
    out, start = {}, 0
    for name, count in zip(SPLITS, counts):
        idx = order[start:start + count].sort().values
        theta = combos[idx].repeat_interleave(n_seeds_per_theta, dim=0)
        # Seed of a row = its global row number in the full grid (combination-major), so it is unique across splits.
        seed = (idx[:, None] * n_seeds_per_theta + torch.arange(n_seeds_per_theta)).reshape(-1) + seed_offset
        out[name] = ThetaSeedDataset(theta, seed)
        start += count
    return out


def uniform_splits(n_params: int, sizes: Sequence[int] = (2048, 256, 256), split_seed: int = 0,
                   seed_offset: int = 0) -> dict[str, ThetaSeedDataset]:
    """θ ~ U[0,1]^U per row; split k uses seeds ``seed_offset + [Σ_{j<k} n_j, Σ_{j≤k} n_j)`` and its own θ stream."""
    if len(sizes) != 3 or min(sizes) < 1:
        raise ValueError(f"sizes must be three positive counts (train, val, test), got {list(sizes)}")
    out, start = {}, seed_offset
    for k, (name, n) in enumerate(zip(SPLITS, sizes)):
        gen = torch.Generator().manual_seed(split_seed * 1000 + k)
        theta = torch.rand(int(n), n_params, generator=gen)
        out[name] = ThetaSeedDataset(theta, torch.arange(start, start + int(n)))
        start += int(n)
    return out
