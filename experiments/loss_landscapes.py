"""Loss landscapes around a target: sweep one synth parameter, hold the other at the target's value, and plot every
loss (after Vahidi et al. 2023, "Mesostructures", whose Fig. shows the JTFS distance following the chirp rate where
the spectrogram distance does not).

    python experiments/loss_landscapes.py --synth granular --out experiments/results

Meso regime: each sweep point is rendered with ``--seeds`` seeds other than the target's and the losses averaged, so
a curve is the expected distance to a sound of the same θ but unknown grain/shift realisation. SCRAPL's curve is the
expectation of its one-path estimate under uniform π (the mean over its P second-order paths); its band spans the
10–90 % quantiles of the per-path distances, each path normalised by its own maximum over the sweep. Each curve is
min-max normalised over the sweep for display; the JSON keeps the raw values and, per loss, the swept value at its
minimum (``argmin``) beside the target's.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling experiment script (not a package)
from direct_optimization import build_synth, provenance  # noqa: E402


@torch.no_grad()
def landscapes(synth_name: str, center: list[float], n_points: int, n_seeds: int, mss_random_draws: int) -> dict:
    from scraplab.losses import SCRAPLLoss
    from scraplab.losses.scrapl import path_distance
    from scraplab.losses.spectral import MSSLoss, RandomMSSLoss, RevisitedMSSLoss
    synth = build_synth(synth_name)
    jtfs_kw = dict(synth.jtfs_defaults)
    scrapl = SCRAPLLoss(shape=synth.n_samples, **jtfs_kw)  # second-order paths: SCRAPL's path set
    first = SCRAPLLoss(shape=synth.n_samples, first_order=True, **jtfs_kw)  # + first order: the JTFS arm's set
    losses = {"mss_linear": MSSLoss(), "mss_loglin": MSSLoss(w_log_mag=1.0), "mss_revisited": RevisitedMSSLoss()}
    rnd = RandomMSSLoss(seed=0)
    if len(center) not in (1, synth.n_params):
        raise ValueError(f"--center takes 1 or {synth.n_params} values ({synth.param_names}), got {center}")
    theta_star = torch.tensor([center * synth.n_params if len(center) == 1 else center], dtype=torch.float32)
    x = synth(theta_star, torch.tensor([7]))
    S_x = first.jtfs(x)  # (1, 1, P1, F', T')
    grid = np.linspace(0.02, 0.98, n_points)
    out = {"synth": synth_name, "theta_star": theta_star[0].tolist(), "grid": grid.tolist(),
           "param_names": synth.param_names, "params": {}}
    n_first = first.n_paths - scrapl.n_paths  # first-order paths come first in the first_order=True ordering
    for u, name in enumerate(synth.param_names):
        theta = theta_star.repeat(n_points, 1)
        theta[:, u] = torch.as_tensor(grid, dtype=theta.dtype)
        vals = {k: np.zeros(n_points) for k in [*losses, "mss_random", "jtfs"]}
        per_path = np.zeros((n_points, scrapl.n_paths))
        for s in range(n_seeds):
            x_hat = synth(theta, torch.full((n_points,), 1000 + s))
            xs = x.expand_as(x_hat)
            for k, fn in losses.items():
                vals[k] += np.array([float(fn(x_hat[i:i + 1], xs[i:i + 1])) for i in range(n_points)]) / n_seeds
            vals["mss_random"] += np.array([np.mean([float(rnd(x_hat[i:i + 1], xs[i:i + 1]))
                                                     for _ in range(mss_random_draws)])
                                            for i in range(n_points)]) / n_seeds
            d = path_distance(first.jtfs(x_hat)[:, 0], S_x[:, 0].expand(n_points, -1, -1, -1), "norm",
                              first.n_paths).numpy()  # (n_points, P1)
            vals["jtfs"] += d.mean(1) / n_seeds
            per_path += d[:, n_first:] / n_seeds
        vals["scrapl_expectation"] = per_path.mean(1)
        norm = per_path / np.maximum(per_path.max(0, keepdims=True), 1e-30)
        band = np.quantile(norm, [0.1, 0.9], axis=1)
        out["params"][name] = {
            "values": {k: v.tolist() for k, v in vals.items()},
            "argmin": {k: float(grid[int(np.argmin(v))]) for k, v in vals.items()},
            "scrapl_band_normalised": band.tolist(),
            "paths_with_min_at_target_permille": float(1000 * np.mean(
                np.abs(grid[np.argmin(per_path, axis=0)] - float(theta_star[0, u])) <= (grid[1] - grid[0]) * 1.01)),
        }
    return out


def plot(res: dict, file: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names, grid = res["param_names"], np.asarray(res["grid"])
    labels = {"mss_linear": "MSS Linear", "mss_loglin": "MSS Log+Linear", "mss_revisited": "MSS Revisited",
              "mss_random": "MSS Random", "jtfs": "JTFS (all paths)", "scrapl_expectation": "SCRAPL E[one path]"}
    fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 3.8))
    for ax, name in zip(np.atleast_1d(axes), names):
        p = res["params"][name]
        lo, hi = p["scrapl_band_normalised"]
        ax.fill_between(grid, lo, hi, color="C5", alpha=0.2, label="SCRAPL paths 10–90 %")
        for i, (k, lab) in enumerate(labels.items()):
            v = np.asarray(p["values"][k])
            v = (v - v.min()) / max(v.max() - v.min(), 1e-30)
            ax.plot(grid, v, label=lab, color=f"C{i}", lw=2.2 if k in ("jtfs", "scrapl_expectation") else 1.2,
                    ls="--" if k == "jtfs" else "-")
        ax.axvline(res["theta_star"][names.index(name)], color="k", lw=0.8, ls=":")
        ax.set_title(f"{res['synth']}: sweep of {name} (others at target)")
        ax.set_xlabel(f"θ_{name}")
        ax.set_ylabel("distance (min-max normalised)")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(file, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--synth", choices=("granular", "chirplet"), required=True)
    p.add_argument("--out", default="experiments/results")
    p.add_argument("--center", type=float, nargs="+", default=None,
                   help="target θ: one value for every parameter or one per parameter (default: granular 0.5 0.75, "
                        "an upward chirp, since MSS cannot tell the sign of a chirp rate; chirplet 0.5 0.5)")
    p.add_argument("--points", type=int, default=25)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--mss-random-draws", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    prov = provenance(sys.argv)
    center = a.center or {"granular": [0.5, 0.75], "chirplet": [0.5, 0.5]}[a.synth]
    res = landscapes(a.synth, center, a.points, a.seeds, a.mss_random_draws)
    res["provenance"] = prov
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"landscape_{a.synth}.json").write_text(json.dumps(res, indent=1))
    plot(res, out / f"landscape_{a.synth}.png")
    for name, v in res["params"].items():
        print(a.synth, name, "argmin:", {k: round(x, 3) for k, x in v["argmin"].items()},
              "paths with min at target ‰:", round(v["paths_with_min_at_target_permille"]))


if __name__ == "__main__":
    main()
