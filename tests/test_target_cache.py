"""The targets' JTFS coefficients cache of the evaluation metrics: same distances, computed once, never stale."""
import torch

from scraplab.losses import SCRAPLLoss
from scraplab.metrics.audio import jtfs_distance
from scraplab.metrics.target_cache import TargetCoefficientCache
from scraplab.training.eval_audio import EvalAudioMetrics

N = 2048


def _loss(**kw):
    return SCRAPLLoss(N, J=6, Q=(4, 1), J_fr=2, Q_fr=1, **kw)


def _pair(seed=0, B=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, 1, N, generator=g), torch.randn(B, 1, N, generator=g)


def test_cached_distance_equals_the_direct_one_and_each_target_is_transformed_once():
    loss, cache = _loss(log1p=True), TargetCoefficientCache()
    x_hat, x = _pair()
    direct = jtfs_distance(loss, x_hat, x)
    first = jtfs_distance(loss, x_hat, x, target_cache=cache)
    assert cache.misses == 3 and cache.hits == 0
    torch.testing.assert_close(first, direct, rtol=1e-5, atol=0)
    again = jtfs_distance(loss, torch.flip(x_hat, [0]), x, target_cache=cache)  # other predictions, same targets
    assert cache.misses == 3 and cache.hits == 3
    torch.testing.assert_close(again, jtfs_distance(loss, torch.flip(x_hat, [0]), x), rtol=1e-5, atol=0)
    x2 = x.clone()
    x2[1, 0, 100] += 0.5  # one changed sound: one new entry, its distance from fresh coefficients
    changed = jtfs_distance(loss, x_hat, x2, target_cache=cache)
    assert cache.misses == 4
    torch.testing.assert_close(changed, jtfs_distance(loss, x_hat, x2), rtol=1e-5, atol=0)
    jtfs_distance(_loss(log1p=False), x_hat, x, target_cache=cache)  # other metric settings: other keys
    assert cache.misses == 7


def test_folder_cache_serves_a_later_process_and_recomputes_a_torn_file(tmp_path):
    loss = _loss()
    x_hat, x = _pair(1)
    a = TargetCoefficientCache(tmp_path)
    d1 = jtfs_distance(loss, x_hat, x, paths=8, target_cache=a)
    files = sorted(tmp_path.rglob("*.pt"))
    assert len(files) == 3
    b = TargetCoefficientCache(tmp_path)  # a new process: memory empty
    d2 = jtfs_distance(loss, x_hat, x, paths=8, target_cache=b)
    assert b.hits == 3 and b.misses == 0
    torch.testing.assert_close(d2, d1, rtol=0, atol=0)
    files[0].write_bytes(b"torn")
    c = TargetCoefficientCache(tmp_path)
    d3 = jtfs_distance(loss, x_hat, x, paths=8, target_cache=c)
    assert c.misses == 1 and c.hits == 2
    torch.testing.assert_close(d3, d1, rtol=1e-5, atol=0)


def test_eval_metrics_with_and_without_the_cache_agree():
    from scraplab.synths.chirplet import ChirpletSynth
    synth = ChirpletSynth()
    g = torch.Generator().manual_seed(2)
    x_hat, x = (torch.randn(2, 1, synth.n_samples, generator=g) for _ in range(2))
    on = EvalAudioMetrics(synth, mss=False, jtfs_paths=4, features=False)
    off = EvalAudioMetrics(synth, mss=False, jtfs_paths=4, features=False, target_cache="off")
    assert off.target_cache is None and on.target_cache is not None
    key = on.jtfs_key
    torch.testing.assert_close(on(x_hat, x)[key], off(x_hat, x)[key], rtol=1e-5, atol=0)
    on(x_hat, x)
    assert on.target_cache.hits == 2


def test_a_bounded_cache_evicts_the_least_recently_used_rows():
    loss = _loss()
    _, x = _pair(B=4)
    x = x.reshape(4, N)
    one = TargetCoefficientCache().get(loss, x[:1], [0])[0]
    cache = TargetCoefficientCache(max_mb=2.5 * one.numel() * one.element_size() / 2**20)  # room for two rows
    cache.get(loss, x[:2], [0])
    cache.get(loss, x[:1], [0])  # row 0 used again: row 1 is now the oldest
    cache.get(loss, x[2:3], [0])  # a third row evicts row 1, not row 0
    assert len(cache.memory) == 2 and cache.bytes <= cache.max_bytes
    misses = cache.misses
    cache.get(loss, x[:1], [0])
    assert cache.misses == misses  # row 0 kept
    cache.get(loss, x[1:2], [0])
    assert cache.misses == misses + 1  # row 1 was evicted


def test_scrapl_training_targets_are_transformed_once_per_sound_and_path_and_never_stale():
    torch.manual_seed(0)
    plain, cached = _loss(), _loss(target_cache_mb=64)
    x_hat, x = _pair(B=4)
    x_hat = x_hat.double().requires_grad_(True)
    plain, cached = plain.double(), cached.double()
    store = cached.target_store
    for step in range(3):  # each "epoch" renders the same sounds again as new tensors, as the training step does
        for p in (0, 5):
            target = x.double().clone()
            g_plain = torch.autograd.grad(plain(x_hat, target, paths=[p]), x_hat)[0]
            v = cached(x_hat, target, paths=[p])
            g_cached = torch.autograd.grad(v, x_hat)[0]
            torch.testing.assert_close(v, plain(x_hat, target, paths=[p]), rtol=1e-12, atol=0)
            torch.testing.assert_close(g_cached, g_plain, rtol=1e-10, atol=1e-14)
    assert store.misses == 2 * 4 and store.hits == 2 * 2 * 4  # 4 sounds × 2 paths, computed in the first epoch only
    both = cached(x_hat, x.double().clone(), paths=[5, 0, 7])  # entries are per path: 0 and 5 reused, 7 computed
    assert store.misses == 3 * 4 and store.hits == 2 * 2 * 4 + 2 * 4
    torch.testing.assert_close(both, plain(x_hat, x.double().clone(), paths=[5, 0, 7]), rtol=1e-12, atol=0)
    changed = x.double().clone()
    changed[2, 0, 100] += 1e-3  # one changed sound is a new key: recomputed, not served stale
    cached(x_hat, changed, paths=[0])
    assert store.misses == 3 * 4 + 1
    torch.testing.assert_close(cached(x_hat, changed, paths=[0]), plain(x_hat, changed, paths=[0]), rtol=1e-12, atol=0)


def test_scrapl_target_cache_size_is_checked():
    import pytest

    with pytest.raises(ValueError, match="target_cache_mb"):
        _loss(target_cache_mb=-1)
    with pytest.raises(ValueError, match="max_mb"):
        TargetCoefficientCache(max_mb=0)
