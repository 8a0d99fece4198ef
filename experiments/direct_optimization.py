"""θ recovery by direct optimisation (no encoder): does each loss point the way back to the target's θ?

One arm = one loss (+ optimizer / path sampler). For each optimisation seed, all targets are matched in one batch by
``scraplab.matching.optimize_theta`` in the meso regime (a fresh synth seed every step), starting from the same
random θ for every arm; θ is recorded every ``--record-every`` steps, so the θ error curve costs nothing extra.

    python experiments/direct_optimization.py run --synth granular --arm scrapl_padam --out DIR   # one arm → DIR/
    python experiments/direct_optimization.py aggregate --synth granular --raw DIR --out experiments/results

``run`` writes ``DIR/<synth>_<arm>.json`` (per-seed error curves, final θ, CPU seconds, settings, provenance);
``aggregate`` turns those into ``direct_<synth>.json`` / ``.md`` and the error-curve plot. The whole experiment is
``bash experiments/run_direct.sh``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ARMS = ("mss_linear", "mss_loglin", "mss_random", "jtfs", "scrapl_adam", "scrapl_padam", "scrapl_psaga",
        "scrapl_thetais")
ERROR_PERMILLE = 100.0  # the paper's convergence threshold (metrics.theta.CONVERGENCE_THRESHOLD_PERMILLE)


def build_synth(name: str, preset: str | None = None, synth_kw: dict | None = None):
    """The paper's synth, or (``preset``) the synth of a CPU-twin preset with ``synth_kw`` replacing some of its
    arguments (``direction_agreement.twin_synth``): the same direct experiment on the twin's problem."""
    from scraplab.synths import ChirpletSynth, GranularSynth
    if preset is not None:
        if name != "granular":
            raise ValueError(f"--preset is a granular twin; got --synth {name}")
        from direction_agreement import twin_synth  # experiments/, the script's own folder
        return twin_synth(preset, synth_kw=synth_kw)
    if synth_kw:
        raise ValueError("--synth-kw needs --preset")
    return {"granular": GranularSynth, "chirplet": ChirpletSynth}[name]()


def test_targets(synth, n_targets: int) -> tuple[torch.Tensor, torch.Tensor]:
    """θ (T, U) and seeds (T,) of T distinct θ combinations of the paper grid's test split (32 per axis)."""
    from scraplab.data.synthetic import grid_splits
    test = grid_splits(synth.n_params, 32, 5)["test"]
    combos = test.theta[::5], test.seed[::5]  # one seed per θ combination
    if n_targets > combos[0].shape[0]:
        raise ValueError(f"the test grid has {combos[0].shape[0]} θ combinations, asked for {n_targets}")
    pick = torch.randperm(combos[0].shape[0], generator=torch.Generator().manual_seed(1234))[:n_targets].sort().values
    return combos[0][pick].double(), combos[1][pick]


def build_arm(arm: str, synth, lr: float, eps: float, seed: int):
    """(loss, optimizer factory or None for Adam, wants θ-IS)."""
    from scraplab.losses import JTFSLoss, SCRAPLLoss
    from scraplab.losses.spectral import MSSLoss, RandomMSSLoss
    from scraplab.optim import factories
    jtfs = dict(synth.jtfs_defaults)
    if arm == "mss_linear":
        return MSSLoss(), None, False
    if arm == "mss_loglin":
        return MSSLoss(w_log_mag=1.0), None, False
    if arm == "mss_random":
        return RandomMSSLoss(seed=seed), None, False
    if arm == "jtfs":
        return JTFSLoss(shape=synth.n_samples, **jtfs), None, False
    loss = SCRAPLLoss(shape=synth.n_samples, **jtfs)
    if arm == "scrapl_adam":  # one Adam state for every path (the encoder table's AdamW arm, without weight decay)
        return loss, (lambda params, n_paths=None: torch.optim.Adam(params, lr=lr, eps=eps)), False
    opt = factories.p_adam if arm == "scrapl_padam" else factories.p_saga
    return loss, (lambda params, n_paths=None: opt(params, n_paths=n_paths, lr=lr, weight_decay=0.0, eps=eps)), \
        arm == "scrapl_thetais"


def provenance(argv: list[str]) -> dict:
    import scipy
    def git(*a):
        try:
            return subprocess.run(["git", *a], capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "command": "python " + " ".join([Path(argv[0]).as_posix()] + argv[1:]),
            "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                         "scipy": scipy.__version__},
            "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                        "loadavg_start": list(os.getloadavg()), "platform": platform.platform()}}


def run_arm(a: argparse.Namespace) -> Path:
    from scraplab.matching import optimize_theta
    from scraplab.matching.optimize import initial_theta
    from scraplab.matching.warmup import direct_theta_is
    from scraplab.sampling import PathSampler
    torch.set_num_threads(a.threads)
    prov = provenance(sys.argv)
    synth_kw = json.loads(a.synth_kw) if a.synth_kw else None
    synth = build_synth(a.synth, a.preset, synth_kw)
    theta_star, target_seeds = test_targets(synth, a.n_targets)
    jtfs_arm = a.arm == "jtfs"
    n_t = a.jtfs_targets if jtfs_arm else a.n_targets
    seeds = list(range(a.jtfs_seeds if jtfs_arm else a.seeds))
    steps = a.jtfs_steps if jtfs_arm else a.steps
    theta_star, target_seeds = theta_star[:n_t], target_seeds[:n_t]
    with torch.no_grad():
        x = synth(theta_star.float(), target_seeds)
    out = {"synth": a.synth, "arm": a.arm, "preset": a.preset, "synth_kw": synth_kw or {},
           "n_samples": synth.n_samples, "jtfs": dict(synth.jtfs_defaults), "param_names": synth.param_names, "theta_star": theta_star.tolist(),
           "target_seeds": target_seeds.tolist(), "settings": {"steps": steps, "lr": a.lr, "lr_decay": a.lr_decay, "eps": a.eps,
                                                               "warmup_examples": a.warmup_examples,
                                                               "warmup_iter": a.warmup_iter,
                                                               "n_targets": n_t, "seeds": seeds, "meso": True,
                                                               "record_every": a.record_every},
           "seeds": {}, "warmup_cpu_s": 0.0}
    sampler_probs = None
    if a.arm == "scrapl_thetais":  # one π per problem, as the authors' seed-0 warm-up file; its CPU is charged here
        loss, _, _ = build_arm(a.arm, synth, a.lr, a.eps, 0)
        wt, ws = test_targets(synth, a.n_targets + a.warmup_examples)
        wt, ws = wt[a.n_targets:], ws[a.n_targets:]  # test-grid targets that are not among the matched ones
        with torch.no_grad():
            wx = synth(wt.float(), ws)
        w0 = initial_theta(wx.shape[0], 1, synth.n_params, 10_000)[:, 0].float()  # a start like the runs' own
        sampler_probs, _, cpu = direct_theta_is(synth, loss, wx, w0, n_iter=a.warmup_iter, seed=0,
                                                progress=a.progress)
        out["warmup_cpu_s"], out["probs"] = cpu, sampler_probs.tolist()
    for s in seeds:
        loss, opt, _ = build_arm(a.arm, synth, a.lr, a.eps, s)
        sampler = None if sampler_probs is None else PathSampler(loss.n_paths, mode="fixed", probs=sampler_probs,
                                                                 seed=s)
        res = optimize_theta(synth, loss, x, steps=steps, optimizer=opt, lr=a.lr, lr_decay=a.lr_decay,
                             sampler=sampler, meso=True,
                             seed=s, chunk_size=a.chunk if jtfs_arm else None, record_every=a.record_every,
                             progress=a.progress)
        err = 1000.0 * (res.theta_curve[:, :, 0] - theta_star[None].float()).abs()  # (n_rec, T, U) ‰
        out["seeds"][str(s)] = {"record_steps": res.record_steps, "err_permille": err.tolist(),
                                "cpu_s": res.cpu_s, "final_theta": res.theta.tolist(),
                                "final_loss": res.final_loss.tolist(), "steps": res.steps}
        print(f"{a.synth} {a.arm} seed {s}: θ L1 ‰ {err[-1].mean(0).tolist()} in {res.cpu_s:.0f} CPU s", flush=True)
    prov["machine"]["loadavg_end"] = list(os.getloadavg())
    out["provenance"] = prov
    folder = Path(a.out)
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / f"{a.synth}_{a.arm}.json"
    file.write_text(json.dumps(out))
    return file


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run one arm")
    r.add_argument("--synth", choices=("granular", "chirplet"), required=True)
    r.add_argument("--arm", choices=ARMS, required=True)
    r.add_argument("--out", required=True, help="folder for the raw per-arm JSON")
    r.add_argument("--n-targets", type=int, default=32)
    r.add_argument("--seeds", type=int, default=3)
    r.add_argument("--steps", type=int, default=250)
    r.add_argument("--lr", type=float, default=0.1)
    r.add_argument("--lr-decay", type=float, default=0.1, help="final lr / initial lr (half cosine)")
    r.add_argument("--eps", type=float, default=1e-16, help="𝒫-Adam ε (inside the root: a 1e-8 floor on |g|)")
    r.add_argument("--record-every", type=int, default=5)
    r.add_argument("--jtfs-targets", type=int, default=8)
    r.add_argument("--jtfs-seeds", type=int, default=1)
    r.add_argument("--jtfs-steps", type=int, default=60)
    r.add_argument("--chunk", type=int, default=4, help="trajectories per JTFS forward (memory)")
    r.add_argument("--warmup-examples", type=int, default=4)
    r.add_argument("--warmup-iter", type=int, default=20)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--progress", action="store_true")
    r.add_argument("--preset", default=None, help="a granular CPU-twin preset (configs/experiment/<preset>.yaml): "
                   "its synth, signal length and JTFS instead of the paper's")
    r.add_argument("--synth-kw", default=None, help='with --preset: JSON replacing some synth arguments, e.g. '
                   '\'{"n_grains": 32}\'')
    g = sub.add_parser("aggregate", help="raw per-arm JSON → direct_<synth>.json / .md / plot")
    g.add_argument("--synth", choices=("granular", "chirplet"), required=True)
    g.add_argument("--raw", required=True)
    g.add_argument("--out", default="experiments/results")
    g.add_argument("--tag", default=None, help="result files direct_<synth>_<tag>.* (a twin's problem)")
    a = p.parse_args(argv)
    if a.cmd == "run":
        print(run_arm(a))
    else:
        from direct_aggregate import aggregate  # experiments/ is the script's own folder
        print(aggregate(a.synth, Path(a.raw), Path(a.out), sys.argv, tag=a.tag))


if __name__ == "__main__":
    main()
