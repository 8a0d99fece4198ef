"""θ-IS warm-up as a job array (paper §3.4): shard the paths, then merge into the π file training loads.

    scraplab warmup shard=K n_shards=S  [train overrides, e.g. experiment=paper_granular seed=0]
    scraplab warmup merge=true n_shards=S    [the same overrides]

Each shard computes C_{u,p} for the paths K, K + S, K + 2S, … of the run's θ-IS problem (the same
examples, untrained encoder and settings as ``python train.py ... sampler=theta_is``; see
``scraplab.cli.train.theta_is_problem``) and writes ``<data>/theta_is/shards/<name>/<K>of<S>.pt``. Each path's
power iteration is seeded from (seed, p), so shards give exactly the values of one full run. Interleaved, not
contiguous: a path's cost falls with its rate along the path order (the fine-rate paths first cost up to 10× the
last ones), so contiguous ranges left the first shard with most of the work. ``--merge`` checks that the shards
cover [0, P) once with identical settings and writes ``<data>/theta_is/<name>.pt`` + ``.json``, which the
training app then loads instead of computing π. On SLURM: ``shard=$SLURM_ARRAY_TASK_ID``, then one merge job
(``--dependency=afterok``).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import lightning as L

from scraplab.cli.build import build_all, compose_train
from scraplab.cli.train import theta_is_problem
from scraplab.locations import data_dir
from scraplab.sampling.importance import (merged_values, probs_from_values, save_shard, store_probs,
                                          theta_importance, warmup_record)


def shard_paths(n_paths: int, shard: int, n_shards: int) -> range:
    """The paths of shard ``shard`` of ``n_shards`` (0-based): every n_shards-th path from ``shard`` on."""
    if not 1 <= n_shards <= n_paths or not 0 <= shard < n_shards:
        raise ValueError(f"need 0 <= shard < n_shards <= n_paths={n_paths}, got shard {shard} of {n_shards}")
    return range(shard, n_paths, n_shards)


def _problem(overrides: list[str]) -> dict:
    cfg = compose_train(overrides)
    L.seed_everything(int(cfg.seed), workers=True)  # the untrained encoder of train.py with this seed
    objs = build_all(cfg)
    if objs["sampler"] is None or getattr(objs["sampler"], "mode", None) != "fixed":
        raise ValueError("the θ-IS warm-up needs loss=scrapl and sampler=theta_is (a 'fixed' sampler)")
    problem = theta_is_problem(objs, cfg)
    problem["loss"] = objs["loss"]  # not a warm-up argument: for callers that need the loss itself (benchmarks)
    n_ex = sum(int(b.shape[0]) for b in problem["x"])
    problem["record"] = warmup_record(problem["settings"], problem["n_paths"], n_ex, problem["n_iter"],
                                      problem["tol"], problem["seed"], solver=problem["solver"],
                                      shared_front=problem["front"] is not None,
                                      subspace_rank=problem["subspace_rank"], subspace_power=problem["subspace_power"])
    return problem


USAGE = ("usage: scraplab warmup (shard=K | merge=true) n_shards=S [train overrides ...]\n\n"
         "θ-IS warm-up as a job array: shard=K computes paths K, K+S, K+2S, ... of the problem that\n"
         "`scraplab train OVERRIDES sampler=theta_is` would warm up; merge=true joins the S shards into the π file.\n"
         "  shard=K        0-based shard index (compute)\n  merge=true     merge every shard into the π file\n"
         "  n_shards=S     number of shards\n  OVERRIDES      train config overrides (Hydra syntax), e.g. experiment=paper_granular")


def parse_args(argv: list[str]) -> tuple[int | None, bool, int, list[str]]:
    """(shard, merge, n_shards, train overrides) from key=value tokens; ValueError naming the problem."""
    shard, merge, n_shards, rest = None, False, None, []
    for tok in argv:
        key, sep, val = tok.partition("=")
        try:
            if key == "shard" and sep:
                shard = int(val)
            elif key == "n_shards" and sep:
                n_shards = int(val)
            elif key == "merge" and sep:
                if val.lower() not in ("true", "false"):
                    raise ValueError
                merge = val.lower() == "true"
            else:
                rest.append(tok)
        except ValueError:
            raise ValueError(f"bad value in {tok!r}\n{USAGE}") from None
    if n_shards is None:
        raise ValueError(f"missing n_shards=S\n{USAGE}")
    if merge == (shard is not None):
        raise ValueError(f"give exactly one of shard=K or merge=true\n{USAGE}")
    return shard, merge, n_shards, rest


def main(argv: Optional[list[str]] = None) -> Path:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE)
        raise SystemExit(0)
    shard, merge, n_shards, overrides = parse_args(argv)
    p = _problem(overrides)
    folder = data_dir() / "theta_is"
    shard_dir = folder / "shards" / p["name"]
    if merge:
        files = [shard_dir / f"{k}of{n_shards}.pt" for k in range(n_shards)]
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise FileNotFoundError(f"missing θ-IS shards: {missing}")
        vals = merged_values(files, settings=p["record"])
        probs = probs_from_values(vals)
        out = store_probs(folder, p["name"], p["record"], probs, vals)
    else:
        rng = shard_paths(p["n_paths"], shard, n_shards)
        vals = theta_importance(p["encoder"], p["synth_fn"], p["path_loss_fn"], p["x"], p["n_paths"],
                                synth_kwargs=p["synth_kwargs"], path_range=rng, n_iter=p["n_iter"], tol=p["tol"],
                                seed=p["seed"], solver=p["solver"], front=p["front"], front_dtype=p["front_dtype"],
                                vectorize=p["vectorize"], subspace_rank=p["subspace_rank"],
                                subspace_power=p["subspace_power"])
        out = save_shard(shard_dir / f"{shard}of{n_shards}.pt", vals, rng, p["n_paths"], p["record"])
    print(out)
    return out


if __name__ == "__main__":
    main()
