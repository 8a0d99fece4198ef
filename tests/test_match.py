"""match.py and eval.py end to end on a tiny trained checkpoint and generated WAVs; W&B offline logging."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from scraplab.cli.train import train
from scraplab.locations import repo_root
from train_helpers import compose_cfg, tiny_cfg, tone, write_wav


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    metrics = train(tiny_cfg("granular", "mss", run))
    return Path(metrics["best_checkpoint"] or run / "checkpoints" / "last.ckpt")


def test_match_cli_writes_physical_params_and_the_resynthesis(trained, tmp_path):
    inp = tmp_path / "in"
    write_wav(inp / "stereo_48k.wav", tone(48000, 0.5, freq=600.0, channels=2), 48000)
    write_wav(inp / "mono.wav", tone(8192, 2.0, freq=300.0), 8192)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(repo_root() / "match.py"), f"ckpt={trained}", f"input={inp}",
                           f"out={out}", f"hydra.run.dir={tmp_path / 'hydra'}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "params.json").read_text())
    assert report["sample_rate"] == 8192 and len(report["matches"]) == 2
    for m in report["matches"]:
        assert set(m["physical"]) == {"density", "slope"}
        assert all(0.0 <= v <= 1.0 for v in m["theta"].values())
        audio, sr = sf.read(str(out / m["match_wav"]))
        assert sr == 8192 and audio.shape == (8192,) and abs(audio).max() > 0
    rows = list(csv.reader((out / "params.csv").open()))
    assert rows[0][0] == "file" and len(rows) == 3 and "density" in rows[0][1]


def _report_rows_and_media(folder: Path) -> tuple[int, list[str]]:
    """Rows and referenced media of report.html, read with html.parser."""
    from html.parser import HTMLParser

    class Reader(HTMLParser):
        rows, srcs = 0, []

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "tr" and a.get("class") == "record":
                Reader.rows += 1
            if tag in ("audio", "img"):
                Reader.srcs.append(a["src"])

    Reader.rows, Reader.srcs = 0, []
    Reader().feed((folder / "report.html").read_text())
    return Reader.rows, Reader.srcs


def test_match_writes_a_listening_report(trained, tmp_path):
    from scraplab.cli.match import match

    inp = tmp_path / "in"
    write_wav(inp / "one.wav", tone(8192, 1.0, freq=400.0), 8192)
    write_wav(inp / "two.wav", tone(8192, 1.0, freq=900.0), 8192)
    match(str(trained), str(inp), str(tmp_path / "out"))
    rows, srcs = _report_rows_and_media(tmp_path / "out")
    assert rows == 2 and len(srcs) == 6  # two players and one image per file
    assert all((tmp_path / "out" / s).is_file() for s in srcs) and not any(s.startswith("http") for s in srcs)
    assert "mss_lin" in (tmp_path / "out" / "report.html").read_text()


def test_match_names_an_unreadable_input(trained, tmp_path):
    from scraplab.cli.match import match
    from scraplab.data.wav_folder import WavLoadError

    bad = tmp_path / "snare.wav"
    bad.write_bytes(b"not a wav at all")
    with pytest.raises(WavLoadError, match="snare.wav"):
        match(str(trained), str(bad), str(tmp_path / "out"))


def test_eval_reproduces_the_checkpoint_test_metric(trained, tmp_path):
    from scraplab.cli.eval import evaluate

    cfg = compose_cfg([f"ckpt={trained}"], tmp_path, config_name="eval")
    metrics = evaluate(cfg)
    assert 0 < metrics["test/theta_l1_permille"] < 1000
    assert json.loads((tmp_path / "metrics.json").read_text())["checkpoint"] == str(trained)
    rows, srcs = _report_rows_and_media(tmp_path)
    assert rows >= 1 and all((tmp_path / s).is_file() for s in srcs)
    assert "theta_l1_permille" in (tmp_path / "report.html").read_text()


def test_wandb_offline_run_writes_its_files(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    cfg = tiny_cfg("granular", "mss", tmp_path, ["logger=wandb"])
    train(cfg)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert runs, os.listdir(tmp_path)
    files = [p for p in runs[0].rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files)
    media = [p for p in files if "media" in p.parts]
    assert any(p.suffix == ".wav" for p in media) and any(p.suffix == ".png" for p in media)
    assert not (tmp_path / "audio").exists()  # media went to W&B, not to loose files


# ----------------------------------------------------------------------------------------------- mode=optimize
SHORT_CHIRPLET = ["synth=chirplet", "synth.n_samples=8192", "synth.max_shift=256"]


def _inputs(folder: Path) -> Path:
    write_wav(folder / "a" / "kick.wav", tone(8192, 1.0, freq=500.0), 8192)
    write_wav(folder / "b" / "kick.wav", tone(44100, 0.5, freq=700.0, channels=2), 44100)
    write_wav(folder / "kick.flac", tone(8192, 1.0, freq=300.0), 8192)
    return folder


def test_match_optimize_cli_writes_params_losses_and_curves(tmp_path):
    inp, out = _inputs(tmp_path / "in"), tmp_path / "out"
    proc = subprocess.run([sys.executable, str(repo_root() / "match.py"), "mode=optimize", *SHORT_CHIRPLET,
                           "loss=scrapl", "optimize.optimizer=p_saga", "optimize.steps=3", "optimize.restarts=2",
                           "optimize.progress=false", f"input={inp}", f"out={out}",
                           f"hydra.run.dir={tmp_path / 'hydra'}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "params.json").read_text())
    assert report["mode"] == "optimize" and report["optimizer"] == "p_saga" and len(report["matches"]) == 3
    wavs = {m["match_wav"] for m in report["matches"]}
    assert len(wavs) == 3  # three inputs named kick: three distinct outputs
    for m in report["matches"]:
        assert m["final_loss"] > 0 and m["best_restart"] in (0, 1) and m["steps"] == 3
        assert set(m["theta"]) == {"am_rate", "fm_rate"}
        audio, sr = sf.read(str(out / m["match_wav"]))
        assert sr == 8192 and audio.shape == (8192,)
    rows = list(csv.reader((out / "loss_curves.csv").open()))
    assert len(rows) == 4 and len(rows[0]) == 4 and (out / "loss_curves.png").stat().st_size > 0
    assert list(csv.reader((out / "params.csv").open()))[0][-1] == "final_loss"
    rows, _ = _report_rows_and_media(out)
    assert rows == 3 and "final_loss" in (out / "report.html").read_text()


def _match_cfg(tmp_path, overrides):
    return compose_cfg(["mode=optimize", "optimize.progress=false", f"input={_inputs(tmp_path / 'in')}",
                        f"out={tmp_path / 'out'}", *overrides], tmp_path, config_name="match")


def test_match_optimize_starts_from_the_checkpoint(trained, tmp_path):
    from scraplab.cli.checkpoint import load_encoder
    from scraplab.cli.match import match_optimize
    from scraplab.data.wav_folder import list_audio, load_audio
    import torch

    cfg = _match_cfg(tmp_path, [f"ckpt={trained}", "loss=mss", "optimize.optimizer=adam", "optimize.steps=1",
                                "optimize.restarts=1", "optimize.lr=1e-6"])
    records = match_optimize(cfg)
    synth, encoder, _ = load_encoder(trained)
    x = torch.stack([load_audio(f, synth.sample_rate, synth.n_samples) for f in list_audio(tmp_path / "in")])
    with torch.no_grad():
        theta = encoder(x)
    got = torch.tensor([[r["theta"][n] for n in synth.param_names] for r in records])
    torch.testing.assert_close(got, theta, atol=1e-4, rtol=0)  # one tiny step away from the encoder's θ


@pytest.mark.parametrize("overrides, match", [
    (["loss=mss"], "needs a synth"),
    ([*SHORT_CHIRPLET, "loss=mss", "optimize.optimizer=p_adam"], "path-aware and needs a path loss"),
    ([*SHORT_CHIRPLET, "loss=mss", "optimize.optimizer=sgd"], "optimize.optimizer must be one of"),
    ([*SHORT_CHIRPLET, "loss=mss", "batch_size=-1"], "batch_size must be >= 1"),
])
def test_match_optimize_bad_settings_are_named(tmp_path, overrides, match):
    from scraplab.cli.match import match_optimize

    with pytest.raises(ValueError, match=match):
        match_optimize(_match_cfg(tmp_path, overrides))


def test_match_encoder_mode_refuses_a_bad_batch_size(trained, tmp_path):
    from scraplab.cli.match import match

    with pytest.raises(ValueError, match="batch_size"):
        match(str(trained), str(_inputs(tmp_path / "in")), str(tmp_path / "out"), batch_size=-1)


# ----------------------------------------------------------------------------------------------- safety (issue 13)
def test_match_refuses_an_output_folder_inside_the_input(trained, tmp_path):
    from scraplab.cli.match import match

    inp = tmp_path / "in"
    write_wav(inp / "kick.wav", tone(8192, 1.0), 8192)
    for out in (inp, inp / "matched"):
        with pytest.raises(ValueError, match="inside the input folder"):
            match(str(trained), str(inp), str(out))
    assert sorted(p.name for p in inp.rglob("*")) == ["kick.wav"]  # nothing written there


def test_match_skips_bad_files_on_request_and_lists_them(trained, tmp_path):
    from scraplab.cli.match import match
    from scraplab.data.wav_folder import WavLoadError

    inp = tmp_path / "in"
    write_wav(inp / "good.wav", tone(8192, 1.0), 8192)
    (inp / "broken.wav").write_bytes(b"RIFF junk")
    (inp / "empty.wav").write_bytes(b"")
    with pytest.raises(WavLoadError, match=r"2 unreadable input file\(s\)(.|\n)*broken.wav(.|\n)*empty.wav"):
        match(str(trained), str(inp), str(tmp_path / "out"))
    with pytest.warns(UserWarning, match="skipped 2 unreadable"):
        records = match(str(trained), str(inp), str(tmp_path / "out"), on_bad_file="skip")
    assert [Path(r["file"]).name for r in records] == ["good.wav"]


def test_match_cli_errors_are_one_line_with_an_exit_code(tmp_path):
    inp = tmp_path / "in"
    write_wav(inp / "kick.wav", tone(8192, 1.0), 8192)
    proc = subprocess.run([sys.executable, str(repo_root() / "match.py"), "mode=optimize", "loss=mss",
                           f"input={inp}", f"out={tmp_path / 'out'}", f"hydra.run.dir={tmp_path / 'h'}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "needs a synth" in proc.stderr and "Traceback" not in proc.stderr


def test_long_files_are_read_only_as_far_as_needed(tmp_path, monkeypatch):
    """A long 48 kHz stereo file: the same audio as resampling it whole and cropping, from a bounded read."""
    import numpy as np
    import soundfile
    import torch

    from scraplab.data import wav_folder

    sr, n_out, out_sr = 48000, 8192, 8192
    x = tone(sr, 6.0, freq=700.0, channels=2, decay=0.5)
    path = write_wav(tmp_path / "long.wav", x, sr)
    frames_read = []
    real_read = soundfile.read

    def spy(*args, **kw):
        frames_read.append(kw.get("frames", -1))
        return real_read(*args, **kw)

    monkeypatch.setattr(wav_folder.sf, "read", spy)
    got = wav_folder.load_audio(path, out_sr, n_out)
    whole, _ = real_read(str(path), dtype="float32", always_2d=True)
    ref = wav_folder.resample(torch.from_numpy(whole.mean(axis=1)), sr, out_sr)[:n_out]
    torch.testing.assert_close(got[0], ref, rtol=0, atol=1e-6)
    assert 0 < frames_read[0] < len(whole) // 4  # 1 s of output needs ~1 s of the 6 s file
    assert np.isfinite(got.numpy()).all()
