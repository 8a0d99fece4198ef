"""wav_folder data: stereo, 48 kHz, short, long, silent and corrupt files; resampling accuracy."""
import math

import numpy as np
import pytest
import torch

from scraplab.data.datamodule import WavDataModule
from scraplab.data.wav_folder import WavLoadError, list_audio, load_audio, resample
from train_helpers import tone, write_wav

SR, N = 8192, 8192


@pytest.mark.parametrize("orig,new", [(48000, 44100), (44100, 8192), (22050, 44100)])
def test_resample_keeps_a_tone_and_its_frequency(orig, new):
    x = torch.sin(2 * math.pi * 440 * torch.arange(orig // 2) / orig).double()
    y = resample(x, orig, new)
    assert y.shape[-1] == math.ceil(x.shape[-1] * new / orig)
    ref = torch.sin(2 * math.pi * 440 * torch.arange(y.shape[-1]) / new).double()
    assert float((y - ref)[100:-100].abs().max()) < 2e-3


def test_resample_removes_content_above_the_new_nyquist():
    x = torch.sin(2 * math.pi * 6000 * torch.arange(22050) / 22050)  # above 8192/2
    assert float(resample(x, 22050, 8192)[200:-200].abs().max()) < 0.02


def test_edge_case_files_load_to_the_synth_format(tmp_path):
    stereo = write_wav(tmp_path / "stereo.wav", tone(SR, 1.0, channels=2), SR)
    hi_rate = write_wav(tmp_path / "48k.wav", tone(48000, 1.0, freq=300.0), 48000)
    short = write_wav(tmp_path / "short.wav", tone(SR, 0.1), SR)
    long = write_wav(tmp_path / "long.wav", tone(SR, 3.0), SR)
    silent = write_wav(tmp_path / "silent.wav", np.zeros(SR, dtype=np.float32), SR)
    for f in (stereo, hi_rate, short, long, silent):
        x = load_audio(f, SR, N)
        assert x.shape == (1, N) and x.dtype == torch.float32 and torch.isfinite(x).all()
    st = tone(SR, 1.0, channels=2)
    assert torch.allclose(load_audio(stereo, SR, N)[0], torch.from_numpy(st.mean(1))[:N], atol=1e-4)  # downmix
    assert float(load_audio(short, SR, N)[0, int(0.1 * SR) + 1:].abs().max()) == 0.0  # zero padded
    assert torch.allclose(load_audio(long, SR, N)[0], torch.from_numpy(tone(SR, 3.0))[:N], atol=1e-4)  # cropped
    spec = torch.fft.rfft(load_audio(hi_rate, SR, N)[0]).abs()
    assert abs(int(spec.argmax()) * SR / N - 300.0) < 2.0  # pitch preserved through 48 kHz → 8192 Hz


def test_corrupt_file_error_names_the_file(tmp_path):
    bad = tmp_path / "broken kick.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    with pytest.raises(WavLoadError, match="broken kick.wav"):
        load_audio(bad, SR, N)
    write_wav(tmp_path / "good.wav", tone(SR, 0.5), SR)
    dm = WavDataModule(str(tmp_path), synth_sample_rate=SR, n_samples=N, batch_size=2)
    with pytest.raises(WavLoadError, match="broken kick.wav"):
        dm.setup()


def test_folder_datamodule_splits_and_warns_on_silence(tmp_path):
    for i in range(5):
        write_wav(tmp_path / "kit" / f"hit_{i}.wav", tone(SR, 0.5, freq=200 + 50 * i), SR)
    write_wav(tmp_path / "kit" / "sub" / "quiet.wav", np.zeros(1000, dtype=np.float32), SR)
    assert len(list_audio(tmp_path / "kit")) == 6  # recursive
    dm = WavDataModule(str(tmp_path / "kit"), synth_sample_rate=SR, n_samples=N, batch_size=2)
    with pytest.warns(UserWarning, match="silent"):
        dm.setup()
    sizes = [len(dm.splits[s]) for s in ("train", "val", "test")]
    assert sum(sizes) == 6 and min(sizes) >= 1
    batch = next(iter(dm.train_dataloader()))
    assert batch["audio"].shape == (2, 1, N) and not dm.has_theta


def test_missing_or_empty_folder_and_rate_mismatch_fail_at_start(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        WavDataModule(str(tmp_path / "nope"), synth_sample_rate=SR, n_samples=N)
    with pytest.raises(FileNotFoundError, match="no audio files"):
        WavDataModule(str(tmp_path), synth_sample_rate=SR, n_samples=N)
    write_wav(tmp_path / "a.wav", tone(SR, 0.2), SR)
    with pytest.raises(ValueError, match="sample-rate mismatch"):
        WavDataModule(str(tmp_path), synth_sample_rate=SR, n_samples=N, sample_rate=44100)
