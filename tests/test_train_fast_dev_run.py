"""End-to-end training on CPU (fast_dev_run and a few real steps) for every synth with SCRAPL and MSS."""
import json
from pathlib import Path

import pytest

from scraplab.cli.train import train
from train_helpers import compose_cfg, tiny_cfg


@pytest.mark.parametrize("synth", ["granular", "chirplet", "tr808"])
@pytest.mark.parametrize("loss", ["scrapl", "mss"])
def test_fast_dev_run(synth, loss, tmp_path):
    cfg = tiny_cfg(synth, loss, tmp_path, ["debug=fdr"])
    metrics = train(cfg)
    assert metrics["status"] == "ok" and metrics["steps"] == 1
    assert metrics["test/theta_l1_permille"] is not None and 0 < metrics["test/theta_l1_permille"] < 1000
    if loss == "scrapl":
        assert metrics["scrapl/n_paths"] > 1
    assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == 1


def test_short_scrapl_run_writes_the_run_folder(tmp_path):
    """A few real steps: resolved config, checkpoints, audio + scalogram media, metrics with init and test θ-error."""
    cfg = tiny_cfg("granular", "scrapl", tmp_path, ["eval_init=true", "optim=p_saga", "optim.lr=1e-3",
                                                    "sampler=adaptive"])
    metrics = train(cfg)
    run = Path(tmp_path)
    assert (run / "config.yaml").read_text().count("_target_") > 5
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "checkpoints" / "best.ckpt").is_file()
    wavs = sorted((run / "audio").rglob("*.wav"))
    assert any(w.name.endswith("_target.wav") for w in wavs) and any(w.name.endswith("_prediction.wav") for w in wavs)
    assert list((run / "images").rglob("scalogram_*.png"))
    assert list((run / "images").rglob("path_probs_0.png"))  # the adaptive sampler's π is non-uniform
    for key in ("test/theta_l1_permille", "init/theta_l1_permille", "wall_s", "steps", "scrapl/state_bytes"):
        assert metrics[key] is not None, key
    assert metrics["steps"] == 4 and metrics["scrapl/state_bytes"] > 0
    per_param = [k for k in metrics if k.startswith("test/theta_l1_permille/")]
    assert sorted(p.split("/")[-1] for p in per_param) == ["density", "slope"]
    header = (run / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "val/theta_l1_permille" in header and "train/loss" in header


def test_param_loss_is_the_supervised_baseline(tmp_path):
    cfg = tiny_cfg("granular", "param", tmp_path)
    metrics = train(cfg)
    assert metrics["status"] == "ok" and "test/loss" in metrics


@pytest.mark.slow
@pytest.mark.parametrize("synth", ["granular", "chirplet", "tr808"])
def test_default_command_beats_the_untrained_encoder(synth, tmp_path):
    """`python train.py synth=X` as shipped (minutes on a CPU): test θ-error clearly below the untrained encoder's."""
    cfg = compose_cfg([f"synth={synth}", "trainer.enable_progress_bar=false"], tmp_path)
    metrics = train(cfg)
    assert metrics["test/theta_l1_permille"] < 0.8 * metrics["init/theta_l1_permille"]


@pytest.mark.slow
@pytest.mark.parametrize("synth", ["granular", "chirplet", "tr808"])
def test_fast_dev_run_full_length_synths(synth, tmp_path):
    cfg = compose_cfg([f"synth={synth}", "loss=scrapl", "debug=fdr", "data.batch_size=2"], tmp_path)
    assert train(cfg)["status"] == "ok"



def test_the_training_target_cache_reuses_each_sound_from_the_second_epoch(tmp_path):
    """loss.target_cache_mb > 0: the synthetic training set's targets render the same samples every epoch (seeded
    rows), so from the second epoch on every (sound, path) the step needs is served from the store."""
    cfg = tiny_cfg("granular", "scrapl", tmp_path, ["loss.target_cache_mb=64", "optim=p_saga", "trainer.max_steps=8",
                                                    "synth.jtfs={J: 6, Q: [4, 1], J_fr: 2, Q_fr: 1}",
                                                    "sampler.budget=28", "trainer.val_check_interval=8",
                                                    "module.eval_loss=false"])
    metrics = train(cfg)
    # 10 training rows (60 % of the 4×4 grid) at batch 2: 5 steps per epoch; all P = 28 paths drawn at every step
    assert metrics["scrapl/n_paths"] == 28 and metrics["steps"] == 8
    assert metrics["scrapl/target_cache_misses"] == 10 * 28
    assert metrics["scrapl/target_cache_hits"] == 3 * 2 * 28
