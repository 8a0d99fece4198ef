"""Config composition (LHT style): every group option composes and builds; bad values fail at start-up."""
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from scraplab.cli.build import ConfigError, build_encoder, build_loss, build_sampler, build_synth, check_config
from scraplab.data.datamodule import build_datamodule
from scraplab.locations import config_dir
from train_helpers import SHORT, compose_cfg

GROUPS = ("synth", "loss", "sampler", "optim", "encoder", "data", "trainer", "logger", "callbacks", "experiment")


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def test_train_config_has_exactly_the_documented_groups(tmp_path):
    cfg = compose_cfg([], tmp_path)
    for group in GROUPS[:-1]:
        assert group in cfg, group
    for extra in ("paths", "hydra", "debug"):
        assert (config_dir() / extra).is_dir()
    assert all((config_dir() / g).is_dir() for g in GROUPS)
    assert cfg.trainer._target_.endswith("Trainer") and cfg.module._target_.endswith("SoundMatchingModule")


@pytest.mark.parametrize("group", ["synth", "loss", "sampler", "optim", "encoder", "data", "trainer", "logger",
                                   "callbacks"])
def test_every_option_of_every_group_composes(group, tmp_path):
    options = _options(group)
    assert options, f"configs/{group}/ is empty"
    for opt in options:
        cfg = compose_cfg([f"{group}={opt}"], tmp_path)
        OmegaConf.to_container(cfg[group], resolve=True)  # all interpolations resolve


@pytest.mark.parametrize("synth", ["granular", "chirplet", "tr808"])
def test_synth_dependent_parts_build_for_each_synth(synth, tmp_path):
    cfg = compose_cfg([f"synth={synth}", *SHORT[synth]], tmp_path)  # tr808: its synthetic preset (θ to sample)
    s = build_synth(cfg)
    enc = build_encoder(cfg.encoder, s)
    assert enc.n_params == s.n_params and enc.frontend.sample_rate == s.sample_rate
    dm = build_datamodule(instantiate(cfg.data), s)
    assert dm.theta_sampling == ("grid" if s.n_params <= 2 else "uniform")
    for loss in [p for p in _options("loss") if p not in ("scrapl", "jtfs", "scattering1d")]:
        lcfg = compose_cfg([f"synth={synth}", f"loss={loss}"], tmp_path).loss
        assert build_sampler(cfg.sampler, build_loss(lcfg, s)) is None  # non-path losses get no sampler


def test_encoder_presets_have_the_paper_sizes(tmp_path):
    from scraplab.models.encoder import n_weights

    g = build_synth(compose_cfg(["synth=granular"], tmp_path))
    d = build_synth(compose_cfg(["synth=tr808"], tmp_path))
    assert n_weights(build_encoder(compose_cfg(["encoder=paper_2p"], tmp_path).encoder, g)) == 604_106
    assert n_weights(build_encoder(compose_cfg(["encoder=paper_14p"], tmp_path).encoder, d)) == 724_642


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_every_experiment_preset_composes(experiment, tmp_path):
    own_synth = experiment.startswith("cpu_") and (config_dir() / "synth" / f"{experiment[4:]}.yaml").exists()
    synth = [f"synth={experiment[4:]}"] if own_synth else []
    cfg = compose_cfg([*synth, f"experiment={experiment}"], tmp_path)
    container = OmegaConf.to_container(cfg, resolve=False)
    assert container["synth"]["_target_"].startswith("scraplab.synths.")
    if synth:  # CPU presets are what the bare `train.py synth=X` uses
        assert cfg.trainer.accelerator == "cpu" and cfg.trainer.max_steps > 0
        assert compose_cfg(synth, tmp_path) == cfg
    elif experiment.startswith(("twin_", "cpu_")):  # CPU experiments that name their synth (twins, real drums)
        assert cfg.trainer.accelerator == "cpu" and cfg.trainer.max_steps > 0
    else:  # paper presets are GPU-sized and name their synth themselves
        assert cfg.trainer.accelerator in ("gpu", "auto") and cfg.encoder.channels == 128


def test_bare_synth_choice_selects_its_cpu_preset(tmp_path):
    for synth in ("granular", "chirplet", "tr808"):
        if (config_dir() / "experiment" / f"cpu_{synth}.yaml").exists():
            bare = compose_cfg([f"synth={synth}"], tmp_path)
            assert bare == compose_cfg([f"synth={synth}", f"experiment=cpu_{synth}"], tmp_path)
            assert bare != compose_cfg([f"synth={synth}", "experiment=paper_granular"], tmp_path)


def test_unknown_synth_fails_with_the_available_options(tmp_path):
    with pytest.raises(ConfigCompositionException, match="synth"):
        compose_cfg(["synth=moog"], tmp_path)


def test_negative_budget_and_steps_fail_at_start_up(tmp_path):
    with pytest.raises(ConfigError, match="sampler.budget"):
        check_config(compose_cfg(["sampler.budget=-1"], tmp_path))
    with pytest.raises(ConfigError, match="trainer.max_steps"):
        check_config(compose_cfg(["trainer.max_steps=-5"], tmp_path))


def test_sample_rate_mismatch_fails_at_start_up(tmp_path):
    from scraplab.cli.train import train

    cfg = compose_cfg(["synth=granular", "data.sample_rate=44100", "logger=csv"], tmp_path)
    with pytest.raises(ConfigError, match="sample-rate mismatch.*44100.*8192"):
        train(cfg)
    assert not (Path(tmp_path) / "checkpoints").exists()  # nothing trained
