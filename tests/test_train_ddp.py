"""Lightning DDP with SCRAPL: 2 CPU ranks (gloo, ``trainer=ddp_sim``, ddp_spawn) with per-rank batch B against one
process with batch 2B.

The DDP runs (slow: they spawn 2 processes) must (a) draw the same path on every rank at every step and feed the ranks
the rows of the one-process batch (rank r takes positions r, r + 2, … of it), (b) leave identical weights on both
ranks and (c) end with the weights of the one-process run: same rows per step, all-reduced (averaged) gradients, one
path-aware update.

Issue 6 (c was xfail, max |Δw| ≈ 0.1 after 3 𝒫-SAGA steps): Lightning replaces every training sampler that is not a
``DistributedSampler`` with its own ``DistributedSampler(shuffle=True)``, so the DDP ranks trained on other rows than
the one-process run (rank 0's first batch was rows [4, 7] instead of [0, 2]). The training loader's sampler is now
:class:`scraplab.data.datamodule.GlobalBatchShard`, which Lightning keeps.

Why (c) is checked in float64: with the granular grad_mult of 1e8 and 𝒫-Adam's ε = 1e-8 (inside the root), a gradient
entry near zero is amplified by grad_mult/√ε = 1e12 before it reaches the update. The conv bias of a block whose
pooled map keeps one sign over a batch has a gradient that is exactly zero (the PReLU acts linearly and the next
block's non-affine LayerNorm removes the shift), so float32 round-off (~1e-14, which depends on how the batch is split
and summed) becomes an update of up to ~lr·0.3. Measured on the float32 runs after the fix: gradients agree to ~1e-4
relative, weights to 1e-8 except those bias entries (max |Δw| 2.9e-3, cnn.blocks.3.conv.bias). In float64 the same
round-off is ~1e-22 and the whole run agrees to 1e-11 (measured 9e-12), so (c) uses atol 1e-8 there.
"""
import json
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from torch.utils.data import DataLoader, DistributedSampler

from scraplab.cli.build import build_all
from scraplab.data.datamodule import EpochShuffle, GlobalBatchShard, SynthDataModule
from train_helpers import tiny_cfg

STEPS, B = 3, 2
COMMON = ["loss=scrapl", "optim=p_saga", "optim.lr=1e-2", "sampler.seed=5", "encoder.dropout=0.0",
          "module.test_audio=null", f"trainer.max_steps={STEPS}", "trainer.limit_val_batches=0",
          "+trainer.enable_checkpointing=false"]


class Recorder(L.Callback):
    """Writes each rank's drawn paths, batch rows, all-reduced gradients and final encoder weights to ``out``."""

    def __init__(self, out: str) -> None:
        self.out, self.paths, self.rows, self.grads = out, [], [], []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.grads.append({k: p.grad.detach().clone() for k, p in pl_module.encoder.named_parameters()})

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.paths.append(list(pl_module._paths))
        self.rows.append(batch["index"].tolist())

    def on_train_end(self, trainer, pl_module) -> None:
        rank = trainer.global_rank
        Path(self.out, f"record_rank{rank}.json").write_text(json.dumps({"paths": self.paths, "rows": self.rows}))
        torch.save({"weights": {k: v.detach().cpu() for k, v in pl_module.encoder.state_dict().items()},
                    "grads": self.grads}, Path(self.out, f"tensors_rank{rank}.pt"))


def _fit(cfg, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(int(cfg.seed))  # same initial encoder weights in both runs (as train.py does)
    objs = build_all(cfg)
    objs["datamodule"].setup("fit")
    # unshuffled, so that the rows are easy to read; the sampler (GlobalBatchShard) gives rank r rows r, r + 2, …
    loader = objs["datamodule"]._loader("train", shuffle=False)
    trainer = instantiate(cfg.trainer, callbacks=[Recorder(str(out))], logger=False)
    trainer.fit(objs["module"], train_dataloaders=loader)


def _pair(tmp: Path, extra: list[str]) -> dict:
    """DDP (2 ranks, batch B) and one process (batch 2B); records of [ddp rank 0, ddp rank 1, one]."""
    ddp_cfg = tiny_cfg("granular", "scrapl", tmp / "ddp",
                       COMMON + extra + ["trainer=ddp_sim", "trainer.devices=2", "trainer.strategy=ddp_spawn",
                                         f"data.batch_size={B}"])
    one_cfg = tiny_cfg("granular", "scrapl", tmp / "one", COMMON + extra + [f"data.batch_size={2 * B}"])
    _fit(ddp_cfg, tmp / "ddp")
    _fit(one_cfg, tmp / "one")
    where = (("ddp", 0), ("ddp", 1), ("one", 0))
    records = [json.loads((tmp / d / f"record_rank{r}.json").read_text()) for d, r in where]
    tensors = [torch.load(tmp / d / f"tensors_rank{r}.pt", weights_only=True) for d, r in where]
    return {"paths": [x["paths"] for x in records], "rows": [x["rows"] for x in records],
            "weights": [t["weights"] for t in tensors], "grads": [t["grads"] for t in tensors], "one_cfg": one_cfg}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return _pair(tmp_path_factory.mktemp("ddp32"), [])


@pytest.fixture(scope="module")
def runs64(tmp_path_factory):
    return _pair(tmp_path_factory.mktemp("ddp64"), ["+trainer.precision=64-true"])


@pytest.mark.slow
def test_ddp_ranks_draw_the_same_paths_take_the_global_batch_rows_and_hold_one_state(runs):
    p0, p1, p_one = runs["paths"]
    assert len(p_one) == STEPS and p0 == p1 == p_one
    assert len({tuple(p) for p in p_one}) > 1  # the sampler did draw different paths over the steps
    r0, r1, r_one = runs["rows"]
    assert r_one == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]  # 10 training rows, batch 2B = 4, in order
    assert [a + b for a, b in zip(r0, r1)] != r_one  # the ranks interleave ...
    assert [sorted(a + b) for a, b in zip(r0, r1)] == r_one  # ... and make up the one-process batches
    assert r0[0] == [0, 2] and r1[0] == [1, 3]
    w0, w1, w_one = runs["weights"]
    for k in w_one:
        torch.testing.assert_close(w0[k], w1[k], rtol=0, atol=0)
    L.seed_everything(int(runs["one_cfg"].seed))
    init = build_all(runs["one_cfg"])["encoder"].state_dict()
    assert any(not torch.allclose(init[k], w_one[k]) for k in w_one)  # training moved the weights


@pytest.mark.slow
def test_ddp_all_reduced_gradients_equal_one_process_double_batch_float32(runs):
    g0, g1, g_one = runs["grads"]
    assert len(g_one) == len(g0) == STEPS
    for step in range(STEPS):
        for k in g_one[step]:
            assert torch.equal(g0[step][k], g1[step][k])  # all-reduced: one gradient on both ranks
    # First step only (same weights in both runs): float32 round-off of the batch split, measured ≤ 1e-4 per tensor;
    # the wrong rows of issue 6 gave O(1). Later steps start from weights that differ at the round-off-driven bias
    # entries described in the module docstring.
    for k, g in g_one[0].items():
        rel = float((g0[0][k] - g).norm() / g.norm().clamp_min(1e-30))
        assert rel < 1e-3, (k, rel)


@pytest.mark.slow
def test_ddp_weights_equal_one_process_double_batch(runs64):
    w0, w1, w_one = runs64["weights"]
    assert all(v.dtype == torch.float64 for v in w_one.values())
    moved = 0.0
    L.seed_everything(int(runs64["one_cfg"].seed))
    init = build_all(runs64["one_cfg"])["encoder"].state_dict()
    for k in w_one:
        torch.testing.assert_close(w0[k], w1[k], rtol=0, atol=0)
        torch.testing.assert_close(w0[k], w_one[k], rtol=0, atol=1e-8)  # measured max 9e-12
        moved = max(moved, float((w_one[k] - init[k].double()).abs().max()))
    assert moved > 1e-3  # the tolerance is far below what training moved


# ------------------------------------------------------------------------------------------ the sampler (fast)
def _batches(sampler, ds_len: int, batch: int) -> list[list[int]]:
    return [b.tolist() for b in DataLoader(range(ds_len), batch_size=batch, sampler=sampler)]


@pytest.mark.parametrize("n,shuffle", [(10, False), (10, True), (16, True), (11, True), (3, True)])
def test_rank_shards_make_up_the_one_process_batches(n, shuffle):
    world, b = 2, 2
    order = lambda: EpochShuffle(n, seed=4) if shuffle else None
    one = _batches(GlobalBatchShard(n, world * b, order(), drop_last=shuffle), n, world * b)
    ranks = [_batches(GlobalBatchShard(n, b, order(), drop_last=shuffle, num_replicas=world, rank=r), n, b)
             for r in range(world)]
    assert len(ranks[0]) == len(ranks[1]) == len(one)  # every rank runs the same number of steps (no DDP hang)
    assert len({len(x) for r in ranks for x in r[:-1]} | {b}) == 1  # full per-rank batches except perhaps the last
    if shuffle and n >= world * b:  # drop_last: every global batch is the one-process batch
        assert [sorted(x + y) for x, y in zip(*ranks)] == [sorted(x) for x in one]
        assert all(len(x) == world * b for x in one)
    elif n % world == 0:
        assert [sorted(x + y) for x, y in zip(*ranks)] == [sorted(x) for x in one]
    else:  # padded by repeating the first rows, as DistributedSampler does
        flat = sorted(i for r in ranks for x in r for i in x)
        assert len(flat) == -(-n // world) * world and set(flat) == set(range(n))


def test_one_process_shard_is_the_plain_loader_order():
    n, b = 11, 4
    plain = [x.tolist() for x in DataLoader(range(n), batch_size=b, sampler=EpochShuffle(n, 7), drop_last=True)]
    shard = GlobalBatchShard(n, b, EpochShuffle(n, 7), drop_last=True)
    assert _batches(shard, n, b) == plain and len(shard) == 8
    shard.set_epoch(1)  # forwarded to the epoch permutation
    other = EpochShuffle(n, 7)
    other.set_epoch(1)
    assert _batches(shard, n, b) == [x.tolist() for x in DataLoader(range(n), batch_size=b, sampler=other,
                                                                     drop_last=True)]
    assert shard.num_replicas == 1 and shard.rank == 0  # no process group: one process
    with pytest.raises(ValueError):
        GlobalBatchShard(n, b, EpochShuffle(n + 1, 7))


def test_training_loaders_carry_a_sampler_lightning_keeps():
    dm = SynthDataModule(n_params=2, synth_sample_rate=8192, n_per_axis=4, n_seeds_per_theta=1, batch_size=2)
    for shuffle in (True, False):
        loader = dm._loader("train", shuffle=shuffle)
        # Lightning injects its own (shuffled) DistributedSampler only when the sampler is not one already
        assert isinstance(loader.sampler, DistributedSampler) and isinstance(loader.sampler, GlobalBatchShard)
    assert not isinstance(dm.val_dataloader().sampler, GlobalBatchShard)
