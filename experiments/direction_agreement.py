"""Does one step of each loss move θ toward the target? Per-path gradient directions, measured.

At the start θ of the direct-optimisation runs (seed 0) and for the first ``--targets`` targets, with a meso render
seed, this computes the gradient w.r.t. θ of every SCRAPL path, of the full JTFS, and of each MSS variant, and
reports, per synth parameter u:

* ``toward``: the fraction of gradients whose descent step −g_u points toward the target (sign(θ*_u − θ_u)); for
  SCRAPL under uniform π and under a θ-IS π (the π the direct experiment's ``scrapl_thetais`` arm used, read from its
  raw file) the fractions are π-weighted over paths. 𝒫-Adam on a path visited for the first time steps by
  sign(g) (m̂/√v̂ = g/|g|), so this fraction is what a 𝒫-Adam step gets right;
* ``cos_full``: the π-weighted mean cosine between a path's gradient and the full JTFS gradient (2-D vectors);
* ``rel_var``: the one-path estimator's relative variance E_π‖w_p g_p − ḡ‖² / ‖ḡ‖² with w_p = 1/(Pπ_p) for the
  unbiased form (uniform: w = 1).

    python experiments/direction_agreement.py --synth granular --probs experiments/results/direct_granular.json
    python experiments/direction_agreement.py --synth granular --preset twin_granular --targets 16 --twin-pi
                                                      # the twin, with the π its θ-IS arm trains with (seed 0)

``per_path`` (every run) lists each path's ``toward`` fraction and mean |g_u| over the targets, and with a π its
probability: which paths carry a parameter, and whether the step sizes or the draw frequencies favour them.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling experiment script (not a package)
from direct_optimization import build_synth, provenance, test_targets  # noqa: E402


def _grad(fn, theta):
    th = theta.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(th), th)
    return g.double()  # (T, U)


def twin_synth(preset: str, jtfs: dict | None = None, synth_kw: dict | None = None):
    """The synth of a CPU-twin preset (``configs/experiment/<preset>.yaml``), with its per-instance JTFS settings
    (``jtfs`` replaces some of them, ``synth_kw`` some synth arguments such as the signal or grain length: which
    settings make single paths informative, before a twin is run)."""
    import yaml

    from scraplab.locations import config_dir
    from scraplab.synths import GranularSynth
    cfg = yaml.safe_load((config_dir() / "experiment" / f"{preset}.yaml").read_text())
    synth_cfg = {**cfg["synth"], **(synth_kw or {})}
    if jtfs:
        synth_cfg["jtfs"] = {**synth_cfg.get("jtfs", {}), **jtfs}
    return GranularSynth(**synth_cfg)


def twin_pi(preset: str, seed: int = 0) -> tuple[torch.Tensor, str]:
    """The θ-IS π that ``python train.py experiment=<preset> sampler=theta_is seed=<seed>`` trains with (loaded from
    data/theta_is when stored with the same settings, else computed there), and its stored name."""
    import lightning as L

    from scraplab.cli.build import build_all, compose_train
    from scraplab.cli.train import theta_is_problem
    from scraplab.sampling.importance import load_or_compute
    cfg = compose_train([f"experiment={preset}", "loss=scrapl", "sampler=theta_is", f"seed={seed}",
                         f"sampler.seed={seed}"])
    L.seed_everything(int(cfg.seed), workers=True)  # the untrained encoder of that run
    problem = theta_is_problem(build_all(cfg), cfg)
    name = problem.pop("name")
    return load_or_compute(name, problem.pop("settings"), **problem).double(), name


def measure(synth_name: str, n_targets: int, probs_file: str | None, n_random: int, preset: str | None = None,
            pi: torch.Tensor | None = None, jtfs: dict | None = None, synth_kw: dict | None = None) -> dict:
    from scraplab.losses import JTFSLoss, SCRAPLLoss
    from scraplab.losses.spectral import MSSLoss, RandomMSSLoss
    from scraplab.matching.optimize import initial_theta, render_seeds
    synth = twin_synth(preset, jtfs, synth_kw) if preset else build_synth(synth_name)
    theta_star, seeds = test_targets(synth, 32)
    theta_star, seeds = theta_star[:n_targets].float(), seeds[:n_targets]
    with torch.no_grad():
        x = synth(theta_star, seeds)
    theta0 = initial_theta(32, 1, synth.n_params, 0)[:n_targets, 0].float()  # seed 0's start (all arms)
    rs = render_seeds(0, 0, torch.arange(n_targets))  # the first step's meso seeds of seed 0
    toward = torch.sign(theta_star - theta0).double()  # (T, U)
    scrapl = SCRAPLLoss(shape=synth.n_samples, **synth.jtfs_defaults)
    P = scrapl.n_paths

    def per_example(loss_call):
        return lambda th: loss_call(synth(th, rs)).sum()

    g_paths = torch.stack([_grad(per_example(lambda xh, p=p: scrapl(xh, x, paths=[p], reduction="none")), theta0)
                           for p in range(P)])  # (P, T, U)
    jt = JTFSLoss(shape=synth.n_samples, **synth.jtfs_defaults)
    g_full = _grad(lambda th: sum(jt(synth(th[i:i + 4], rs[i:i + 4]), x[i:i + 4], reduction="none").sum()
                                  for i in range(0, n_targets, 4)), theta0)  # chunks of 4: JTFS memory
    g_scrapl_mean = g_paths.mean(0)
    out = {"synth": synth_name, "preset": preset, "synth_kw": synth_kw or {}, "jtfs": synth.jtfs_defaults, "n_paths": P, "n_targets": n_targets, "param_names": synth.param_names, "arms": {}}

    def direction_stats(g, w=None):  # g (K, T, U) gradients, w (K,) weights summing to 1
        w = torch.full((g.shape[0],), 1.0 / g.shape[0], dtype=torch.float64) if w is None else w
        ok = (torch.sign(-g) == toward[None]).double()  # (K, T, U)
        frac = torch.einsum("k,ktu->u", w, ok) / g.shape[1]
        return {n: float(frac[u]) for u, n in enumerate(synth.param_names)}

    def cos_full(g, w):
        c = torch.nn.functional.cosine_similarity(g, g_full[None].expand_as(g), dim=-1)  # (K, T)
        return float(torch.einsum("k,kt->", w, c) / g.shape[1])

    def rel_var(g, w, unbiased):
        scale = (1.0 / (P * w)) if unbiased else torch.ones_like(w)
        est = g * scale[:, None, None]
        mean = torch.einsum("k,ktu->tu", w, est)
        var = torch.einsum("k,kt->t", w, (est - mean[None]).square().sum(-1))
        return float((var / mean.square().sum(-1).clamp_min(1e-300)).mean())

    uni = torch.full((P,), 1.0 / P, dtype=torch.float64)
    pis = {"uniform": uni}
    if probs_file:
        raw = json.loads(Path(probs_file).read_text())  # a raw scrapl_thetais file or the aggregated table
        probs = raw["probs"] if "probs" in raw else raw["arms"]["scrapl_thetais"]["probs"]
        pis["theta_is"] = torch.tensor(probs, dtype=torch.float64)
    if pi is not None:
        pis["theta_is"] = pi
    for name, w in pis.items():
        out["arms"][f"scrapl_{name}"] = {"toward": direction_stats(g_paths, w), "cos_full": cos_full(g_paths, w),
                                         "rel_var": rel_var(g_paths, w, unbiased=False),
                                         "rel_var_unbiased": rel_var(g_paths, w, unbiased=True)}
    # What an optimizer that sums the paths' raw gradients gets (AdamW over all paths: a path weighs by its gradient
    # size) against 𝒫-Adam, which normalises each path to a unit step (every path weighs the same): the fraction of
    # gradient mass, per parameter, that points toward the target.
    ok_all = (torch.sign(-g_paths) == toward[None]).double()  # (P, T, U)
    mag = g_paths.abs()
    out["arms"]["scrapl_uniform"]["toward_magnitude_weighted"] = {
        n: float((ok_all[..., u] * mag[..., u]).sum() / mag[..., u].sum().clamp_min(1e-300))
        for u, n in enumerate(synth.param_names)}
    # Per path: the fraction of targets it steps toward, its mean |g_u| and π_p (which paths carry a parameter; do
    # the step sizes, or θ-IS's draw frequencies, favour them?). Spearman ρ of |g_u| and of π with toward_u.
    frac_p = ok_all.mean(1)  # (P, U)
    mag_p = mag.mean(1)  # (P, U)
    out["per_path"] = {"toward": frac_p.tolist(), "mean_abs_grad": mag_p.tolist()}
    if "theta_is" in pis:
        out["per_path"]["pi"] = pis["theta_is"].tolist()

    def spearman(a, b):
        ra, rb = a.argsort().argsort().double(), b.argsort().argsort().double()
        return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])

    out["per_path_summary"] = {n: {"spearman_magnitude_toward": spearman(mag_p[:, u], frac_p[:, u]),
                                   **({"spearman_pi_toward": spearman(pis["theta_is"], frac_p[:, u]),
                                       "spearman_pi_magnitude": spearman(pis["theta_is"], mag_p[:, u])}
                                      if "theta_is" in pis else {})}
                               for u, n in enumerate(synth.param_names)}
    out["arms"]["scrapl_path_mean"] = {"toward": direction_stats(g_scrapl_mean[None])}
    out["arms"]["jtfs"] = {"toward": direction_stats(g_full[None])}
    for name, loss in (("mss_linear", MSSLoss()), ("mss_loglin", MSSLoss(w_log_mag=1.0))):
        g = _grad(lambda th: torch.stack([loss(synth(th, rs)[i:i + 1], x[i:i + 1]) for i in range(n_targets)]).sum(),
                  theta0)
        out["arms"][name] = {"toward": direction_stats(g[None]), "cos_full": cos_full(g[None], torch.ones(1).double())}
    rnd = RandomMSSLoss(seed=0)
    g = torch.stack([_grad(lambda th: torch.stack([rnd(synth(th, rs)[i:i + 1], x[i:i + 1])
                                                   for i in range(n_targets)]).sum(), theta0) for _ in range(n_random)])
    w = torch.full((n_random,), 1.0 / n_random, dtype=torch.float64)
    out["arms"]["mss_random"] = {"toward": direction_stats(g, w), "cos_full": cos_full(g, w)}
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--synth", choices=("granular", "chirplet"), required=True)
    p.add_argument("--targets", type=int, default=8)
    p.add_argument("--probs", default=None, help="direct_<synth>.json (or a raw scrapl_thetais file): the θ-IS π")
    p.add_argument("--jtfs", default=None, help="with --preset: JSON replacing some of its JTFS settings, e.g. "
                   "'{\"Q\": [8, 2], \"J_fr\": 3, \"Q_fr\": 2}'")
    p.add_argument("--synth-kw", default=None, help="with --preset: JSON replacing some synth arguments, e.g. "
                   "'{\"grain_n_samples\": 4096}'")
    p.add_argument("--tag", default="", help="appended to the output name: direction_<preset>_<tag>.json")
    p.add_argument("--twin-pi", action="store_true", help="with --preset: add the θ-IS π that preset's θ-IS arm "
                   "trains with (seed 0; the project's warm-up, stored in data/theta_is)")
    p.add_argument("--random-draws", type=int, default=16)
    p.add_argument("--out", default="experiments/results")
    p.add_argument("--preset", default=None, help="a CPU-twin preset whose synth to use, e.g. twin_granular "
                   "(granular only; writes direction_<preset>.json)")
    a = p.parse_args(argv)
    if a.preset and a.synth != "granular":
        p.error("--preset is for --synth granular")
    torch.set_num_threads(1)
    prov = provenance(sys.argv)
    if (a.twin_pi or a.jtfs or a.synth_kw) and not a.preset:
        p.error("--twin-pi, --jtfs and --synth-kw need --preset")
    if a.twin_pi and (a.jtfs or a.synth_kw):
        p.error("--twin-pi is the preset's own π: not with --jtfs or --synth-kw")
    jtfs = json.loads(a.jtfs) if a.jtfs else None
    synth_kw = json.loads(a.synth_kw) if a.synth_kw else None
    pi, pi_name = twin_pi(a.preset) if a.twin_pi else (None, None)
    res = measure(a.synth, a.targets, a.probs, a.random_draws, a.preset, pi, jtfs, synth_kw)
    if pi_name:
        res["pi_source"] = f"data/theta_is/{pi_name}.pt (python train.py experiment={a.preset} sampler=theta_is seed=0)"
    res["provenance"] = prov
    Path(a.out).mkdir(parents=True, exist_ok=True)
    name = f"direction_{a.preset or a.synth}" + (f"_{a.tag}" if a.tag else "")
    (Path(a.out) / f"{name}.json").write_text(json.dumps(res, indent=1))
    print(a.synth, "per-path Spearman", json.dumps(res["per_path_summary"]))
    for arm, v in res["arms"].items():
        print(a.synth, arm, json.dumps({k: (round(x, 3) if isinstance(x, float) else
                                            {n: round(y, 3) for n, y in x.items()}) for k, x in v.items()}))


if __name__ == "__main__":
    main()
