"""Encoder: log-CQT front end and the paper's Spectral2DCNN sizes."""
import math

import pytest
import torch

from scraplab.models.encoder import Encoder, cqt_settings, n_weights
from scraplab.models.frontend import LogCQT


def test_paper_sizes_match_the_paper_encoders():
    two = Encoder(8192, 32768, 2, J=5, Q=12, channels=128, latent_dim=64, dropout=0.5)
    fourteen = Encoder(44100, 44100, 14, J=9, Q=12, channels=128, latent_dim=128, dropout=0.25,
                       pool_sizes=[(2, 2), (2, 2), (2, 3), (3, 3), (3, 3)])
    assert n_weights(two) == 604_106
    assert n_weights(fourteen) == 724_642
    # same scalogram shapes as the authors' nnAudio front end (bins) and one frame per hop
    assert (two.frontend.n_bins, two.frontend.n_frames) == (60, 128)
    assert fourteen.frontend.n_bins == 108


def test_cqt_peaks_at_the_tones_bin_with_unit_amplitude():
    cqt = LogCQT(8192, 8192, J=5, Q=12, hop_length=256)
    k = 37
    f = float(cqt.freqs[k])
    x = 0.5 * torch.sin(2 * math.pi * f * torch.arange(8192) / 8192)[None]
    u = cqt.magnitude(x)  # (1, 60, 32)
    profile = u[0, :, 4:-4].mean(-1)
    assert int(profile.argmax()) == k
    assert abs(float(profile[k]) - 0.5) < 0.02  # envelope = amplitude at the centre frequency
    assert float(profile[k + 3]) < 0.01  # three bins (a quarter octave) away: strongly attenuated


def test_encoder_output_is_in_unit_range_and_differentiable():
    enc = Encoder(8192, 8192, 3, channels=8, latent_dim=8)
    x = torch.randn(4, 1, 8192)
    theta = enc(x)
    assert theta.shape == (4, 3)
    assert bool(((theta > 0) & (theta < 1)).all())
    theta.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())


def test_for_synth_follows_the_synth_and_its_cqt_defaults():
    class FakeSpec:  # only the attributes the encoder reads (not a synth)
        sample_rate, n_samples, n_params = 44100, 22050, 14
        cqt_defaults = {"n_octaves": 9, "bins_per_octave": 12, "hop": 256}

    enc = Encoder.for_synth(FakeSpec(), channels=4, latent_dim=8, J=None)
    assert enc.frontend.n_bins == 108 and enc.frontend.hop_length == 256 and enc.n_params == 14
    assert cqt_settings({"J_cqt": 5, "Q_cqt": 12, "hop_len": 128}) == {"J": 5, "Q": 12, "hop_length": 128}
    assert Encoder.for_synth(FakeSpec(), channels=4, latent_dim=8, J=8).frontend.n_bins == 96  # explicit wins


def test_bad_input_length_and_bins_above_nyquist_raise():
    enc = Encoder(8192, 8192, 2, channels=4, latent_dim=8)
    with pytest.raises(ValueError, match="8192"):
        enc(torch.randn(2, 1, 4096))
    with pytest.raises(ValueError, match="Nyquist"):
        LogCQT(8192, 8192, J=5, Q=12, fmin=2000.0)


def test_encoder_weights_names_missing_extra_and_misshaped_keys():
    from scraplab.models.encoder import Spectral2DCNN, encoder_weights
    enc = Spectral2DCNN((24, 16), n_params=2, channels=4, latent_dim=8)
    state = {f"encoder.{k}": v.clone() for k, v in enc.state_dict().items()}
    weights, bad = encoder_weights({**state, "sampler.x": torch.zeros(1)}, enc)
    assert bad == [] and set(weights) == set(enc.state_dict())  # other prefixes are not the encoder's
    key = "shared.0.weight"
    state_bad = {**state, f"encoder.{key}": torch.zeros(3, 3), "encoder.extra": torch.zeros(1)}
    del state_bad["encoder.heads.0.0.bias"]
    _, bad = encoder_weights(state_bad, enc)
    assert set(bad) == {key, "extra", "heads.0.0.bias"}
