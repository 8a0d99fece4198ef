"""Lightning DDP with SCRAPL (slow: spawns 2 CPU processes with gloo).

``trainer=ddp_sim`` (ddp_spawn, 2 CPU ranks, per-rank batch B) for a few 𝒫-SAGA steps must (a) draw the same path
on every rank at every step, (b) leave identical weights on both ranks, and (c) end with the weights of a
single-process run with batch 2B: same rows per step (unshuffled loader: rank r takes rows r, r + 2, …), all-reduced
(averaged) gradients, one path-aware update. (a) and (b) pass; (c) fails and is marked xfail until the cause is found
(the optimizer-level DDP test in test_optim_ddp.py does pass).
"""
import json
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from scraplab.cli.build import build_all
from train_helpers import tiny_cfg

STEPS, B = 3, 2
COMMON = ["loss=scrapl", "optim=p_saga", "optim.lr=1e-2", "sampler.seed=5", "encoder.dropout=0.0",
          "module.test_audio=null", f"trainer.max_steps={STEPS}", "trainer.limit_val_batches=0",
          "+trainer.enable_checkpointing=false"]


class Recorder(L.Callback):
    """Writes each rank's drawn paths and final encoder weights to ``out``."""

    def __init__(self, out: str) -> None:
        self.out, self.paths = out, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.paths.append(list(pl_module._paths))

    def on_train_end(self, trainer, pl_module) -> None:
        rank = trainer.global_rank
        Path(self.out, f"paths_rank{rank}.json").write_text(json.dumps(self.paths))
        torch.save({k: v.detach().cpu() for k, v in pl_module.encoder.state_dict().items()},
                   Path(self.out, f"weights_rank{rank}.pt"))


def _fit(cfg, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(int(cfg.seed))  # same initial encoder weights in both runs (as train.py does)
    objs = build_all(cfg)
    objs["datamodule"].setup("fit")
    # no shuffling, so that the DDP ranks' rows (r, r + 2, …) are exactly the single run's batch of 2B
    loader = objs["datamodule"]._loader("train", shuffle=False)
    trainer = instantiate(cfg.trainer, callbacks=[Recorder(str(out))], logger=False)
    trainer.fit(objs["module"], train_dataloaders=loader)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    ddp_cfg = tiny_cfg("granular", "scrapl", tmp / "ddp",
                       COMMON + ["trainer=ddp_sim", "trainer.devices=2", "trainer.strategy=ddp_spawn",
                                 f"data.batch_size={B}"])
    one_cfg = tiny_cfg("granular", "scrapl", tmp / "one", COMMON + [f"data.batch_size={2 * B}"])
    _fit(ddp_cfg, tmp / "ddp")
    _fit(one_cfg, tmp / "one")
    load = lambda d, r, kind: (json.loads((tmp / d / f"paths_rank{r}.json").read_text()) if kind == "paths"
                               else torch.load(tmp / d / f"weights_rank{r}.pt", weights_only=True))
    return {kind: [load(d, r, kind) for d, r in (("ddp", 0), ("ddp", 1), ("one", 0))]
            for kind in ("paths", "weights")} | {"one_cfg": one_cfg}


@pytest.mark.slow
def test_ddp_ranks_draw_the_same_paths_and_hold_one_state(runs):
    p0, p1, p_one = runs["paths"]
    assert len(p_one) == STEPS and p0 == p1 == p_one
    assert len({tuple(p) for p in p_one}) > 1  # the sampler did draw different paths over the steps
    w0, w1, w_one = runs["weights"]
    for k in w_one:
        torch.testing.assert_close(w0[k], w1[k], rtol=0, atol=0)
    L.seed_everything(int(runs["one_cfg"].seed))
    init = build_all(runs["one_cfg"])["encoder"].state_dict()
    assert any(not torch.allclose(init[k], w_one[k]) for k in w_one)  # training moved the weights


@pytest.mark.slow
@pytest.mark.xfail(reason="open (issue 6): after 3 𝒫-SAGA steps the DDP weights differ from the single-process "
                          "batch-2B run (max |Δ| ≈ 0.1, measured 2026-11-25); cause not yet isolated", strict=False)
def test_ddp_weights_equal_one_process_double_batch(runs):
    w0, _, w_one = runs["weights"]
    for k in w_one:
        torch.testing.assert_close(w0[k], w_one[k], rtol=1e-4, atol=1e-6)
