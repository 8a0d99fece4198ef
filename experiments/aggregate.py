"""Aggregate training runs into the paper's tables (Mitcheltree et al. 2026, Tables 1, 2 and 6).

    python experiments/aggregate.py outputs/train/multiruns/2026-... --name granular_cpu
    python experiments/aggregate.py RUNS --name granular_cpu_ablation            # layout "ablation" from the name

Reads every run folder under the given roots (``metrics.json`` + ``config.yaml``, see ``scraplab.metrics.runs``),
groups runs by method, and writes ``experiments/results/NAME.md`` (markdown table: mean ± 95 % CI over seeds,
CI = 1.96·std(ddof=0)/√n) and ``experiments/results/NAME.json``: ``{method: {"theta_l1_permille_mean", "ci95",
"n_seeds", "seeds", "ms_per_step", "ms_per_step_source", "per_param_mean", "per_param_ci95",
"init_theta_l1_permille_mean", "total_variation_mean", "total_variation_ci95", "conv_steps_mean",
"conv_steps_ci95", "convergence_rate", "n_history", "arm", "label", "runs", "command"[, "paired_vs_previous"]]}``.

Layouts. ``comparison`` (Table 1): the most complete SCRAPL arm present (θ-IS > 𝒫-SAGA > 𝒫-Adam > AdamW) is
reported as ``scrapl`` (its arm in ``"arm"``); other arms keep their names. ``ablation`` (Tables 2 and 6): arm names
are kept and each arm gets a paired t-test against the previous arm present (same seeds): Δ test θ L1, Δ total
variation, Δ convergence steps (seeds converged in both). Failed runs and runs without the metric are listed as
excluded; two runs with the same method and seed are an error (aggregate them separately).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
from pathlib import Path
from typing import Optional

from scraplab.metrics.runs import Run, RunFolderError, SkippedRun, find_run_folders, read_run
from scraplab.metrics.stats import mean_ci95, paired_test
from scraplab.metrics.theta import convergence_rate, steps_to_convergence, total_variation

ABLATION_ORDER = ["scrapl_adamw", "scrapl_padam", "scrapl_psaga", "scrapl_psaga_thetais"]
SCRAPL_PRIORITY = ["scrapl_psaga_thetais", "scrapl_psaga", "scrapl_padam", "scrapl_adamw", "scrapl_sgd"]
ROW_ORDER = ["jtfs", "scrapl", *SCRAPL_PRIORITY, "mss_lin", "mss_log_lin", "mss_rev", "mss_rand", "scat1d", "param"]
LABELS = {"scrapl": "SCRAPL", "scrapl_adamw": "SCRAPL (AdamW)", "scrapl_padam": "SCRAPL + 𝒫-Adam",
          "scrapl_psaga": "SCRAPL + 𝒫-Adam + 𝒫-SAGA", "scrapl_psaga_thetais": "SCRAPL + 𝒫-Adam + 𝒫-SAGA + θ-IS",
          "scrapl_sgd": "SCRAPL (SGD)", "jtfs": "JTFS", "mss_lin": "MSS Linear", "mss_log_lin": "MSS Log + Linear",
          "mss_rev": "MSS Revisited", "mss_rand": "MSS Random", "scat1d": "Scattering1D", "param": "P-loss (supervised)"}
ARM_FLAGS = {"scrapl_adamw": ("", "", ""), "scrapl_padam": ("✓", "", ""), "scrapl_psaga": ("✓", "✓", ""),
             "scrapl_psaga_thetais": ("✓", "✓", "✓")}


def collect(roots: list[Path], metric: str) -> tuple[list[Run], list[tuple[str, str]]]:
    runs, excluded, seen = [], [], {}
    for folder in find_run_folders(roots):
        try:
            run = read_run(folder, metric)
        except SkippedRun as why:
            excluded.append((str(folder), str(why)))
            continue
        key = (run.method, run.seed)
        if key in seen:
            raise RunFolderError(f"two runs of method {run.method!r} with seed {run.seed}: {seen[key]} and {folder}; "
                                 "aggregate them separately or remove one")
        seen[key] = folder
        runs.append(run)
    if not runs:
        raise RunFolderError(f"no usable run folders (metrics.json + config.yaml) under {[str(r) for r in roots]}"
                             + (f"; excluded: {excluded}" if excluded else ""))
    return runs, excluded


def _ci(values: list[float], what: str) -> tuple[Optional[float], Optional[float]]:
    return mean_ci95(values, what) if values else (None, None)


def summarise(method: str, runs: list[Run], metric: str, threshold: float) -> dict:
    runs = sorted(runs, key=lambda r: r.seed)
    mean, ci = mean_ci95([r.metrics[metric] for r in runs], f"{method}: {metric}")
    params = sorted({p for r in runs for p in r.per_param})
    per = {p: mean_ci95([r.per_param[p] for r in runs if p in r.per_param], f"{method}: {p}") for p in params}
    init = [r.metrics["init/theta_l1_permille"] for r in runs
            if isinstance(r.metrics.get("init/theta_l1_permille"), (int, float))]
    ms = [r.ms_per_step for r in runs if r.ms_per_step is not None]
    with_hist = [r for r in runs if r.history is not None]
    tvs = [total_variation(r.history[1]) for r in with_hist]
    conv = [steps_to_convergence(*r.history, threshold=threshold) for r in with_hist]
    tv_mean, tv_ci = _ci(tvs, f"{method}: total variation")
    cs_mean, cs_ci = _ci([c for c in conv if c is not None], f"{method}: convergence steps")
    return {
        "label": LABELS.get(method, method), "arm": method,
        "theta_l1_permille_mean": mean, "ci95": ci, "n_seeds": len(runs), "seeds": [r.seed for r in runs],
        "per_param_mean": {p: v[0] for p, v in per.items()}, "per_param_ci95": {p: v[1] for p, v in per.items()},
        "init_theta_l1_permille_mean": sum(init) / len(init) if init else None,
        "ms_per_step": sorted(ms)[len(ms) // 2] if ms else None,  # median over runs
        "ms_per_step_source": sorted({r.ms_per_step_source for r in runs if r.ms_per_step_source}) or None,
        "total_variation_mean": tv_mean, "total_variation_ci95": tv_ci,
        "conv_steps_mean": cs_mean, "conv_steps_ci95": cs_ci,
        "convergence_rate": convergence_rate(conv) if conv else None, "n_history": len(with_hist),
        "runs": [{"seed": r.seed, "folder": str(r.folder), metric: r.metrics[metric],
                  "total_variation": total_variation(r.history[1]) if r.history else None,
                  "conv_steps": steps_to_convergence(*r.history, threshold=threshold) if r.history else None}
                 for r in runs],
    }


def add_paired_tests(table: dict, metric: str) -> None:
    arms = [a for a in ABLATION_ORDER if a in table]
    for prev, cur in zip(arms, arms[1:]):
        a = {r["seed"]: r for r in table[prev]["runs"]}
        b = {r["seed"]: r for r in table[cur]["runs"]}
        seeds = sorted(set(a) & set(b))
        res = {"previous": prev, "seeds": seeds}
        for key, name in ((metric, "theta_l1_permille"), ("total_variation", "total_variation"),
                          ("conv_steps", "conv_steps")):
            pairs = [(a[s][key], b[s][key]) for s in seeds if a[s][key] is not None and b[s][key] is not None]
            res[name] = (paired_test([p[0] for p in pairs], [p[1] for p in pairs], f"{prev} → {cur}: {name}")
                         if pairs else None)
        table[cur]["paired_vs_previous"] = res


def build_table(runs: list[Run], layout: str, metric: str, threshold: float) -> dict:
    by_method: dict[str, list[Run]] = {}
    for r in runs:
        by_method.setdefault(r.method, []).append(r)
    table = {m: summarise(m, rs, metric, threshold) for m, rs in by_method.items()}
    if layout == "ablation":
        add_paired_tests(table, metric)
    else:
        best = next((a for a in SCRAPL_PRIORITY if a in table), None)
        if best is not None and "scrapl" not in table:
            table["scrapl"] = table.pop(best)
            table["scrapl"]["label"] = LABELS["scrapl"]
    rows = ABLATION_ORDER + ROW_ORDER if layout == "ablation" else ROW_ORDER
    order = {m: i for i, m in reversed(list(enumerate(rows)))}
    return dict(sorted(table.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def _f(x: Optional[float], ci: Optional[float] = None, digits: int = 1) -> str:
    if x is None:
        return "—"
    return f"{x:.{digits}f}" + (f" ± {ci:.{digits}f}" if ci is not None else "")


def _p(res: Optional[dict], digits: int) -> str:
    if not res:
        return "—"
    p = res["p_value"]
    ptxt = "p n/a" if p is None else ("p < 0.01" if p < 0.01 else f"p = {p:.2f}")
    return f"{_f(res['delta_mean'], res['t_ci95'], digits)} ({ptxt}, n = {res['n']})"


def to_markdown(name: str, table: dict, layout: str, metric: str, command: str, excluded, synths) -> str:
    lines = [f"# {name}", "", f"Produced by `{command}` on {dt.date.today().isoformat()} (synth: {', '.join(synths)}).",
             "", f"Values: test `{metric}` at the tested checkpoint, mean ± 95 % CI over seeds "
             "(1.96·std(ddof=0)/√n; ± 0 for one seed). ms/step: median over runs of each run's per-step time "
             "(see the JSON's `ms_per_step_source`).", ""]
    params = sorted({p for e in table.values() for p in e["per_param_mean"]})
    if layout == "comparison":
        lines += ["| Method | θ L1 ‰ | " + " | ".join(f"θ_{p} L1 ‰" for p in params) + " | ms/step | untrained ‰ | n |",
                  "|---|---|" + "---|" * len(params) + "---|---|---|"]
        for m, e in table.items():
            cells = [_f(e["per_param_mean"].get(p), e["per_param_ci95"].get(p)) for p in params]
            lines.append(f"| {e['label']} | {_f(e['theta_l1_permille_mean'], e['ci95'])} | " + " | ".join(cells)
                         + f" | {_f(e['ms_per_step'])} | {_f(e['init_theta_l1_permille_mean'])} | {e['n_seeds']} |")
    else:
        lines += ["| Method | 𝒫-Adam | 𝒫-SAGA | θ-IS | Test θ L1 ‰ | Val Total Var. | Val Conv. Steps | CR | n |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for m, e in table.items():
            flags = ARM_FLAGS.get(m, ("", "", ""))
            cr = "—" if e["convergence_rate"] is None else f"{100 * e['convergence_rate']:.0f} %"
            lines.append(f"| {e['label']} | {' | '.join(flags)} | {_f(e['theta_l1_permille_mean'], e['ci95'])} | "
                         f"{_f(e['total_variation_mean'], e['total_variation_ci95'], 2)} | "
                         f"{_f(e['conv_steps_mean'], e['conv_steps_ci95'], 0)} | {cr} | {e['n_seeds']} |")
        lines += ["", "Paired differences against the previous arm (mean ± 95 % t-interval, paired t-test):", "",
                  "| Added | Δ test θ L1 ‰ | Δ Total Var. | Δ Conv. Steps |", "|---|---|---|---|"]
        for m, e in table.items():
            if "paired_vs_previous" in e:
                r = e["paired_vs_previous"]
                lines.append(f"| {e['label']} (vs {LABELS.get(r['previous'], r['previous'])}) | "
                             f"{_p(r['theta_l1_permille'], 1)} | {_p(r['total_variation'], 2)} | "
                             f"{_p(r['conv_steps'], 0)} |")
    lines += ["", "Convergence: first validation step with θ L1 below the threshold; Total Var.: Σ|Δ| of the "
              "validation θ-L1 curve (‰) / number of validation points."]
    if excluded:
        lines += ["", "Excluded runs:", ""] + [f"- `{f}`: {why}" for f, why in excluded]
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("roots", nargs="+", type=Path, help="folders searched recursively for run folders")
    ap.add_argument("--name", required=True, help="table name: writes OUT/NAME.md and OUT/NAME.json")
    ap.add_argument("--layout", choices=["auto", "comparison", "ablation"], default="auto",
                    help="auto: ablation when NAME ends with '_ablation'")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    ap.add_argument("--metric", default="test/theta_l1_permille")
    ap.add_argument("--threshold", type=float, default=100.0, help="convergence threshold in ‰ (paper: 100)")
    ap.add_argument("--allow-mixed-synths", action="store_true")
    ap.add_argument("--plot", action="store_true", help="also write the Pareto plot OUT/NAME_pareto.png")
    args = ap.parse_args(argv)
    layout = args.layout if args.layout != "auto" else ("ablation" if args.name.endswith("_ablation")
                                                          else "comparison")
    command = " ".join(shlex.quote(a) for a in ["python", "experiments/aggregate.py", *argv])
    runs, excluded = collect(args.roots, args.metric)
    synths = sorted({r.synth for r in runs})
    if len(synths) > 1 and not args.allow_mixed_synths:
        raise RunFolderError(f"runs of several synths {synths}: aggregate them separately "
                             "(or pass --allow-mixed-synths)")
    table = build_table(runs, layout, args.metric, args.threshold)
    for entry in table.values():
        entry["command"] = command
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(table, indent=2, ensure_ascii=False) + "\n")
    (args.out / f"{args.name}.md").write_text(to_markdown(args.name, table, layout, args.metric, command,
                                                          excluded, synths))
    if args.plot:
        sys.path.insert(0, str(Path(__file__).resolve().parent))  # experiments/plots.py, next to this file
        from plots import pareto
        pareto(args.out / f"{args.name}.json", args.out / f"{args.name}_pareto.png")
    return table


if __name__ == "__main__":
    try:
        main()
    except RunFolderError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
