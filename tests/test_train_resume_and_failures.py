"""Resume equality (N steps == N/2 + resume + N/2) and the non-finite-loss stop."""
import json
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import open_dict
from torch.utils.data import DataLoader, TensorDataset

from scraplab.cli.build import ConfigError
from scraplab.cli.train import train
from scraplab.training.callbacks import ModelCheckpoint as AppModelCheckpoint, latest_last_checkpoints
from scraplab.training.module import NonFiniteLossError
from train_helpers import tiny_cfg

# 10 training rows, batch 5 → 2 steps per epoch: N = 4 steps is two epochs, the resume point is the first epoch's end.
# grad_mult is the granular default (1e8). Issue 6: with 1e8 the step-4 validation does not improve val/score, and
# Lightning 2.6 then leaves last.ckpt at step 2 (it copies last.ckpt only when a top-k checkpoint is saved), so the
# "uninterrupted" side of the comparison was a step-2 state; the training itself was already bit-identical. The app's
# ModelCheckpoint (scraplab.training.callbacks) keeps last.ckpt at the latest state.
RESUME = ["loss=scrapl", "optim=p_saga", "optim.lr=1e-2", "data.batch_size=5", "trainer.val_check_interval=null",
          "encoder.dropout=0.3", "sampler=adaptive"]


def _state(ckpt: Path) -> dict:
    return torch.load(ckpt, map_location="cpu", weights_only=True)


def test_resume_continues_identically(tmp_path):
    straight = train(tiny_cfg("granular", "scrapl", tmp_path / "a", RESUME))
    first = train(tiny_cfg("granular", "scrapl", tmp_path / "b", RESUME + ["trainer.max_steps=2"]))
    assert straight["steps"] == 4 and first["steps"] == 2
    resumed = train(tiny_cfg("granular", "scrapl", tmp_path / "c",
                             RESUME + [f"ckpt_path={tmp_path / 'b' / 'checkpoints' / 'last.ckpt'}"]))
    assert resumed["steps"] == 4
    a, c = _state(tmp_path / "a/checkpoints/last.ckpt"), _state(tmp_path / "c/checkpoints/last.ckpt")
    assert a["global_step"] == c["global_step"] == 4  # last.ckpt is the latest state, not the last improvement
    assert a["optimizer_states"][0]["param_groups"][0]["grad_mult"] == 1e8
    enc = [k for k in a["state_dict"] if k.startswith("encoder.")]
    assert enc and all(torch.equal(a["state_dict"][k], c["state_dict"][k]) for k in enc)
    b = _state(tmp_path / "b/checkpoints/last.ckpt")
    assert not all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in enc)  # training did move them
    # per-path optimizer state and the adaptive sampler's statistics continue identically too
    sa, sc = a["optimizer_states"][0]["state"], c["optimizer_states"][0]["state"]
    assert sa.keys() == sc.keys() and len(sa) > 0
    for k in sa:
        for name, v in sa[k].items():
            if torch.is_tensor(v):
                assert torch.equal(v, sc[k][name]), name
    assert torch.equal(a["sampler"]["stat"], c["sampler"]["stat"]) and int(a["sampler"]["count"].sum()) == 4


def test_resume_from_a_mid_epoch_checkpoint_is_exact(tmp_path):
    # 2 steps per epoch, validation (and so last.ckpt) every step: step 1 is in the middle of epoch 0 and step 3 in the
    # middle of epoch 1. Without the loader state the resumed run restarts epoch 0 on its first batch.
    mid = RESUME[:4] + ["trainer.val_check_interval=1", "trainer.check_val_every_n_epoch=null"] + RESUME[5:]
    straight = train(tiny_cfg("granular", "scrapl", tmp_path / "a", mid))
    for k, (stop, resume_from) in enumerate([(1, None), (3, "b0")]):
        extra = [f"trainer.max_steps={stop}"]
        if resume_from:
            extra.append(f"ckpt_path={tmp_path / resume_from / 'checkpoints' / 'last.ckpt'}")
        assert train(tiny_cfg("granular", "scrapl", tmp_path / f"b{k}", mid + extra))["steps"] == stop
    loader_state = _state(tmp_path / "b0/checkpoints/last.ckpt")["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader_state == [{"epoch": 0, "batches": 1}]
    resumed = train(tiny_cfg("granular", "scrapl", tmp_path / "c",
                             mid + [f"ckpt_path={tmp_path / 'b1' / 'checkpoints' / 'last.ckpt'}"]))
    assert straight["steps"] == resumed["steps"] == 4
    a, c = _state(tmp_path / "a/checkpoints/last.ckpt"), _state(tmp_path / "c/checkpoints/last.ckpt")
    enc = [k for k in a["state_dict"] if k.startswith("encoder.")]
    assert enc and all(torch.equal(a["state_dict"][k], c["state_dict"][k]) for k in enc)
    assert torch.equal(a["sampler"]["stat"], c["sampler"]["stat"])
    # the validation curve and the wall clock continue across the two resumes
    hist_a = json.loads((tmp_path / "a" / "history.json").read_text())
    hist_c = json.loads((tmp_path / "c" / "history.json").read_text())
    assert hist_c["step"] == hist_a["step"] == [1, 2, 3, 4]
    assert hist_c["val/theta_l1_permille"] == hist_a["val/theta_l1_permille"]
    assert resumed["wall_s"] > resumed["wall_s_this_process"]


class _Worsening(L.LightningModule):
    """A linear model whose validation score only gets worse (so no validation after the first is a top-1 save)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.lin(batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("val/score", float(self.global_step))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("max_steps", [4, 5])  # 5: training ends mid-epoch, after the last validation
def test_last_checkpoint_is_the_latest_state_when_validation_does_not_improve(tmp_path, max_steps):
    data = DataLoader(TensorDataset(torch.randn(4, 2)), batch_size=2)  # 2 steps per epoch, validation every epoch
    ckpt = latest_last_checkpoints([ModelCheckpoint(dirpath=tmp_path, filename="best", monitor="val/score",
                                                    mode="min", save_top_k=1, save_last=True)])[0]
    assert isinstance(ckpt, AppModelCheckpoint)
    trainer = L.Trainer(max_steps=max_steps, callbacks=[ckpt], logger=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0)
    model = _Worsening()
    trainer.fit(model, train_dataloaders=data, val_dataloaders=data)
    best, last = _state(tmp_path / "best.ckpt"), _state(tmp_path / "last.ckpt")
    assert best["global_step"] == 2 and last["global_step"] == max_steps
    assert torch.equal(last["state_dict"]["lin.weight"], model.lin.weight.detach())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt", "last.ckpt"]  # no last-v1.ckpt


def test_non_finite_loss_stops_naming_step_and_path_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = tiny_cfg("granular", "scrapl", tmp_path)
    with open_dict(cfg):
        cfg.loss._target_ = "train_helpers.nan_scrapl"
        cfg.loss._partial_ = False
        for key in [k for k in cfg.loss if k not in ("_target_", "_partial_")]:
            del cfg.loss[key]
        cfg.loss.after = 2  # train steps 0-1 fine; the validation after step 2 is NaN; train step 2 stops
    with pytest.raises(NonFiniteLossError, match=r"global step 2, path\(s\) \[\d+\]"):
        train(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "non-finite" and metrics["steps"] == 2
    last = torch.load(metrics["last_good_checkpoint"], map_location="cpu", weights_only=True)
    assert last["global_step"] == 2
    assert all(torch.isfinite(v).all() for k, v in last["state_dict"].items() if k.startswith("encoder."))


def test_unusable_combinations_fail_at_start_up(tmp_path):
    with pytest.raises(ConfigError, match="batch_size"):
        train(tiny_cfg("granular", "mss", tmp_path / "a", ["data.batch_size=0"]))
    with pytest.raises(ConfigError, match="budget"):
        train(tiny_cfg("granular", "scrapl", tmp_path / "b", ["sampler.budget=0"]))


@pytest.mark.slow
def test_theta_is_sampler_computes_pi_once_then_reuses_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SCRAPLAB_DATA_DIR", str(tmp_path / "data"))
    extra = ["sampler=theta_is", "sampler.warmup.n_examples=2", "sampler.warmup.batch_size=2",
             "sampler.warmup.n_iter=2"]
    first = train(tiny_cfg("granular", "scrapl", tmp_path / "a", extra))
    stored = list((tmp_path / "data" / "theta_is").glob("*.json"))
    assert first["status"] == "ok" and len(stored) == 1
    assert first["theta_is/warmup_s"] > 0  # the warm-up's cost is reported
    mtime = stored[0].stat().st_mtime
    train(tiny_cfg("granular", "scrapl", tmp_path / "b", extra))
    assert stored[0].stat().st_mtime == mtime  # same settings: π reused, not recomputed
    assert list((tmp_path / "a" / "images").rglob("path_probs_0.png"))  # non-uniform π is pictured


def test_init_weights_starts_from_a_checkpoints_encoder_with_a_fresh_optimizer(tmp_path):
    first = train(tiny_cfg("granular", "scrapl", tmp_path / "a", RESUME + ["trainer.max_steps=2", "test_ckpt=last"]))
    ckpt = tmp_path / "a" / "checkpoints" / "last.ckpt"
    enc = {k: v for k, v in _state(ckpt)["state_dict"].items() if k.startswith("encoder.")}
    fine = ["optim=adamw", "optim.lr=1e-3", "eval_init=true"]
    tuned = train(tiny_cfg("granular", "scrapl", tmp_path / "b", RESUME + fine + [f"init_weights={ckpt}"]))
    # the test pass before training (init/) scores the loaded encoder: the first run's test of its last weights
    assert tuned["init/theta_l1_permille"] == pytest.approx(first["test/theta_l1_permille"], rel=1e-6)
    scratch = train(tiny_cfg("granular", "scrapl", tmp_path / "c", RESUME + fine))
    assert tuned["init/theta_l1_permille"] != pytest.approx(scratch["init/theta_l1_permille"], rel=1e-3)
    assert tuned["init_weights"] == str(ckpt) and tuned["steps"] == 4  # a fresh step count: all 4 steps
    b = _state(tmp_path / "b" / "checkpoints" / "last.ckpt")
    assert "path_state" not in b["optimizer_states"][0]  # AdamW from scratch, not the checkpoint's 𝒫-SAGA state
    assert not all(torch.equal(enc[k], b["state_dict"][k]) for k in enc)  # and it trained on from there


def test_init_weights_refuses_a_resume_and_another_encoder(tmp_path):
    train(tiny_cfg("granular", "scrapl", tmp_path / "a", RESUME + ["trainer.max_steps=1"]))
    ckpt = tmp_path / "a" / "checkpoints" / "last.ckpt"
    with pytest.raises(ConfigError, match="a resume restores the weights"):
        train(tiny_cfg("granular", "scrapl", tmp_path / "b", RESUME + [f"init_weights={ckpt}", f"ckpt_path={ckpt}"]))
    with pytest.raises(ConfigError, match="does not fit this one"):
        train(tiny_cfg("granular", "scrapl", tmp_path / "c", RESUME + [f"init_weights={ckpt}", "encoder.channels=8"]))
