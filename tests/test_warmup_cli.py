"""``scraplab warmup``: path shards tile [0, P); sharded warm-up + merge gives the π that training loads."""
import pytest
import torch

import scraplab.sampling.importance as importance
from scraplab.cli.train import train
from scraplab.cli.warmup import main, parse_args, shard_paths
from train_helpers import SHORT, TINY, tiny_cfg


def test_shard_paths_cover_every_path_once_and_interleave():
    for n_paths, n_shards in ((315, 1), (315, 2), (315, 4), (7, 7), (10, 3)):
        shards = [shard_paths(n_paths, k, n_shards) for k in range(n_shards)]
        assert sorted(p for s in shards for p in s) == list(range(n_paths))
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
        if n_shards > 1:  # interleaved: every shard gets paths from the costly start of the order
            assert all(s[0] < n_shards for s in shards)
    for bad in ((10, 3, 3), (10, -1, 3), (10, 0, 11), (10, 0, 0)):
        with pytest.raises(ValueError):
            shard_paths(*bad)


def test_needs_exactly_one_mode():
    with pytest.raises(ValueError, match="exactly one of shard=K or merge=true"):
        main(["n_shards=2"])
    with pytest.raises(ValueError, match="exactly one of shard=K or merge=true"):
        main(["n_shards=2", "shard=0", "merge=true"])
    with pytest.raises(ValueError, match="missing n_shards"):
        main(["shard=0"])
    with pytest.raises(ValueError, match="bad value in 'shard=x'"):
        main(["shard=x", "n_shards=2"])
    assert parse_args(["shard=1", "n_shards=4", "synth=granular", "seed=3"]) == (1, False, 4, ["synth=granular",
                                                                                              "seed=3"])


@pytest.mark.slow
def test_sharded_warmup_merges_into_the_pi_training_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("SCRAPLAB_DATA_DIR", str(tmp_path / "data"))
    extra = ["sampler=theta_is", "sampler.warmup.n_examples=2", "sampler.warmup.batch_size=2",
             "sampler.warmup.n_iter=1"]
    overrides = ["synth=granular", "loss=scrapl", *SHORT["granular"], *TINY, *extra]
    with pytest.raises(FileNotFoundError):
        main(["merge=true", "n_shards=2", *overrides])
    for k in range(2):
        main([f"shard={k}", "n_shards=2", *overrides])
    pt = main(["merge=true", "n_shards=2", *overrides])
    merged = torch.load(pt, weights_only=True)
    assert merged.shape[0] > 1 and abs(float(merged.sum()) - 1) < 1e-9 and float(merged.std()) > 0

    def no_compute(*a, **k):
        raise AssertionError("training recomputed π instead of loading the merged file")

    monkeypatch.setattr(importance, "theta_importance", no_compute)
    metrics = train(tiny_cfg("granular", "scrapl", tmp_path / "run", extra))  # loads π: no recomputation
    assert metrics["status"] == "ok"
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    torch.testing.assert_close(ckpt["sampler"]["base"].double(), merged)  # the run sampled from the merged π
    assert ckpt["sampler"]["probs_source"] == f"theta_is/{pt.stem}"
    with pytest.raises(ValueError, match="other settings"):
        main(["merge=true", "n_shards=2", *overrides[:-1], "sampler.warmup.n_iter=2"])
