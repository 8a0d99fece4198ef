"""Export of a tiny trained encoder: TorchScript (and ONNX when installed) equals the eager model to 1e-5."""
import json
from pathlib import Path

import pytest
import torch

from scraplab.cli.checkpoint import load_encoder
from scraplab.cli.train import train
from scraplab.cli.export import ExportError, ExportableMatcher, ThetaToPhysical, export, export_synth, main, parse_args
from train_helpers import tiny_cfg


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    metrics = train(tiny_cfg("granular", "param", run))
    return Path(metrics["best_checkpoint"] or run / "checkpoints" / "last.ckpt")


def _audio(synth, batch=3):
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        return synth(torch.rand(batch, synth.n_params, generator=g), torch.arange(batch))[:, 0]


def _eager(ckpt, x):
    synth, encoder, _ = load_encoder(ckpt)
    with torch.no_grad():
        theta = encoder(x)
        phys = synth.to_physical(theta)
    return theta, torch.stack([phys[n] for n in synth.param_names], dim=1)


def test_torchscript_export_equals_the_eager_model(ckpt, tmp_path):
    out = tmp_path / "enc.pt"
    assert main([f"ckpt={ckpt}", "format=torchscript", f"out={out}"]) == 0
    meta = json.loads(Path(str(out) + ".json").read_text())
    assert [p["name"] for p in meta["params"]] == ["density", "slope"] and meta["n_samples"] == 8192
    synth, _, _ = load_encoder(ckpt)
    x = _audio(synth, batch=3)  # traced with batch 1: the batch dimension stays dynamic
    theta, phys = torch.jit.load(str(out))(x)
    theta_e, phys_e = _eager(ckpt, x)
    assert theta.shape == (3, 2) and (theta_e - 0.5).abs().max() > 1e-4  # a real prediction, not a constant
    torch.testing.assert_close(theta, theta_e, atol=1e-5, rtol=0)
    torch.testing.assert_close(phys, phys_e, atol=1e-5, rtol=1e-6)


def test_pt2_export_equals_the_eager_model(ckpt, tmp_path):
    out = tmp_path / "enc.pt2"
    assert main([f"ckpt={ckpt}", "format=pt2", f"out={out}"]) == 0
    synth, _, _ = load_encoder(ckpt)
    x = _audio(synth, batch=3)
    theta, phys = torch.export.load(str(out)).module()(x)
    theta_e, phys_e = _eager(ckpt, x)
    torch.testing.assert_close(theta, theta_e, atol=1e-5, rtol=0)
    torch.testing.assert_close(phys, phys_e, atol=1e-5, rtol=1e-6)


def test_onnx_export_equals_the_eager_model(ckpt, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    out = tmp_path / "enc.onnx"
    export(ckpt, "onnx", out)
    synth, _, _ = load_encoder(ckpt)
    x = _audio(synth, batch=3)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    theta, phys = sess.run(None, {"audio": x.numpy()})
    theta_e, phys_e = _eager(ckpt, x)
    torch.testing.assert_close(torch.from_numpy(theta), theta_e, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.from_numpy(phys), phys_e, atol=1e-5, rtol=1e-6)


def test_theta_mapping_matches_the_synth_table():
    from scraplab.synths import TR808Synth
    from scraplab.synths.base import Param

    synth = TR808Synth(n_samples=8192)
    params = list(synth.params) + [Param("f", 20.0, 20000.0, "log", "Hz")]
    theta = torch.rand(5, len(params), generator=torch.Generator().manual_seed(0))
    got = ThetaToPhysical(params)(theta)
    want = torch.stack([p.to_physical(theta[:, i]) for i, p in enumerate(params)], dim=1)
    torch.testing.assert_close(got, want)


def test_bad_arguments_and_files_give_clear_errors(tmp_path, capsys):
    with pytest.raises(ValueError, match="missing out"):
        parse_args(["ckpt=x.ckpt"])
    with pytest.raises(ValueError, match="unknown key 'fmt'"):
        parse_args(["ckpt=x", "out=y", "fmt=onnx"])
    assert main([f"ckpt={tmp_path / 'none.ckpt'}", f"out={tmp_path / 'o.pt'}"]) == 2
    assert "none.ckpt does not exist" in capsys.readouterr().err


def test_matcher_is_the_encoder_plus_mapping(ckpt):
    synth, encoder, _ = load_encoder(ckpt)
    x = _audio(synth, batch=2)
    theta, phys = ExportableMatcher(encoder, synth)(x)
    theta_e, phys_e = _eager(ckpt, x)
    assert torch.equal(theta, theta_e)
    torch.testing.assert_close(phys, phys_e)


def test_real_arithmetic_frontend_equals_the_complex_one(ckpt):
    from scraplab.cli.export import RealLogCQT

    synth, encoder, _ = load_encoder(ckpt)
    x = _audio(synth, batch=2)
    ref = encoder.frontend(x)
    torch.testing.assert_close(RealLogCQT(encoder.frontend)(x), ref, atol=1e-5 * float(ref.abs().max()), rtol=0)


@pytest.mark.parametrize("name", ["GranularSynth", "ChirpletSynth", "TR808Synth"])
def test_synths_that_cannot_be_traced_are_refused_plainly(name, tmp_path):
    import scraplab.synths as synths

    synth = getattr(synths, name)(n_samples=8192)
    out = tmp_path / "s.pt"
    with pytest.raises(ExportError, match=f"{name} cannot be"):
        export_synth(synth, out)
    assert not out.exists()


def test_cli_synth_true_fails_before_writing_anything(ckpt, tmp_path, capsys):
    out = tmp_path / "enc.pt"
    assert main([f"ckpt={ckpt}", f"out={out}", "synth=true"]) == 2
    assert "GranularSynth cannot be traced" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
