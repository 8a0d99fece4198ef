"""Audio distances (full JTFS per example, path subsets, MSS) and step-cost helpers."""
import time

import pytest
import torch

from scraplab.losses import JTFSLoss
from scraplab.losses.spectral import MSSLoss, RevisitedMSSLoss
from scraplab.metrics.audio import MSSDistances, describe_paths, jtfs_distance, select_paths
from scraplab.metrics.cost import PeakMemory, StepTimer, time_summary

N = 512
KW = dict(shape=N, J=4, Q=(4, 2), J_fr=2, Q_fr=1)


@pytest.fixture(scope="module")
def pair():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 1, N, generator=g, dtype=torch.float64), torch.randn(2, 1, N, generator=g, dtype=torch.float64)


@pytest.fixture(scope="module")
def loss():
    return JTFSLoss(**KW).double()


def test_jtfs_distance_matches_full_loss(pair, loss):
    x_hat, x = pair
    d = jtfs_distance(loss, x_hat, x)
    assert d.shape == (2,) and bool((d > 0).all())
    torch.testing.assert_close(d.mean(), loss.full(x_hat, x).detach(), rtol=1e-10, atol=0)
    # per-example: the distance of example 1 alone equals entry 1; identical inputs give ≈ 0
    torch.testing.assert_close(jtfs_distance(loss, x_hat[1:2], x[1:2], paths=4)[0],
                               jtfs_distance(loss, x_hat, x, paths=4)[1], rtol=1e-10, atol=0)
    assert float(jtfs_distance(loss, x, x, paths=4).abs().max()) < 1e-6  # ‖S − S‖ smoothed at 0


def test_jtfs_path_subsets(pair, loss):
    P = loss.n_paths
    assert select_paths(P, 1) == [0] and select_paths(P, P) == list(range(P))
    sub = select_paths(P, 4)
    assert len(sub) == 4 and sub[0] == 0 and sub[-1] == P - 1
    x_hat, x = pair
    manual = torch.stack([jtfs_distance(loss, x_hat, x, paths=[p]) for p in sub]).mean(0)
    torch.testing.assert_close(jtfs_distance(loss, x_hat, x, paths=4), manual, rtol=1e-10, atol=0)
    assert describe_paths(P, None) == f"all {P} paths (exact)" and "subset" in describe_paths(P, 4)
    with pytest.raises(ValueError, match="out of|indices"):
        select_paths(P, [P])
    with pytest.raises(ValueError, match="number of paths"):
        select_paths(P, 0)
    with pytest.raises(TypeError):
        jtfs_distance(MSSLoss(), x_hat, x)


def test_mss_distances_per_example():
    g = torch.Generator().manual_seed(1)
    x_hat, x = torch.randn(2, 1, 2200, generator=g), torch.randn(2, 1, 2200, generator=g)
    d = MSSDistances()(x_hat, x)
    assert set(d) == {"mss_lin", "mss_log_lin", "mss_rev"} and all(v.shape == (2,) for v in d.values())
    torch.testing.assert_close(d["mss_rev"][1], RevisitedMSSLoss()(x_hat[1:2], x[1:2]))
    assert float(MSSDistances(["mss_lin"])(x, x)["mss_lin"].max()) < 1e-6
    assert bool((d["mss_log_lin"] > d["mss_lin"]).all())  # the log term only adds
    with pytest.raises(ValueError, match="unknown"):
        MSSDistances(["mss_clap"])


def test_time_summary_and_timer():
    s = time_summary([0.001, 0.002, 0.003, 0.004, 0.100], skip=0)
    assert s["median_ms"] == pytest.approx(3.0) and s["iqr_ms"] == pytest.approx(2.0) and s["n"] == 5
    assert time_summary([9.0, 0.001, 0.003], skip=1)["median_ms"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="no durations"):
        time_summary([1.0], skip=1)
    timer = StepTimer()
    for _ in range(3):
        with timer:
            time.sleep(0.01)
    assert len(timer.durations) == 3 and timer.summary()["median_ms"] >= 9.0
    with pytest.raises(RuntimeError):
        StepTimer().stop()


def test_peak_memory_cpu_is_high_water_mark_growth(monkeypatch):
    import scraplab.metrics.cost as cost

    readings = iter([100 * 2 ** 20, 164 * 2 ** 20])  # before / after the block
    monkeypatch.setattr(cost, "max_rss_bytes", lambda: next(readings))
    with PeakMemory("cpu") as pm:
        pass
    assert pm.peak_bytes == 64 * 2 ** 20 and pm.source.startswith("ru_maxrss")


def test_max_rss_is_plausible():
    from scraplab.metrics.cost import max_rss_bytes

    assert 10 * 2 ** 20 < max_rss_bytes() < 2 ** 40  # torch is imported: tens of MiB at least, in bytes not KiB


def test_step_cost_callback_times_every_training_step():
    import lightning as L

    from scraplab.metrics.cost import StepCostCallback

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 1)

        def training_step(self, batch, batch_idx):
            time.sleep(0.005)
            return self.lin(batch[0]).square().mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(16, 4)), batch_size=2)
    cb = StepCostCallback(skip=2)
    L.Trainer(max_steps=7, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, callbacks=[cb]).fit(Tiny(), data)
    m = cb.metrics()
    assert len(cb.timer.durations) == 7 and m["cost/n_steps"] == 5
    assert m["cost/ms_per_step_median"] >= 5.0 and m["cost/ms_per_step_iqr"] >= 0.0
    assert m["cost/peak_mem_mb"] >= 0.0 and m["cost/peak_mem_source"].startswith("ru_maxrss")


def _logmel_numpy(x, sr, n_fft=2048, hop=512, n_mels=128, eps=1e-5):
    """Independent float64 log-mel: reflect-padded Hann frames, numpy rfft, HTK-mel triangles."""
    import numpy as np
    x = np.pad(x, n_fft // 2, mode="reflect")
    frames = np.stack([x[i:i + n_fft] for i in range(0, len(x) - n_fft + 1, hop)])
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    power = np.abs(np.fft.rfft(frames * win, axis=1)) ** 2  # (T, F)
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    edges = 700 * (10 ** (np.linspace(mel(0.0), mel(sr / 2), n_mels + 2) / 2595) - 1)
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    fb = np.zeros((n_mels, freqs.size))
    for m in range(n_mels):
        lo, mid, hi = edges[m:m + 3]
        fb[m] = np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0, None)
    return np.log(power @ fb.T + eps)


def test_logmel_l1_matches_an_independent_computation():
    import numpy as np
    from scraplab.metrics.audio import logmel_l1
    g = torch.Generator().manual_seed(3)
    x, x_hat = torch.randn(2, 8000, generator=g, dtype=torch.float64), torch.randn(2, 8000, generator=g, dtype=torch.float64)
    x_hat[1] = x[1] * 0.5  # a level difference: log-mel L1 = |log(mel·0.25 + eps) − log(mel + eps)| ≈ log 4
    got = logmel_l1(x_hat, x, 22050)
    ref = [np.abs(_logmel_numpy(x_hat[i].numpy(), 22050) - _logmel_numpy(x[i].numpy(), 22050)).mean() for i in range(2)]
    torch.testing.assert_close(got.double(), torch.tensor(ref), rtol=1e-3, atol=1e-4)
    assert abs(float(got[1]) - np.log(4)) < 0.05
    assert float(logmel_l1(x, x, 22050).abs().max()) == 0.0
    with pytest.raises(ValueError, match="must be equal"):
        logmel_l1(x, x[:, :100], 22050)
