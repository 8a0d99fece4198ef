"""Tables and figures of the granular CPU twin (called by ``experiments/twin_granular.py``).

``write_sweep``: ``experiments/results/twin_sweep.{json,md}`` — one row per sweep run (test θ L1 per parameter,
validation curve, steps to convergence, cost). ``write_tables``: ``experiments/results/twin_granular.{json,md,png}`` in
the issue's shape ``{"arms": {ARM: {...}}, "settings": {...}, "provenance": {...}}`` with 95 % CIs over seeds, steps to
convergence (first validation step with θ L1 < 100 ‰, paper Table 2), and paired tests (ablation steps, SCRAPL vs MSS).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from scraplab.metrics.runs import read_run
from scraplab.metrics.stats import mean_ci95, paired_test
from scraplab.metrics.theta import steps_to_convergence

THRESHOLD = 100.0  # ‰, the paper's convergence threshold
METRIC = "test/theta_l1_permille"
LABELS = {"param": "P-loss (supervised)", "mss_linear": "MSS Linear", "mss_random": "MSS Random", "jtfs": "JTFS (all paths)",
          "scrapl_adamw": "SCRAPL (AdamW)", "scrapl_padam": "+ 𝒫-Adam", "scrapl_psaga": "+ 𝒫-SAGA",
          "scrapl_thetais": "+ θ-IS"}
PAPER = {  # paper Tables 1–2 (granular, test θ L1 ‰, 20 seeds; JTFS 1 run), for the README's side-by-side table
    "param": None, "mss_linear": 366.0, "mss_random": 200.0, "jtfs": 42.4, "scrapl_adamw": 99.7,
    "scrapl_padam": 87.4, "scrapl_psaga": 73.8, "scrapl_thetais": 65.7}


def _run_row(folder: Path) -> dict:
    run = read_run(folder, METRIC)
    steps, vals = run.history if run.history else ([], [])
    m = run.metrics
    return {"folder": str(folder), "seed": run.seed, "method": run.method,
            "theta_l1_permille": m[METRIC], "per_param": run.per_param,
            "init_theta_l1_permille": m.get("init/theta_l1_permille"),
            "conv_steps": steps_to_convergence(steps, vals, THRESHOLD) if steps else None,
            "val_steps": steps, "val_theta_l1_permille": vals, "ms_per_step": run.ms_per_step,
            "wall_s": m.get("wall_s"), "steps": m.get("steps"), "n_paths": m.get("scrapl/n_paths"),
            "warmup_s": m.get("theta_is/warmup_s"),
            "jtfs_distance": next((v for k, v in m.items() if k.startswith("test/audio/jtfs_")), None),
            "mss_lin": m.get("test/audio/mss_lin")}


def write_sweep(out: Path, results: Path, summary: dict) -> dict:
    rows = {}
    for rec in summary["runs"]:
        rows[rec["name"]] = _run_row(out / rec["name"])
    doc = {"runs": rows, "provenance": {k: summary[k] for k in ("commit", "dirty", "command", "versions", "wall_s",
                                                                 "load_before", "load_after", "jobs")}}
    results.mkdir(parents=True, exist_ok=True)
    (results / "twin_sweep.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    lines = ["# Granular twin: sweep over P and learning rate (seed 0)", "",
             f"`{summary['command']}` at commit `{summary['commit'][:10]}`; {summary['jobs']} runs at once, 1 thread each.",
             "", "| run | P | test θ L1 ‰ | density | slope | val θ L1 ‰ at steps | conv. step | ms/step | warm-up s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in sorted(rows.items()):
        curve = ", ".join(f"{s}: {v:.0f}" for s, v in zip(r["val_steps"], r["val_theta_l1_permille"])
                          if s % 500 == 0)
        lines.append(f"| {name} | {r['n_paths'] or '–'} | {r['theta_l1_permille']:.1f} | "
                     f"{r['per_param'].get('density', float('nan')):.1f} | {r['per_param'].get('slope', float('nan')):.1f} | "
                     f"{curve} | {r['conv_steps'] or '–'} | {r['ms_per_step'] or float('nan'):.0f} | "
                     f"{'–' if r['warmup_s'] is None else format(r['warmup_s'], '.0f')} |")
    (results / "twin_sweep.md").write_text("\n".join(lines) + "\n")
    return doc


def _stat(values: list[float], what: str) -> dict:
    mean, ci = mean_ci95(values, what)
    return {"mean": mean, "ci95": ci}


def _paired(a: dict, b: dict, key: str, what: str) -> Optional[dict]:
    pairs = [(a[s][key], b[s][key]) for s in sorted(set(a) & set(b))
             if a[s][key] is not None and b[s][key] is not None]
    if len(pairs) < 2:
        return None
    return {"n": len(pairs), **paired_test([p[0] for p in pairs], [p[1] for p in pairs], what)}


def summarise_arm(arm: str, rows: list[dict]) -> dict:
    rows = sorted(rows, key=lambda r: r["seed"])
    entry = {"label": LABELS[arm], "n_seeds": len(rows), "seeds": [r["seed"] for r in rows],
             "theta_l1_permille": _stat([r["theta_l1_permille"] for r in rows], f"{arm} θ L1")}
    for p in sorted({p for r in rows for p in r["per_param"]}):
        entry["theta_l1_permille"][p] = _stat([r["per_param"][p] for r in rows], f"{arm} {p}")
    conv = [r["conv_steps"] for r in rows]
    done = [c for c in conv if c is not None]
    entry["conv_steps"] = {**(_stat(done, f"{arm} conv") if done else {"mean": None, "ci95": None}),
                           "n_converged": len(done), "rate": len(done) / len(rows)}
    entry["ms_per_step"] = float(np.median([r["ms_per_step"] for r in rows if r["ms_per_step"] is not None]))
    entry["wall_s"] = _stat([r["wall_s"] for r in rows], f"{arm} wall")
    if any(r["warmup_s"] is not None for r in rows):
        entry["warmup_s"] = _stat([r["warmup_s"] for r in rows], f"{arm} warm-up")
        entry["warmup_fraction"] = _stat([r["warmup_s"] / r["wall_s"] for r in rows], f"{arm} warm-up share")
    for key in ("jtfs_distance", "mss_lin"):
        vals = [r[key] for r in rows if r[key] is not None]
        if vals:
            entry[f"test_{key}"] = _stat(vals, f"{arm} {key}")
    entry["runs"] = rows
    return entry
