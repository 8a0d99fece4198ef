"""Aggregate the raw per-arm files of ``direct_optimization.py run`` into the committed table, JSON and plot.

Statistics: per target, the θ L1 ‰ of each parameter averaged over the optimisation seeds; the table gives its
mean over targets with the paper's 95 % CI (``metrics.stats.mean_ci95``). ``steps_to_error`` is the first recorded
step at which the mean θ L1 (over targets, parameters and seeds) is ≤ 100 ‰; ``steps_to`` gives, for every arm, the
first step at which it reaches each SCRAPL arm's final error (the θ-IS target compares those).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

ORDER = ("mss_linear", "mss_loglin", "mss_random", "jtfs", "scrapl_adam", "scrapl_padam", "scrapl_psaga",
         "scrapl_thetais")
LABELS = {"mss_linear": "MSS Linear", "mss_loglin": "MSS Log+Linear", "mss_random": "MSS Random",
          "jtfs": "JTFS (all paths)", "scrapl_adam": "SCRAPL (Adam)", "scrapl_padam": "SCRAPL + 𝒫-Adam", "scrapl_psaga": "SCRAPL + 𝒫-Adam + 𝒫-SAGA",
          "scrapl_thetais": "SCRAPL + 𝒫-Adam + 𝒫-SAGA + θ-IS"}
THRESHOLD = 100.0


def _curves(raw: dict, n_targets: int | None = None, seeds=None):
    """(record_steps, err (n_rec, n_seeds, T, U)) restricted to the first ``n_targets`` and the given seeds."""
    keys = [k for k in raw["seeds"] if seeds is None or int(k) in seeds]
    steps = raw["seeds"][keys[0]]["record_steps"]
    err = np.stack([np.asarray(raw["seeds"][k]["err_permille"]) for k in keys], axis=1)
    return steps, err[:, :, :n_targets] if n_targets else err


def first_step_below(steps, curve, level: float):
    below = np.nonzero(np.asarray(curve) <= level + 1e-9)[0]
    return int(steps[below[0]]) if below.size else None


def summarise(raw: dict) -> dict:
    from scraplab.metrics.stats import mean_ci95
    steps, err = _curves(raw)
    final = err[-1].mean(0)  # (T, U): per target, mean over seeds
    names = raw["param_names"]
    per_param = {n: dict(zip(("mean", "ci95"), mean_ci95(final[:, u]))) for u, n in enumerate(names)}
    overall = dict(zip(("mean", "ci95"), mean_ci95(final.mean(1))))
    curve = err.mean(axis=(1, 2, 3))
    n_t, n_s = err.shape[2], err.shape[1]
    cpu = sum(v["cpu_s"] for v in raw["seeds"].values()) + raw.get("warmup_cpu_s", 0.0)
    return {"theta_l1_permille": {**per_param, "mean": overall["mean"], "ci95": overall["ci95"]},
            "cpu_s": cpu, "warmup_cpu_s": raw.get("warmup_cpu_s", 0.0),
            "cpu_s_per_trajectory": cpu / (n_t * n_s), "steps": raw["settings"]["steps"],
            "steps_to_error": first_step_below(steps, curve, THRESHOLD), "error_threshold_permille": THRESHOLD,
            "n_targets": n_t, "n_seeds": n_s, "curve_steps": list(steps), "curve_permille": curve.tolist(),
            "curve_per_param": err.mean(axis=(1, 2)).T.tolist()}


def aggregate(synth: str, raw_dir: Path, out_dir: Path, argv, tag: str | None = None) -> Path:
    from direct_optimization import provenance
    raws = {arm: json.loads((raw_dir / f"{synth}_{arm}.json").read_text()) for arm in ORDER
            if (raw_dir / f"{synth}_{arm}.json").exists()}
    if not raws:
        raise FileNotFoundError(f"no {synth}_<arm>.json under {raw_dir}")
    commits = {r["provenance"]["commit"] for r in raws.values()}
    if len(commits) != 1 or any(r["provenance"]["dirty"] for r in raws.values()):
        raise ValueError(f"raw files come from different or uncommitted code: {sorted(map(str, commits))}")
    # which problem (the paper's synth, or a twin preset's): every arm must have solved the same one
    problems = {arm: {k: r.get(k) for k in ("preset", "synth_kw", "n_samples", "jtfs")} for arm, r in raws.items()}
    if len({json.dumps(p, sort_keys=True) for p in problems.values()}) != 1:
        raise ValueError(f"raw files under {raw_dir} solve different problems: {problems}")
    arms = {arm: summarise(r) for arm, r in raws.items()}
    for arm, r in raws.items():
        if "probs" in r:  # θ-IS π: kept with the table (direction_agreement.py reads it from there too)
            arms[arm]["probs"] = r["probs"]
    # Same-targets comparison with the (smaller) JTFS arm: its targets are the first n of every arm's list.
    if "jtfs" in raws:
        j = raws["jtfs"]
        n_j, seeds_j = j["settings"]["n_targets"], set(j["settings"]["seeds"])
        for arm, r in raws.items():
            steps, err = _curves(r, n_j, seeds_j)
            arms[arm]["on_jtfs_targets"] = {"theta_l1_permille": float(err[-1].mean()), "n_targets": n_j,
                                            "seeds": sorted(seeds_j)}
    for ref in ("scrapl_padam", "scrapl_psaga", "scrapl_thetais"):
        if ref in arms:
            level = arms[ref]["theta_l1_permille"]["mean"]
            for arm, a in arms.items():
                steps, err = _curves(raws[arm])
                a.setdefault("steps_to", {})[ref] = first_step_below(steps, err.mean(axis=(1, 2, 3)), level)
    names = next(iter(raws.values()))["param_names"]
    result = {"synth": synth, "problem": next(iter(problems.values())), "param_names": names, "arms": arms, "paired": paired(raws, names),
              "settings": {a: r["settings"] for a, r in raws.items()},
              "raw_provenance": {a: r["provenance"] for a, r in raws.items()},
              "provenance": {**provenance(list(argv)), "raw_commit": commits.pop()}}
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"direct_{synth}" + (f"_{tag}" if tag else "")
    jfile = out_dir / f"{stem}.json"
    jfile.write_text(json.dumps(result, indent=1))
    (out_dir / f"{stem}.md").write_text(markdown(result))
    plot(result, out_dir / f"{stem}.png")
    return jfile


PAIRS = (("scrapl_adam", "scrapl_padam"), ("scrapl_adam", "scrapl_psaga"), ("mss_random", "scrapl_adam"),
         ("scrapl_padam", "scrapl_psaga"), ("scrapl_psaga", "scrapl_thetais"), ("scrapl_padam", "scrapl_thetais"),
         ("mss_random", "scrapl_thetais"), ("mss_random", "scrapl_psaga"))


def paired(raws: dict, names) -> dict:
    """Paired t-tests over targets (seed-averaged final errors; same targets and seeds) per parameter: b − a."""
    from scraplab.metrics.stats import paired_test
    out = {}
    for a, b in PAIRS:
        if a in raws and b in raws:
            fa, fb = _curves(raws[a])[1][-1].mean(0), _curves(raws[b])[1][-1].mean(0)  # (T, U)
            out[f"{b} - {a}"] = {n: paired_test(fa[:, u], fb[:, u]) for u, n in enumerate(names)}
    return out


def _fmt(v, nd=1):
    return "–" if v is None else f"{v:.{nd}f}"


def markdown(res: dict) -> str:
    names, arms = res["param_names"], res["arms"]
    head = ["arm", *[f"{n} θ L1 ‰" for n in names], "mean ‰", "targets × seeds", "steps",
            f"steps to ≤ {THRESHOLD:.0f} ‰", "CPU s", "CPU s / trajectory"]
    prob = res.get("problem") or {}
    where = "" if not prob.get("preset") else (
        f" on the twin `{prob['preset']}` {json.dumps(prob['synth_kw']) if prob['synth_kw'] else ''}"
        f" ({prob['n_samples']} samples, JTFS {json.dumps(prob['jtfs'])})")
    lines = [f"# θ recovery by direct optimisation: {res['synth']}{where}", "",
             "Final θ L1 ‰ (mean over targets of the seed-averaged error, ± 95 % CI over targets).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm in ORDER:
        if arm not in arms:
            continue
        a = arms[arm]
        t = a["theta_l1_permille"]
        lines.append("| " + " | ".join([LABELS[arm], *[f"{t[n]['mean']:.1f} ± {t[n]['ci95']:.1f}" for n in names],
                                         f"{t['mean']:.1f} ± {t['ci95']:.1f}", f"{a['n_targets']} × {a['n_seeds']}",
                                         str(a["steps"]), _fmt(a["steps_to_error"], 0), f"{a['cpu_s']:.0f}",
                                         f"{a['cpu_s_per_trajectory']:.1f}"]) + " |")
    if any("on_jtfs_targets" in a for a in arms.values()):
        j = arms["jtfs"]["on_jtfs_targets"]
        lines += ["", f"On the JTFS arm's {j['n_targets']} targets and seed(s) {j['seeds']} (mean θ L1 ‰): " +
                  ", ".join(f"{LABELS[k]} {a['on_jtfs_targets']['theta_l1_permille']:.1f}"
                            for k, a in arms.items() if "on_jtfs_targets" in a) + "."]
    refs = [r for r in ("scrapl_padam", "scrapl_psaga", "scrapl_thetais") if r in arms]
    if refs:
        lines += ["", "First recorded step at which an arm's mean θ L1 reaches each SCRAPL arm's final error:", "",
                  "| arm | " + " | ".join(f"→ {LABELS[r]} ({arms[r]['theta_l1_permille']['mean']:.1f} ‰)"
                                           for r in refs) + " |", "|---|" + "---|" * len(refs)]
        for arm in ORDER:
            if arm in arms:
                lines.append(f"| {LABELS[arm]} | " + " | ".join(_fmt(arms[arm]["steps_to"].get(r), 0)
                                                               for r in refs) + " |")
    if res.get("paired"):
        lines += ["", "Paired differences over targets (b − a, θ L1 ‰, 95 % t-interval, p):", ""]
        for key, per in res["paired"].items():
            lines.append(f"- {key}: " + "; ".join(
                f"{n} {v['delta_mean']:+.1f} ± {_fmt(v['t_ci95'])} (p = {_fmt(v['p_value'], 3)})" for n, v in per.items()))
    p = res["provenance"]
    lines += ["", f"Raw runs at commit `{p['raw_commit']}`; aggregated with `{p['command']}`.",
              f"Versions: {json.dumps(p['versions'])}. Per-arm commands, load averages and settings: "
              f"`direct_{res['synth']}.json` (`raw_provenance`, `settings`).", ""]
    return "\n".join(lines)


def plot(res: dict, file: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = res["param_names"]
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.6), sharey=True)
    for u, (ax, name) in enumerate(zip(np.atleast_1d(axes), names)):
        for arm in ORDER:
            if arm in res["arms"]:
                a = res["arms"][arm]
                ax.plot(a["curve_steps"], a["curve_per_param"][u], label=LABELS[arm].replace("𝒫", "P"),  # font
                        lw=2 if arm.startswith("scrapl") else 1.2, ls="--" if arm == "jtfs" else "-")
        ax.set_title(f"{res['synth']}: {name}")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("θ L1 ‰ (mean over targets, seeds)")
    np.atleast_1d(axes)[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(file, dpi=110)
    plt.close(fig)
