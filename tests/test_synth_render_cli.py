"""`scraplab render synth=NAME n=N out=DIR` end to end, and every shipped synth config."""
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from scraplab.cli import render
from scraplab.locations import config_dir
from scraplab.synths.base import Synth

EXPECTED = {"granular": (8192, 32768, 2), "chirplet": (8192, 32768, 2), "tr808": (44100, 44100, 14)}


def test_render_cli_end_to_end(tmp_path):
    out = tmp_path / "tr808"
    proc = subprocess.run([sys.executable, "-m", "scraplab.cli", "render", "synth=tr808", "n=3", f"out={out}", "seed=11"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((out / "params.json").read_text())
    assert meta["sample_rate"] == 44100 and len(meta["files"]) == 3
    assert [f["seed"] for f in meta["files"]] == [11, 12, 13]
    for f in meta["files"]:
        x, sr = sf.read(out / f["file"])
        assert sr == 44100 and x.shape == (44100,) and np.isfinite(x).all() and np.abs(x).max() > 0.5
        assert set(f["theta"]) == set(f["physical"]) == set(meta["param_names"]) and len(f["theta"]) == 14
        assert all(0 <= v <= 1 for v in f["theta"].values())
        assert 20 <= f["physical"]["osc1_freq"] <= 2000 and -60 <= f["physical"]["noise_gain"] <= 6


@pytest.mark.parametrize("name", ["granular", "chirplet"])
def test_render_raw_matches_synth_output(tmp_path, name):
    path = render.render(name, 2, tmp_path, seed=5, normalize=False)
    meta = json.loads(path.read_text())
    synth, _ = render.load_synth(name)
    sr, n, u = EXPECTED[name]
    assert (meta["sample_rate"], meta["n_samples"], len(meta["param_names"])) == (sr, n, u)
    for f in meta["files"]:
        x, file_sr = sf.read(tmp_path / f["file"], dtype="float32")
        theta = torch.tensor([[f["theta"][k] for k in synth.param_names]], dtype=torch.float64)
        y = synth(theta.float(), torch.tensor([f["seed"]]))[0, 0].numpy()
        assert file_sr == sr and np.allclose(x, y, atol=1e-6)
        phys = synth.to_physical(theta)
        assert all(np.isclose(f["physical"][k], v.item(), rtol=1e-9) for k, v in phys.items())


def test_render_overrides_and_errors(tmp_path, capsys):
    assert render.main(["synth=chirplet", "n=1", f"out={tmp_path}", "synth.max_shift=0"]) == 0
    assert json.loads((tmp_path / "params.json").read_text())["config"]["max_shift"] == 0
    assert render.main(["synth=nope", "n=1", f"out={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "unknown synth 'nope'" in err and "granular" in err and "tr808" in err
    for argv, msg in [(["synth=tr808", f"out={tmp_path}"], "missing n"),
                      (["synth=tr808", "n=x", f"out={tmp_path}"], "n must be an integer"),
                      (["synth=tr808", "n=1", f"out={tmp_path}", "foo=1"], "unknown argument 'foo'"),
                      (["synth=tr808", "n=1", f"out={tmp_path}", "synth.bogus=1"], "cannot build synth")]:
        assert render.main(argv) == 2
        assert msg in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted((config_dir() / "synth").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_synth_config_builds_and_renders(path):
    synth, cfg = render.load_synth(path.stem)
    assert isinstance(synth, Synth) and cfg["_target_"].startswith("scraplab.synths.")
    y = synth(synth.random_theta(torch.arange(2)), torch.arange(2))
    assert y.shape == (2, 1, synth.n_samples) and torch.isfinite(y).all()


def test_chirplet_presets_use_the_authors_configured_ranges():
    ranges = {}
    for name in ("am_lo_fm_lo", "am_lo_fm_med", "am_hi_fm_med", "am_hi_fm_hi"):
        s, _ = render.load_synth(f"chirplet_{name}")
        ranges[name] = tuple((p.min, p.max) for p in s.params)
    assert ranges == {"am_lo_fm_lo": ((0.9899, 1.9799), (0.5, 1.0)), "am_lo_fm_med": ((0.9899, 1.9799), (2.0, 4.0)),
                      "am_hi_fm_med": ((3.9598, 7.9196), (2.0, 4.0)), "am_hi_fm_hi": ((3.9598, 7.9196), (8.0, 16.0))}
