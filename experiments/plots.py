"""Pareto plot of accuracy vs cost (paper Figure 1): relative θ error vs relative cost per training step, both
relative to the supervised P-loss (``param``), from a table written by ``experiments/aggregate.py``.

    python experiments/plots.py experiments/results/granular_cpu.json [--out experiments/results/granular_cpu_pareto.png]

x = ms_per_step(method) / ms_per_step(param), y = θ L1(method) / θ L1(param); error bars = the 95 % CI scaled the
same way. The paper's x-axis is (loss time + model step) / (P-loss time + model step) from a separate benchmark; ours
uses the measured per-step time of each training run, which contains the same model step, so the two agree in form.
Both axes are logarithmic; (1, 1) is the supervised reference.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def pareto_points(table: dict, reference: str = "param") -> dict[str, tuple[float, float, float]]:
    """``{method: (relative cost, relative error, relative CI)}`` for methods with a time; needs ``reference``."""
    ref = table.get(reference)
    if ref is None:
        raise ValueError(f"the table has no '{reference}' (P-loss) entry to normalise by; methods: {sorted(table)}")
    if not ref.get("ms_per_step") or not ref.get("theta_l1_permille_mean"):
        raise ValueError(f"'{reference}' needs a positive ms_per_step and theta_l1_permille_mean")
    out = {}
    for m, e in table.items():
        if e.get("ms_per_step") is None:
            continue
        out[m] = (e["ms_per_step"] / ref["ms_per_step"], e["theta_l1_permille_mean"] / ref["theta_l1_permille_mean"],
                  (e.get("ci95") or 0.0) / ref["theta_l1_permille_mean"])
    return out


def pareto(table_json: Path, out_png: Path, reference: str = "param") -> Path:
    """Draw the Pareto plot of ``table_json`` into ``out_png``; returns the PNG path."""
    table_json = Path(table_json)
    try:
        table = json.loads(table_json.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{table_json}: cannot read the aggregated table ({err})") from err
    points = pareto_points(table, reference)
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for m, (x, y, ci) in points.items():
        colour = "C3" if m.startswith("scrapl") else ("C0" if m == "jtfs" else ("k" if m == reference else "C2"))
        ax.errorbar([x], [y], yerr=[ci], fmt="o", color=colour, capsize=3)
        ax.annotate(table[m].get("label", m), (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.margins(x=0.2, y=0.15)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"relative cost per training step (× {table[reference].get('label', reference)})")
    ax.set_ylabel(f"relative test θ L1 (× {table[reference].get('label', reference)})")
    ax.set_title(table_json.stem)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=150)
    plt.close(fig)
    return out_png


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="Pareto plot from an aggregated table (experiments/aggregate.py)")
    ap.add_argument("table", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--reference", default="param")
    args = ap.parse_args()
    print(pareto(args.table, args.out or args.table.with_name(args.table.stem + "_pareto.png"), args.reference))
