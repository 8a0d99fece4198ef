"""Lightning data modules: synthetic θ targets (:class:`SynthDataModule`) and WAV one-shots (:class:`WavDataModule`).

Both are built for a synth (``n_params``, ``synth_sample_rate``, ``n_samples`` are supplied by the app; see
:func:`build_datamodule`). Training batches are shuffled by :class:`EpochShuffle`, a permutation that is a pure
function of (seed, epoch), so a resumed run sees the same batches as an uninterrupted one: the training loader is a
:class:`ResumableLoader`, whose state (saved in Lightning checkpoints) is the number of batches of the current epoch
already trained on, which a run resumed mid-epoch skips.
Validation and test loaders never shuffle (the selection metric must be deterministic).

Multi-process (DDP) training: the training loader's sampler is a :class:`GlobalBatchShard`, which hands rank r the
positions r, r + W, r + 2W, … of the one-process row order (W ranks), so that W ranks with batch B train on exactly the
global batches of W·B rows that one process with batch W·B sees. It is a ``DistributedSampler``, so Lightning keeps it;
Lightning otherwise replaces any training sampler by its own ``DistributedSampler(shuffle=True)``, which reorders the
rows with its own seed (the loader's order, shuffled or not, is lost).
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Iterator, Sequence

import lightning as L
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from scraplab.data.synthetic import SPLITS, grid_splits, uniform_splits
from scraplab.data.wav_folder import BAD_FILE_POLICIES, WavFolderDataset, list_audio

REGIMES = ("micro", "meso")


class EpochShuffle(Sampler[int]):
    """Permutation of ``range(n)`` drawn from ``seed + epoch``; Lightning calls :meth:`set_epoch` every epoch."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed, self.epoch = int(n), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=gen).tolist())

    def __len__(self) -> int:
        return self.n


class GlobalBatchShard(DistributedSampler):
    """One rank's share of a global row order: with W ranks, rank r yields positions r, r + W, r + 2W, … of ``order``
    (an :class:`EpochShuffle`, or ``range(n)`` when None), so per-rank batches of B rows make up, step by step, the
    global batches of W·B rows of one process (batch mean then DDP gradient averaging = the global batch mean).

    With ``drop_last`` the order is cut to a multiple of W·B rows (the one-process loader with batch W·B drops the same
    rows; skipped when fewer than W·B rows exist); without it, it is padded to a multiple of W by repeating its first
    rows, as ``DistributedSampler`` does (the last global batch then differs from the one-process one when n is not a
    multiple of W). World size and rank are read from ``torch.distributed`` when iterating (1 and 0 when it is not
    initialised), so the loader can be built before the processes are spawned; ``num_replicas``/``rank`` pin them.

    Being a ``DistributedSampler``, Lightning leaves it in place instead of injecting its own shuffled sampler.
    """

    def __init__(self, n: int, batch_size: int, order: Sampler[int] | None = None, drop_last: bool = False,
                 num_replicas: int | None = None, rank: int | None = None) -> None:
        # No DistributedSampler.__init__: it needs an initialised process group (resolved lazily here instead).
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if order is not None and len(order) != n:  # type: ignore[arg-type]
            raise ValueError(f"order has {len(order)} rows, expected {n}")  # type: ignore[arg-type]
        self.n, self.batch_size, self.order, self.drop_last = int(n), int(batch_size), order, bool(drop_last)
        self._num_replicas, self._rank = num_replicas, rank
        self.epoch = 0
        self.shuffle = order is not None
        self.seed = int(getattr(order, "seed", 0))
        self.resume_at: tuple[int, int] | None = None  # (epoch, rows): the next iteration of that epoch skips rows

    def _world(self) -> tuple[int, int]:
        if self._num_replicas is not None:
            world, rank = int(self._num_replicas), int(self._rank or 0)
        elif dist.is_available() and dist.is_initialized():
            world, rank = dist.get_world_size(), dist.get_rank()
        else:
            world, rank = 1, 0
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"invalid rank {rank} for world size {world}")
        return world, rank

    @property
    def num_replicas(self) -> int:  # type: ignore[override]
        return self._world()[0]

    @property
    def rank(self) -> int:  # type: ignore[override]
        return self._world()[1]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if self.order is not None and hasattr(self.order, "set_epoch"):
            self.order.set_epoch(epoch)

    def _total(self, world: int) -> int:
        """Rows of the (cut or padded) global order."""
        span = world * self.batch_size
        if self.drop_last and self.n >= span:
            return self.n // span * span
        return -(-self.n // world) * world

    def __iter__(self) -> Iterator[int]:
        world, rank = self._world()
        rows = list(self.order) if self.order is not None else list(range(self.n))
        total = self._total(world)
        while len(rows) < total:  # pad by repeating the start (DistributedSampler's rule)
            rows += rows[:total - len(rows)]
        mine = rows[:total][rank::world]
        resume, self.resume_at = self.resume_at, None
        # Only the epoch the state was saved in is resumed mid-way (the epoch is read here, at the first batch:
        # Lightning sets it after creating the loader's iterator).
        skip = resume[1] if resume is not None and resume[0] == self.epoch and 0 < resume[1] < len(mine) else 0
        return iter(mine[skip:])

    def __len__(self) -> int:
        world = self._world()[0]
        return self._total(world) // world


class ResumableLoader(DataLoader):
    """Training loader with Lightning's ``state_dict`` / ``load_state_dict`` interface: a checkpoint records the
    epoch and how many batches of it were trained on; loading it makes the next iteration of that epoch start after
    them (the row order is a pure function of seed and epoch, see :class:`EpochShuffle`), so a run resumed from a
    mid-epoch checkpoint trains on exactly the batches of an uninterrupted one.

    The count comes from the training module (:meth:`mark_trained`, called when batch ``i`` starts), not from the
    iterator: Lightning fetches one batch ahead, so the number of batches yielded is one more than the number used.
    The sampler must be a :class:`GlobalBatchShard`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.sampler, GlobalBatchShard):
            raise TypeError(f"ResumableLoader needs a GlobalBatchShard sampler, got {type(self.sampler).__name__}")
        self.trained = 0  # batches of the current epoch trained on (or being trained on); set by mark_trained
        self._pending: dict | None = None

    def mark_trained(self, batch_idx: int) -> None:
        """Batch ``batch_idx`` (0-based, within the epoch) is being trained on."""
        self.trained = int(batch_idx) + 1

    def state_dict(self) -> dict:
        return {"epoch": int(self.sampler.epoch), "batches": int(self.trained)}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict) or not {"epoch", "batches"} <= set(state):
            raise ValueError(f"not a ResumableLoader state: {state!r}")
        self._pending = {"epoch": int(state["epoch"]), "batches": int(state["batches"])}

    def __iter__(self):
        pending, self._pending = self._pending, None
        self.trained = 0
        if pending is not None:  # an epoch-end state (all batches trained) skips nothing (see GlobalBatchShard)
            self.sampler.resume_at = (pending["epoch"], pending["batches"] * self.batch_size)
        return super().__iter__()


class _BaseDataModule(L.LightningDataModule):
    def __init__(self, batch_size: int, num_workers: int, shuffle_seed: int, regime: str,
                 synth_sample_rate: int, sample_rate: int | None) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        if regime not in REGIMES:
            raise ValueError(f"data.regime must be one of {REGIMES}, got {regime!r}")
        if sample_rate is not None and int(sample_rate) != int(synth_sample_rate):
            raise ValueError(f"sample-rate mismatch: data.sample_rate={sample_rate} Hz but the synth renders at "
                             f"{synth_sample_rate} Hz (leave data.sample_rate null to follow the synth)")
        self.batch_size, self.num_workers, self.shuffle_seed = int(batch_size), int(num_workers), int(shuffle_seed)
        self.regime = regime
        self.sample_rate = int(synth_sample_rate)
        self.splits: dict[str, Dataset] = {}
        self.has_theta = True

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if not self.splits:
            self.setup()
        ds = self.splits[split]
        order = EpochShuffle(len(ds), self.shuffle_seed) if shuffle else None
        if split == "train":
            # Rank-aware: DDP ranks take interleaved shares of the one-process order (see GlobalBatchShard); drop_last
            # (shuffled training only, and only when the split gives a global batch) is applied by the sampler.
            shard = GlobalBatchShard(len(ds), self.batch_size, order, drop_last=shuffle)
            return ResumableLoader(ds, batch_size=self.batch_size, sampler=shard, drop_last=False,
                                   num_workers=self.num_workers, persistent_workers=self.num_workers > 0)
        sampler, drop = order, shuffle and len(ds) >= self.batch_size
        return DataLoader(ds, batch_size=self.batch_size, sampler=sampler, drop_last=drop,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


class SynthDataModule(_BaseDataModule):
    """(θ, seed) rows; the target audio is rendered by the synth in the training step.

    Args:
        n_params: synth parameter count U.
        synth_sample_rate: the synth's rate (only checked against ``sample_rate``).
        theta_sampling: ``grid`` (paper, 2-parameter synths), ``uniform`` or ``auto`` (grid for U ≤ 2, else uniform).
        n_per_axis, n_seeds_per_theta, fractions: grid settings (paper: 32, 5, 60/20/20).
        sizes: (train, val, test) rows for uniform sampling.
        split_seed: seed of the split (and of uniform θ); the same value gives the same splits.
        regime: ``micro`` (prediction rendered with the target's seed) or ``meso`` (with a fresh seed).
        batch_size, num_workers, shuffle_seed: loader settings.
        sample_rate: optional expected rate; a value different from the synth's fails at start-up.
    """

    def __init__(self, n_params: int, synth_sample_rate: int, theta_sampling: str = "auto", n_per_axis: int = 32,
                 n_seeds_per_theta: int = 5, fractions: Sequence[float] = (0.6, 0.2, 0.2),
                 sizes: Sequence[int] = (2048, 256, 256), split_seed: int = 0, regime: str = "meso",
                 batch_size: int = 32, num_workers: int = 0, shuffle_seed: int = 0,
                 sample_rate: int | None = None) -> None:
        super().__init__(batch_size, num_workers, shuffle_seed, regime, synth_sample_rate, sample_rate)
        if theta_sampling not in ("auto", "grid", "uniform"):
            raise ValueError(f"data.theta_sampling must be auto, grid or uniform, got {theta_sampling!r}")
        self.theta_sampling = ("grid" if n_params <= 2 else "uniform") if theta_sampling == "auto" else theta_sampling
        self.n_params = int(n_params)
        self.grid_kw = dict(n_per_axis=n_per_axis, n_seeds_per_theta=n_seeds_per_theta, fractions=tuple(fractions))
        self.sizes, self.split_seed = tuple(sizes), int(split_seed)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        if self.theta_sampling == "grid":
            self.splits = grid_splits(self.n_params, split_seed=self.split_seed, **self.grid_kw)
        else:
            self.splits = uniform_splits(self.n_params, self.sizes, split_seed=self.split_seed)


class WavDataModule(_BaseDataModule):
    """A folder of one-shots split into train/val/test (no ground-truth θ: the θ metrics are absent).

    Args:
        path: folder (searched recursively) or a single file. A folder holding ``train/``, ``val/`` and ``test/``
            subfolders (e.g. ``make drums``'s split by kit) is a fixed split: each subfolder is one split and
            ``fractions`` is not used.
        synth_sample_rate, n_samples: files are resampled and padded/cropped to these.
        fractions: split fractions over the sorted file list, shuffled with ``split_seed``; with fewer than 3 files
            every split reuses all files (a smoke-test convenience, announced by a warning).
        on_bad_file: ``error`` (one message listing every unusable file) or ``skip`` (warn and train on the rest).
    """

    def __init__(self, path: str, synth_sample_rate: int, n_samples: int, fractions: Sequence[float] = (0.6, 0.2, 0.2),
                 split_seed: int = 0, regime: str = "micro", batch_size: int = 8, num_workers: int = 0,
                 shuffle_seed: int = 0, sample_rate: int | None = None, on_bad_file: str = "error") -> None:
        super().__init__(batch_size, num_workers, shuffle_seed, regime, synth_sample_rate, sample_rate)
        if on_bad_file not in BAD_FILE_POLICIES:
            raise ValueError(f"data.on_bad_file must be one of {BAD_FILE_POLICIES}, got {on_bad_file!r}")
        self.on_bad_file = on_bad_file
        if not path:
            raise ValueError("data=wav_folder needs data.path=DIR (a folder of WAV one-shots)")
        self.path, self.n_samples, self.fractions, self.split_seed = Path(path), int(n_samples), fractions, split_seed
        # Fail at start-up on a missing or empty folder; train/ val/ test/ subfolders are a fixed split.
        fixed = self.path.is_dir() and all((self.path / s).is_dir() for s in SPLITS)
        self.split_files = {s: list_audio(self.path / s) for s in SPLITS} if fixed else None
        self.files = [f for s in SPLITS for f in self.split_files[s]] if fixed else list_audio(self.path)
        self.has_theta = False

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        if self.split_files is not None:  # fixed split by subfolder
            self.splits = {s: WavFolderDataset(f, self.sample_rate, self.n_samples, on_bad_file=self.on_bad_file)
                           for s, f in self.split_files.items()}
            return
        full = WavFolderDataset(self.files, self.sample_rate, self.n_samples, on_bad_file=self.on_bad_file)
        n = len(full)
        if n < 3:
            import warnings
            warnings.warn(f"only {n} file(s) under {self.path}: train, val and test all use them", stacklevel=2)
            self.splits = {s: full for s in SPLITS}
            return
        order = torch.randperm(n, generator=torch.Generator().manual_seed(int(self.split_seed))).tolist()
        n_train = max(1, round(n * self.fractions[0]))
        n_val = max(1, round(n * self.fractions[1]))
        n_train = min(n_train, n - 2)
        parts = [order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:]]
        if not parts[2]:
            parts[2] = parts[1]
        self.splits = {s: torch.utils.data.Subset(full, p) for s, p in zip(SPLITS, parts)}


def build_datamodule(factory: Any, synth: Any) -> _BaseDataModule:
    """Call a data config partial with what it needs from ``synth`` (by keyword name)."""
    target = getattr(factory, "func", factory)
    names = set(inspect.signature(target).parameters)
    supplied = {"n_params": synth.n_params, "synth_sample_rate": synth.sample_rate, "n_samples": synth.n_samples}
    return factory(**{k: v for k, v in supplied.items() if k in names})
