"""Synthetic θ datasets: the paper grid, splits without leakage, deterministic shuffling, start-up checks."""
import pytest
import torch

from scraplab.data.datamodule import EpochShuffle, SynthDataModule
from scraplab.data.synthetic import grid_splits, uniform_splits


def test_paper_grid_sizes_and_no_theta_combination_in_two_splits():
    splits = grid_splits(2, n_per_axis=32, n_seeds_per_theta=5, split_seed=0)
    sizes = {k: len(v) for k, v in splits.items()}
    assert sum(sizes.values()) == 5120
    assert sizes == {"train": 614 * 5, "val": 205 * 5, "test": 205 * 5}  # 60/20/20 of the 1024 combinations
    combos = {k: {tuple(t.tolist()) for t in v.theta} for k, v in splits.items()}
    assert not (combos["train"] & combos["val"]) and not (combos["train"] & combos["test"])
    assert not (combos["val"] & combos["test"])
    seeds = torch.cat([v.seed for v in splits.values()])
    assert seeds.unique().numel() == 5120  # one seed per row, never shared
    values = torch.cat([v.theta for v in splits.values()]).unique()
    assert torch.allclose(values, torch.linspace(0, 1, 34)[1:-1])  # 1/33 … 32/33 as in the paper


def test_split_is_a_function_of_split_seed():
    a, b, c = (grid_splits(2, 8, 2, split_seed=s) for s in (0, 0, 1))
    assert torch.equal(a["test"].theta, b["test"].theta)
    assert not torch.equal(a["test"].theta, c["test"].theta)


def test_uniform_splits_are_disjoint_in_seed_and_theta():
    s = uniform_splits(14, (64, 16, 16), split_seed=3)
    seeds = [set(v.seed.tolist()) for v in s.values()]
    assert all(not (seeds[i] & seeds[j]) for i in range(3) for j in range(i + 1, 3))
    assert s["train"].theta.shape == (64, 14) and float(s["train"].theta.min()) >= 0.0
    assert not torch.equal(s["val"].theta, s["test"].theta)


def test_epoch_shuffle_is_a_pure_function_of_seed_and_epoch():
    a, b = EpochShuffle(50, seed=1), EpochShuffle(50, seed=1)
    first = list(a)
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b) != first
    assert sorted(first) == list(range(50))


def test_datamodule_auto_sampling_and_deterministic_eval_loaders():
    dm = SynthDataModule(n_params=2, synth_sample_rate=8192, n_per_axis=4, n_seeds_per_theta=1, batch_size=2)
    assert dm.theta_sampling == "grid"
    batch = next(iter(dm.val_dataloader()))
    assert set(batch) == {"theta", "seed", "index"} and batch["theta"].shape == (2, 2)
    assert torch.equal(next(iter(dm.val_dataloader()))["seed"], batch["seed"])  # not shuffled
    assert SynthDataModule(n_params=14, synth_sample_rate=44100).theta_sampling == "uniform"


def test_sample_rate_mismatch_and_bad_values_fail_at_construction():
    with pytest.raises(ValueError, match="sample-rate mismatch.*16000.*8192"):
        SynthDataModule(n_params=2, synth_sample_rate=8192, sample_rate=16000)
    with pytest.raises(ValueError, match="regime"):
        SynthDataModule(n_params=2, synth_sample_rate=8192, regime="macro")
    with pytest.raises(ValueError, match="batch_size"):
        SynthDataModule(n_params=2, synth_sample_rate=8192, batch_size=0)
