"""experiments/collapse_probe.py: the coherence measure, and the probe on generated one-shots."""
import json

import pytest
import torch

from experiment_scripts import load_experiment
from train_helpers import tone, write_wav

probe = load_experiment("collapse_probe")


def test_coherence_is_one_for_a_shared_push_and_zero_for_opposite_ones():
    same = torch.tensor([[1.0, -2.0]] * 4)
    assert probe.coherence(same)["coherence"] == pytest.approx(1.0)
    assert probe.coherence(same)["sign_agreement"] == 1.0
    opposite = torch.tensor([[1.0, 2.0], [-1.0, -2.0]])
    assert probe.coherence(opposite)["coherence"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.slow
def test_probe_runs_on_generated_drums(tmp_path):
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        for i in range(n):
            write_wav(tmp_path / "drums" / split / "kit" / f"{i}.wav", tone(44100, 0.5, 80.0 * (i + 1)), 44100)
    out = tmp_path / "p.json"
    doc = probe.main(["--overrides", "experiment=cpu_tr808_real", f"data.path={tmp_path / 'drums'}",
                      "--examples", "2", "--paths", "1", "--eps", "1e-3", "--json", str(out)])
    assert set(doc["rows"]) == {"mss_linear", "mss_log_lin", "mss_revisited", "mss_random", "scrapl_eps1e-3"}
    assert 0.0 <= doc["rows"]["mss_linear"]["coherence"] <= 1.0 + 1e-9
    assert json.loads(out.read_text())["examples"] == 2
