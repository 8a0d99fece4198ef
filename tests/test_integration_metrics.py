"""Integration of the metrics into the training app: step cost and test audio distances in metrics.json, the
validation history in history.json, and the synth's grad_mult for path-aware optimizers with SCRAPL."""
import csv
import json

import pytest
import torch

from scraplab.cli.build import build_all
from scraplab.cli.train import train
from scraplab.metrics.audio import MSSDistances, jtfs_distance
from scraplab.synths import GranularSynth, TR808Synth
from scraplab.training.eval_audio import EvalAudioMetrics
from train_helpers import SHORT, compose_cfg, tiny_cfg


def _factory_mult(overrides, tmp_path):
    objs = build_all(compose_cfg(overrides, tmp_path))
    return objs["module"].optim_factory.keywords.get("grad_mult")


@pytest.mark.parametrize("synth,optim,loss,expected", [
    ("granular", "p_saga", "scrapl", 1e8), ("chirplet", "p_adam", "scrapl", 1e8), ("tr808", "p_saga", "scrapl", 1.0),
    ("granular", "p_adam", "mss", 1.0)])
def test_path_optimizers_take_the_synths_grad_mult_with_scrapl(synth, optim, loss, expected, tmp_path):
    assert _factory_mult([f"synth={synth}", f"optim={optim}", f"loss={loss}", *SHORT[synth]], tmp_path) == expected


def test_explicit_grad_mult_wins_and_paper_presets_set_it(tmp_path):
    assert _factory_mult(["optim=p_saga", "loss=scrapl", "optim.grad_mult=1.0", *SHORT["granular"]], tmp_path) == 1.0
    for preset in ("paper_granular", "paper_chirplet"):
        cfg = compose_cfg([f"experiment={preset}"], tmp_path)
        assert cfg.optim.grad_mult == 1e8, preset


def test_built_optimizer_applies_the_multiplier(tmp_path):
    objs = build_all(compose_cfg(["optim=p_saga", "loss=scrapl", *SHORT["granular"]], tmp_path))
    opt = objs["module"].configure_optimizers()
    assert opt.param_groups[0]["grad_mult"] == 1e8


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0.0, -1e8, "1e8", True])
def test_the_synths_grad_mult_is_declared_and_validated(bad, tmp_path):
    from scraplab.cli.build import ConfigError, synth_grad_mult
    from scraplab.synths.base import Synth

    assert Synth.scrapl_grad_mult == 1.0 and "scrapl_grad_mult" in vars(Synth)  # declared on the base
    synth = GranularSynth(n_samples=8192)
    synth.scrapl_grad_mult = bad
    with pytest.raises(ConfigError, match=r"GranularSynth.scrapl_grad_mult must be a finite number > 0"):
        synth_grad_mult(synth)


def test_the_grad_mult_used_is_written_into_the_saved_config(tmp_path):
    import yaml

    metrics = train(tiny_cfg("granular", "scrapl", tmp_path, ["optim=p_saga", "trainer.max_steps=2"]))
    assert metrics["status"] == "ok"
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["optim"]["grad_mult"] == 1e8
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["scraplab_config"]["optim"]["grad_mult"] == 1e8


def test_test_audio_metrics_keys_and_values():
    synth = GranularSynth(n_samples=8192)
    m = EvalAudioMetrics(synth, jtfs_paths=4)
    g = torch.Generator().manual_seed(0)
    theta = torch.rand(3, 2, generator=g)
    x = synth(theta, torch.arange(3))
    x_hat = synth(torch.rand(3, 2, generator=g), torch.arange(3) + 7)
    out = m(x_hat, x)
    n = m.jtfs.n_paths
    assert m.paths == [0, round((n - 1) / 3), round(2 * (n - 1) / 3), n - 1]
    assert m.jtfs_key == f"audio/jtfs_4of{n}"
    assert set(out) == {"audio/mss_lin", "audio/mss_log_lin", "audio/mss_rev", "audio/logmel_l1", m.jtfs_key}
    torch.testing.assert_close(out[m.jtfs_key], jtfs_distance(m.jtfs, x_hat, x, m.paths))
    ref = MSSDistances()(x_hat, x)
    torch.testing.assert_close(out["audio/mss_rev"], ref["mss_rev"])
    assert (out[m.jtfs_key] > 0).all()
    same = m(x, x)
    assert float(same[m.jtfs_key].abs().max()) < 1e-6 * float(out[m.jtfs_key].min())
    assert m.describe()["audio/jtfs_paths"] == m.paths and "4 of" in m.describe()["audio/jtfs_note"]
    assert EvalAudioMetrics(synth, mss=False, jtfs_paths=None).jtfs_key == f"audio/jtfs_all{n}"


def test_tr808_gets_transient_decay_features():
    synth = TR808Synth(n_samples=8192)
    m = EvalAudioMetrics(synth, mss=False, jtfs_paths=0)
    x = synth(torch.full((2, synth.n_params), 0.5), torch.arange(2))
    x_hat = synth(torch.full((2, synth.n_params), 0.3), torch.arange(2))
    out = m(x_hat, x)
    assert m.jtfs is None and "audio/loudness_transient" in out and "audio/temporal_centroid" in out
    assert all(v.shape == (2,) for v in out.values())
    assert float(out["audio/loudness_decay"].sum()) > 0
    assert not EvalAudioMetrics(GranularSynth(n_samples=8192), jtfs_paths=0).features


def test_run_writes_cost_audio_distances_and_history(tmp_path):
    cfg = tiny_cfg("granular", "scrapl", tmp_path, ["optim=p_saga", "module.test_audio.jtfs_paths=3",
                                                    "eval_init=true"])
    metrics = train(cfg)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["cost/n_steps"] == 4 and saved["cost/ms_per_step_median"] > 0
    key = next(k for k in saved if k.startswith("test/audio/jtfs_"))
    assert key.endswith("of315") and key.startswith("test/audio/jtfs_3of") and saved[key] > 0
    assert len(saved["audio/jtfs_paths"]) == 3 and saved["test/audio/mss_lin"] > 0
    assert "init/theta_l1_permille" in saved and not any(k.startswith("init/audio/") for k in saved)
    hist = json.loads((tmp_path / "history.json").read_text())
    with open(tmp_path / "csv" / "metrics.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("val/theta_l1_permille")]
    # history.json: optimizer steps done; Lightning's CSV logs validation at step - 1
    assert hist["step"] == [int(float(r["step"])) + 1 for r in rows] == [2, 4]
    assert hist["val/theta_l1_permille"] == pytest.approx([float(r["val/theta_l1_permille"]) for r in rows],
                                                          rel=1e-5)
    assert metrics["steps"] == 4


def test_eval_loss_can_be_switched_off(tmp_path):
    metrics = train(tiny_cfg("granular", "mss", tmp_path, ["module.eval_loss=false", "module.test_audio=null"]))
    assert "test/loss" not in metrics and metrics["test/theta_l1_permille"] > 0
    assert not any(k.startswith("test/audio/") for k in metrics)


def test_jtfs_loss_builds_from_its_config(tmp_path):
    """JTFSLoss forwards **kwargs to SCRAPLLoss: the builder must fill only the named parameters of the MRO."""
    from scraplab.cli.build import build_loss, build_synth
    from scraplab.losses import JTFSLoss

    cfg = compose_cfg(["loss=jtfs", *SHORT["granular"]], tmp_path)
    loss = build_loss(cfg.loss, build_synth(cfg))
    assert isinstance(loss, JTFSLoss) and loss.n_paths == 323 and loss.jtfs.shape == 8192
