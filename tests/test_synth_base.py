"""Parameter table and input validation of the Synth base (synths/base.py)."""
import math
import pickle

import pytest
import torch

from scraplab.synths.base import Param
from scraplab.synths.chirplet import ChirpletSynth
from scraplab.synths.granular import GranularSynth
from scraplab.synths.tr808 import TR808Synth

u = torch.linspace(0, 1, 11, dtype=torch.float64)


def test_param_curves():
    lin = Param("x", -1.0, 2.0)
    assert torch.allclose(lin.to_physical(u), -1 + 3 * u)
    log = Param("f", 1.0, 16.0, "log", "Hz")
    assert torch.allclose(log.to_physical(torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)),
                          torch.tensor([1.0, 2.0, 4.0, 16.0], dtype=torch.float64))
    db = Param("g", -60.0, 6.0, "dB", "dB")
    assert torch.allclose(db.to_physical(torch.tensor([0.0, 1.0])), torch.tensor([-60.0, 6.0]))
    for p in (lin, log, db):
        assert torch.allclose(p.to_unit(p.to_physical(u)), u, atol=1e-12)


@pytest.mark.parametrize("kwargs, msg", [
    (dict(name="a", min=1.0, max=1.0), "min < max"),
    (dict(name="a", min=0.0, max=1.0, curve="log"), "min > 0"),
    (dict(name="a", min=0.0, max=1.0, curve="cubic"), "curve"),
    (dict(name="a", min=0.0, max=1.0, curve="custom"), "to_phys"),
])
def test_param_rejects_bad_tables(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        Param(**kwargs)


SYNTHS = [GranularSynth, ChirpletSynth, TR808Synth]


@pytest.mark.parametrize("cls", SYNTHS)
def test_unit_physical_round_trip_float64(cls):
    s = cls()
    theta = torch.rand(16, s.n_params, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    theta[0], theta[1] = 0.0, 1.0
    phys = s.to_physical(theta)
    assert list(phys) == s.param_names and all(v.shape == (16,) for v in phys.values())
    for p in s.params:  # the ends of the range map to min / max
        assert math.isclose(phys[p.name][0].item(), p.min, rel_tol=1e-12, abs_tol=1e-12)
        assert math.isclose(phys[p.name][1].item(), p.max, rel_tol=1e-12, abs_tol=1e-12)
    assert torch.allclose(s.to_unit(phys), theta, atol=1e-12)


def test_granular_slope_curve_and_chirplet_log_ranges():
    g = GranularSynth()
    slope = g.to_physical(torch.tensor([[0.5, 0.0], [0.5, 0.5], [0.5, 1.0]], dtype=torch.float64))["slope"]
    gmax = math.tan(0.95 * math.pi / 2) * 8192 / (12 * 256) / 4  # ≈ 8.47 oct/s (ref §1.1)
    assert torch.allclose(slope, torch.tensor([-gmax, 0.0, gmax], dtype=torch.float64))
    assert 8.4 < gmax < 8.5
    c = ChirpletSynth(am_hz_min=4.0, am_hz_max=8.0, fm_oct_s_min=8.0, fm_oct_s_max=16.0)
    phys = c.to_physical(torch.tensor([[0.5, 0.5]], dtype=torch.float64))
    assert math.isclose(phys["am_rate"].item(), math.sqrt(32)) and math.isclose(phys["fm_rate"].item(), math.sqrt(128))


def test_to_unit_rejects_bad_physical_values():
    s = TR808Synth()
    phys = s.to_physical(torch.full((2, 14), 0.5))
    with pytest.raises(ValueError, match="expected physical values"):
        s.to_unit({k: v for k, v in phys.items() if k != "noise_q"})
    phys["osc1_freq"] = torch.tensor([10.0, 100.0])
    with pytest.raises(ValueError, match="osc1_freq must lie in"):
        s.to_unit(phys)


@pytest.mark.parametrize("cls", SYNTHS)
def test_bad_inputs_raise_clear_value_errors(cls):
    s = cls()
    good_t, good_s = torch.full((2, s.n_params), 0.5), torch.tensor([0, 1])
    cases = [
        (good_t + 0.6, good_s, r"\[0, 1\]"),
        (good_t - 0.6, good_s, r"\[0, 1\]"),
        (torch.full_like(good_t, float("nan")), good_s, "NaN"),
        (torch.full((2, s.n_params + 1), 0.5), good_s, "shape"),
        (torch.full((s.n_params,), 0.5), good_s, "shape"),
        (torch.full((2, s.n_params), 1, dtype=torch.int64), good_s, "floating"),
        (good_t, torch.tensor([0.0, 1.0]), "seed"),
        (good_t, torch.tensor([[0, 1]]), "seed"),
        (good_t, torch.tensor([0, 1, 2]), "batch size"),
    ]
    for theta, seed, msg in cases:
        with pytest.raises(ValueError, match=msg):
            s(theta, seed)


def test_constructor_rejects_bad_settings():
    with pytest.raises(ValueError, match="grain_n_samples"):
        GranularSynth(n_samples=1024, grain_n_samples=4096)
    with pytest.raises(ValueError, match="min > 0"):
        ChirpletSynth(fm_oct_s_min=0.0)
    with pytest.raises(ValueError, match="max_shift"):
        TR808Synth(max_shift=-1)
    with pytest.raises(ValueError, match="cutoff_knee"):
        TR808Synth(cutoff_knee=0.99)


@pytest.mark.parametrize("cls", SYNTHS)
def test_synths_pickle_and_expose_front_end_defaults(cls):
    s = pickle.loads(pickle.dumps(cls()))  # DataLoader workers and checkpoints need this
    assert s.n_params == len(s.param_names) == len(s.params)
    assert {"J", "Q", "J_fr", "Q_fr", "T", "F"} <= set(s.jtfs_defaults)
    assert set(s.cqt_defaults) == {"n_octaves", "bins_per_octave", "hop"}
    assert not list(s.parameters())  # stateless: nothing for an optimiser to touch


@pytest.mark.parametrize("cls", SYNTHS)
def test_jtfs_override_is_per_instance_and_reaches_the_loss(cls):
    from omegaconf import OmegaConf

    from scraplab.cli.build import build_loss

    s = cls(jtfs={"J": 8, "Q": [8, 1], "J_fr": 2, "Q_fr": 1})
    assert s.jtfs_defaults["J"] == 8 and s.jtfs_defaults["Q"] == (8, 1)
    assert cls.jtfs_defaults["J"] == 12 and cls().jtfs_defaults["J"] == 12  # the class default is untouched
    assert s.jtfs_defaults["F"] == cls.jtfs_defaults["F"]  # keys not given keep the synth's values
    small = build_loss(OmegaConf.create({"_target_": "scraplab.losses.SCRAPLLoss", "_partial_": True}), s)
    full = build_loss(OmegaConf.create({"_target_": "scraplab.losses.SCRAPLLoss", "_partial_": True}), cls())
    assert small.n_paths < full.n_paths
    assert pickle.loads(pickle.dumps(s)).jtfs_defaults == s.jtfs_defaults
    with pytest.raises(ValueError, match="unknown jtfs setting"):
        cls(jtfs={"j": 8})
