"""The hydrogen-drumkits preparation (fixed split by kit, mono 44.1 kHz 1 s onset-aligned) on generated kits."""
import csv

import numpy as np
import pytest
import soundfile as sf

from scraplab.data.datamodule import WavDataModule
from scraplab.data.drums import KIT_SPLITS, PRE_ROLL, DrumPrepError, onset_index, prepare
from train_helpers import write_wav


def _hit(sr: int, delay_s: float, channels: int = 1, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    x = np.where(t >= delay_s, np.sin(2 * np.pi * 180 * (t - delay_s)) * np.exp(-12 * (t - delay_s)), 0.0)
    x = (0.8 * x).astype(np.float32)
    return x if channels == 1 else np.stack([x, 0.5 * x], axis=1)


@pytest.fixture()
def kits(tmp_path):
    root = tmp_path / "drumkits"
    write_wav(root / "BJA_Pacific" / "kick.wav", _hit(48000, 0.1, channels=2), 48000)
    write_wav(root / "BJA_Pacific" / "layers" / "snare.flac", _hit(44100, 0.02), 44100)
    write_wav(root / "BJA_Pacific" / "emptySample.wav", np.zeros(100, np.float32), 44100)
    (root / "BJA_Pacific" / "broken.wav").write_bytes(b"not audio")
    write_wav(root / "Audiophob" / "tom.wav", _hit(22050, 0.01), 22050)
    write_wav(root / "ColomboAcousticDrumkit" / "hat.wav", _hit(44100, 0.3, seconds=2.0), 44100)
    (root / "ColomboAcousticDrumkit" / "drumkit.xml").write_text("<drumkit_info/>")
    licence = tmp_path / "copyright"
    licence.write_text("licences of the kits")
    return root, licence


def test_prepare_splits_by_kit_and_aligns_onsets(kits, tmp_path, capsys):
    root, licence = kits
    out = tmp_path / "drums"
    rows = prepare(root, out, licence)
    assert sorted((r["split"], r["kit"]) for r in rows) == [("test", "ColomboAcousticDrumkit"), ("train", "BJA_Pacific"),
                                                           ("train", "BJA_Pacific"), ("val", "Audiophob")]
    err = capsys.readouterr().err
    assert "emptySample.wav" in err and "broken.wav" in err  # skipped, named
    for r in rows:
        x, sr = sf.read(str(out / r["file"]), always_2d=True)
        assert sr == 44100 and x.shape == (44100, 1)  # mono, 44.1 kHz, 1 s
        assert abs(onset_index(x[:, 0]) - PRE_ROLL) <= 3  # the hit starts just after the pre-roll
    kick = next(r for r in rows if r["source"] == "kick.wav")
    assert 0 <= kick["onset"] - (4800 - round(PRE_ROLL * 48000 / 44100)) <= 8  # cut point in source samples
    listed = list(csv.DictReader(open(out / "filelist.csv")))
    assert [r["file"] for r in listed] == [r["file"] for r in rows]
    assert (out / "LICENSE.hydrogen-drumkits").read_text() == "licences of the kits"
    dm = WavDataModule(str(out), synth_sample_rate=44100, n_samples=44100)
    dm.setup()
    assert {s: len(d) for s, d in dm.splits.items()} == {"train": 2, "val": 1, "test": 1}  # the kit split, fixed


def test_prepare_refuses_unknown_kits_and_empty_folders(tmp_path):
    write_wav(tmp_path / "kits" / "MyOwnKit" / "a.wav", _hit(44100, 0.0), 44100)
    with pytest.raises(DrumPrepError, match="MyOwnKit"):
        prepare(tmp_path / "kits", tmp_path / "out")
    with pytest.raises(DrumPrepError, match="no kit folders"):
        prepare(tmp_path / "nothing", tmp_path / "out")
    assert len(KIT_SPLITS) == 14 and sorted(set(KIT_SPLITS.values())) == ["test", "train", "val"]


@pytest.mark.slow
def test_real_drums_preset_trains_and_reports_the_808_metrics(kits, tmp_path):
    from scraplab.cli.train import train
    from train_helpers import compose_cfg
    root, _ = kits
    prepare(root, tmp_path / "drums")
    cfg = compose_cfg(["experiment=cpu_tr808_real", f"data.path={tmp_path / 'drums'}", "trainer.max_steps=2",
                       "trainer.val_check_interval=1", "data.batch_size=1"], tmp_path / "run")
    m = train(cfg)
    assert m["status"] == "ok" and m["steps"] == 2
    for key in ("audio/logmel_l1", "audio/mss_log_lin", "audio/loudness_transient", "theta_spread_ratio"):
        assert f"test/{key}" in m
    assert any(k.startswith("test/audio/jtfs_all") for k in m)  # the JTFS distance on all paths
