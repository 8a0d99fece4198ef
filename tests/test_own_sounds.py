"""Own sounds (data=wav_folder) through the bare command's presets, training and eval.py; CPU presets of every synth."""
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hydra.utils import instantiate
from omegaconf import open_dict

from scraplab.cli.build import ConfigError, build_synth
from scraplab.cli.eval import evaluate
from scraplab.cli.presets import apply_overrides, check_cpu_preset, with_cpu_preset
from scraplab.cli.status import classify, is_known
from scraplab.cli.train import train
from scraplab.data.datamodule import WavDataModule, build_datamodule
from scraplab.data.wav_folder import WavLoadError
from scraplab.locations import config_dir
from train_helpers import SHORT, TINY, compose_cfg, tone, write_wav

SR = 8192  # granular's rate


def _kit(folder: Path, n_good: int = 8, bad: bool = True) -> Path:
    for i in range(n_good):
        write_wav(folder / f"hit_{i}.wav", tone(SR, 0.5, freq=200 + 40 * i), SR)
    if bad:
        (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio")
        sf.write(str(folder / "nan.wav"), np.full(100, np.nan, dtype=np.float32), SR, subtype="FLOAT")
    return folder


@pytest.mark.parametrize("synth", ["granular", "tr808", "chirplet_am_hi_fm_hi"])
@pytest.mark.parametrize("debug", [[], ["debug=tiny"]])
def test_presets_and_debug_tiny_do_not_break_wav_folder(synth, debug, tmp_path):
    folder = _kit(tmp_path / "kit", n_good=3, bad=False)
    cfg = compose_cfg([f"synth={synth}", "data=wav_folder", f"data.path={folder}", *debug], tmp_path / "run")
    dm = build_datamodule(instantiate(cfg.data), build_synth(cfg))
    assert isinstance(dm, WavDataModule) and not dm.has_theta
    # no θ, so no P-loss: own sounds default to SCRAPL + 𝒫-SAGA, except where the synth's CPU preset names the recipe
    # that matched real sounds best (cpu_tr808: MSS Revisited + AdamW); the command line still chooses
    if synth == "tr808":
        assert cfg.loss._target_.endswith("RevisitedMSSLoss") and cfg.optim._target_.endswith("adamw")
    else:
        assert cfg.loss._target_.endswith("SCRAPLLoss") and cfg.optim._target_.endswith("p_saga")
    mss = compose_cfg([f"synth={synth}", "data=wav_folder", "data.path=/x", "loss=mss", "optim=adamw"], tmp_path)
    assert mss.loss._target_.endswith("MSSLoss") and mss.optim._target_.endswith("adamw")
    # the synthetic data keeps the preset's size (the bare tr808 preset trains on real drums: its synthetic one)
    own = ["experiment=cpu_tr808_synthetic"] if synth == "tr808" else []
    synthetic = compose_cfg([f"synth={synth}", *own, *debug], tmp_path / "run")
    if debug:
        assert synthetic.data.n_per_axis == 4 and list(synthetic.data.sizes) == [8, 4, 4]
    elif synth == "granular":
        assert synthetic.data.n_per_axis == 16 and synthetic.data.batch_size == 8


def test_every_synth_has_a_cpu_preset():
    for synth in sorted(p.stem for p in (config_dir() / "synth").glob("*.yaml")):
        cfg = compose_cfg([f"synth={synth}"], "/tmp/unused")
        assert cfg.trainer.accelerator == "cpu" and 0 < cfg.trainer.max_steps <= 1500, synth


def test_a_synth_without_cpu_preset_is_refused_unless_the_length_is_chosen():
    cfg = compose_cfg(["synth=granular", "experiment=paper_granular", "trainer=cpu"], "/tmp/unused")
    choices = {"synth": "moog", "experiment": None}  # with_cpu_preset found no experiment/cpu_moog.yaml
    with pytest.raises(ConfigError, match=r"synth=moog has no CPU preset.*cpu_moog.yaml.*max_steps=19200"):
        check_cpu_preset(cfg, choices, ["synth=moog"])
    check_cpu_preset(cfg, choices, ["synth=moog", "trainer.max_steps=50"])  # the user chose the length
    check_cpu_preset(cfg, {"synth": "granular", "experiment": "cpu_granular"}, [])  # a preset was chosen
    # a sweep over synths gets no preset (each job's synth differs): the user is told to name it
    with pytest.raises(ConfigError, match=r"no experiment preset chosen.*experiment=cpu_granular"):
        check_cpu_preset(cfg, {"synth": "granular", "experiment": None}, ["synth=granular,tr808"])


def test_the_bare_command_adds_the_synths_cpu_preset_unless_an_experiment_is_named():
    assert with_cpu_preset(["synth=tr808", "seed=1"]) == ["synth=tr808", "seed=1", "experiment=cpu_tr808"]
    assert with_cpu_preset(["seed=1"]) == ["seed=1", "experiment=cpu_granular"]  # train.yaml's synth
    assert with_cpu_preset(["synth=granular", "synth=chirplet"])[-1] == "experiment=cpu_chirplet"  # the last wins
    for kept in (["synth=tr808", "experiment=paper_tr808"], ["synth=tr808", "~experiment"],
                 ["synth=granular,tr808"], ["synth=moog"], ["synth.n_samples=8192", "experiment=cpu_granular"]):
        assert with_cpu_preset(kept) == kept


def test_group_overrides_of_a_stored_config(tmp_path):
    stored = compose_cfg(["synth=granular"], tmp_path)
    cfg = apply_overrides(stored, ["data=wav_folder", "data.path=/x", "data.batch_size=3"])
    assert cfg.data._target_.endswith("WavDataModule") and cfg.data.path == "/x" and cfg.data.batch_size == 3
    assert "n_per_axis" not in cfg.data  # replaced, not merged
    with pytest.raises(ConfigError, match="data=nope.*options: synthetic, wav_folder"):
        apply_overrides(stored, ["data=nope"])
    for overrides, match in ((["data=wav_folder"], "needs data.path=DIR"),
                             (["data=wav_folder", f"data.path={tmp_path / 'nope'}"], "data.path: audio path .* does "
                                                                                       "not exist")):
        with pytest.raises(ConfigError, match=match):
            train(compose_cfg(["synth=granular", *TINY, *overrides], tmp_path / "run"))


def test_own_sounds_end_to_end_with_bad_files(tmp_path):
    folder = _kit(tmp_path / "kit")
    base = ["synth=granular", *SHORT["granular"], *TINY, "data=wav_folder", f"data.path={folder}"]  # bare command
    # default: one error listing both bad files, status in metrics.json
    with pytest.raises(WavLoadError, match=r"2 of 10 .*broken.wav.*nan.wav") as err:
        train(compose_cfg(base, tmp_path / "strict"))
    assert classify(err.value) == ("data-error", 3) and is_known(err.value)  # train.py: one line, exit code 3
    assert json.loads((tmp_path / "strict" / "metrics.json").read_text())["status"] == "data-error"
    # skip: trains on the 8 good files; θ metrics are absent, the MSS score is there
    with pytest.warns(UserWarning, match="skipping 2 unusable"):
        metrics = train(compose_cfg(base + ["data.on_bad_file=skip"], tmp_path / "run"))
    assert metrics["status"] == "ok" and metrics["steps"] == 4 and not metrics["has_theta"]
    assert metrics["test/mss_log_lin"] > 0 and "test/theta_l1_permille" not in metrics
    assert metrics["scrapl/n_paths"] == 315 and metrics["scrapl/state_bytes"] > 0  # SCRAPL + 𝒫-SAGA
    # eval.py on the SCRAPL-trained checkpoint, with its own folder as documented in configs/eval.yaml: the SCRAPL
    # test loss reads the target cache (no inference tensors)
    ev = compose_cfg([f"ckpt={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}"], tmp_path / "eval", "eval")
    with open_dict(ev):
        ev.overrides = ["data=wav_folder", f"data.path={folder}", "data.on_bad_file=skip"]
    with pytest.warns(UserWarning, match="skipping 2"):
        out = evaluate(ev)
    assert out["status"] == "ok" and out["test/loss"] > 0 and out["test/mss_log_lin"] > 0


def test_eval_of_a_scrapl_checkpoint_on_its_synthetic_split(tmp_path):
    cfg = compose_cfg(["synth=granular", "loss=scrapl", *SHORT["granular"], *TINY, "trainer.max_steps=2"],
                      tmp_path / "run")
    train(cfg)
    ev = compose_cfg([f"ckpt={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}"], tmp_path / "eval", "eval")
    out = evaluate(ev)
    assert out["status"] == "ok" and out["test/loss"] > 0 and 0 < out["test/theta_l1_permille"] < 1000


def test_a_p_loss_checkpoint_is_tested_on_own_sounds(tmp_path):
    """The default recipe (P-loss on synthetic renders) judged on real sounds: eval.py runs the audio metrics and
    skips the loss (no θ to compare with); training a P-loss on them is still refused."""
    folder = _kit(tmp_path / "kit", n_good=15, bad=False)  # 3 test sounds: the spread needs two
    cfg = compose_cfg(["synth=granular", *SHORT["granular"], *TINY, "trainer.max_steps=2"], tmp_path / "run")
    assert cfg.loss._target_.endswith("ParamLoss")
    train(cfg)
    ev = compose_cfg([f"ckpt={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}", "report_n=0"], tmp_path / "eval",
                     "eval")
    with open_dict(ev):
        ev.overrides = ["data=wav_folder", f"data.path={folder}"]
    out = evaluate(ev)
    assert out["status"] == "ok" and out["test/mss_log_lin"] > 0 and "test/loss" not in out
    assert "test/theta_l1_permille" not in out and 0 <= out["test/theta_spread_ratio"] < 10
    with pytest.raises(ConfigError, match="P-loss.*needs ground-truth"):
        train(compose_cfg(["synth=granular", *SHORT["granular"], *TINY, "data=wav_folder", f"data.path={folder}",
                           "loss=param", "optim=adamw"], tmp_path / "refused"))
