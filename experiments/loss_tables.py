"""The README's loss-benchmark tables, rendered from the result files of one ``run_loss_benchmarks.sh`` run.

    python experiments/loss_tables.py experiments/results/loss_benchmarks_<commit>   # prints Markdown

The folder holds ``quick.json`` (``benchmark_losses.py --quick``), ``paired_315.json`` (``--paired 315``) and,
where the oracle venv was there, ``kymatio.json`` (``compare_kymatio_jtfs.py``). Every figure printed is read from
those files; the commit and command of each file are printed under its table, and a folder whose files come from
different commits is refused (its tables would mix code).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

LABELS = {
    "mss_linear": "MSS Linear (paper config)",
    "mss_loglin": "MSS Log + Linear",
    "mss_revisited": "MSS Revisited",
    "mss_random": "MSS Random",
    "scattering1d": "Scattering1D (kymatio 0.3.0, J=12, Q=(8,2))",
    "scrapl_315": "**SCRAPL, P = 315**",
    "scrapl_315_warm": "SCRAPL, P = 315, targets stored",
    "scrapl_483": "**SCRAPL, P = 483** (808 settings at 32768 samples)",
    "scrapl_483_warm": "SCRAPL, P = 483, targets stored",
    "jtfs_315": "exact full JTFS (orders 1+2)",
    "jtfs_483": "exact full JTFS, 808 settings",
}
FILES = ("quick.json", "paired_315.json", "kymatio.json")


def _load(folder: Path) -> dict[str, dict]:
    docs = {name: json.loads((folder / name).read_text()) for name in FILES if (folder / name).exists()}
    if "quick.json" not in docs and "paired_315.json" not in docs:
        raise SystemExit(f"{folder}: neither quick.json nor paired_315.json is there (run run_loss_benchmarks.sh)")
    commits = {name: (d["provenance"].get("commit"), d["provenance"].get("dirty")) for name, d in docs.items()}
    if len({c for c, _ in commits.values()}) > 1:
        raise SystemExit(f"{folder}: the files come from different commits {commits}: regenerate them together")
    return docs


def _source(doc: dict) -> str:
    prov = doc["provenance"]
    dirty = " (uncommitted changes)" if prov.get("dirty") else ""
    load = ", ".join(f"{v:.2f}" for v in prov.get("load_before") or ())
    return f"`{prov.get('command')}` at {str(prov.get('commit'))[:7]}{dirty}, load average before it {load}"


def quick_table(doc: dict) -> list[str]:
    """Times and peak memory per row. No ratio column: each row runs in its own process, minutes after the MSS
    Linear row, and on a machine whose speed drifts over minutes that ratio can be off by 2× (the ratios of record
    are the paired and kymatio tables', taken within one process)."""
    rows = {r["name"]: r for r in doc["rows"]}
    out = ["| loss | paths | mean ms | median ms | min ms | max ms | peak MB |", "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        if name.startswith("jtfs_"):  # one timed call: no spread to show
            cells = [f"{r['mean_ms']:,.0f}".replace(",", " "), "–", "–", "–"]
        else:
            cells = [f"{r[k]:.1f}" for k in ("mean_ms", "median_ms", "min_ms", "max_ms")]
        out.append(f"| {LABELS.get(name, name)} | {r.get('paths') or '–'} | " + " | ".join(cells)
                   + f" | {r['peak_mb']:.0f} |")
    out += ["", f"From {_source(doc)}; {doc.get('threads')} threads, host memory {doc.get('host_memory')}."]
    return out


def paired_table(doc: dict) -> list[str]:
    m = doc["median"]

    def cell(ms_key, ratio_key):
        return (f"{m[ms_key]:.1f} ms, **{m[ratio_key]:.2f}×** [{m[ratio_key + '_min']:.2f}, "
                f"{m[ratio_key + '_max']:.2f}]")

    out = ["| step | time, ratio to MSS Linear [range over rounds] |", "|---|---|",
           f"| MSS Linear | {m['mss_linear_ms']:.1f} ms |",
           f"| SCRAPL, a new target every step | {cell('scrapl_ms', 'ratio')} |",
           f"| SCRAPL, targets stored | {cell('scrapl_warm_ms', 'ratio_warm')} |",
           f"| SCRAPL, new target, target overlap off | {cell('scrapl_serial_ms', 'ratio_serial')} |"]
    if "target_ms" in m:
        out += [f"| the target's transform alone (no autograd) | {cell('target_ms', 'ratio_target')} |",
                f"| share of it the overlap hides | {100 * m['hidden']:.0f} % [{100 * m['hidden_min']:.0f}, "
                f"{100 * m['hidden_max']:.0f}] |"]
    out += ["", f"Medians of {len(doc['rounds'])} rounds, P = {doc['paths']} ({doc['classes']} path classes), from "
            f"{_source(doc)}; {doc.get('threads')} threads."]
    return out


def kymatio_table(doc: dict) -> list[str]:
    runs: dict[str, list[dict]] = {}
    for r in doc["runs"]:
        runs.setdefault(r["row"], []).append(r)

    def mean(row):
        return sum(r["mean_ms"] for r in runs[row]) / len(runs[row])

    def peak(row):
        return max(r["peak_mb"] for r in runs[row]) / 1024

    out = ["| | full JTFS step | MSS Linear step | JTFS / MSS | peak memory |", "|---|---|---|---|---|"]
    for side, label in (("kymatio", "kymatio main"), ("ours", "scraplab")):
        jtfs, mss = mean(f"{side}_jtfs"), mean(f"{side}_mss")
        out.append(f"| {label} | {jtfs / 1000:.2f} s | {mss:.1f} ms | {jtfs / mss:.0f}× | {peak(side + '_jtfs'):.2f} GB |")
    out += [f"| **ratio** | {doc['wall_speedup']:.1f}× faster | | **{doc['speedup_vs_kymatio']:.1f}× faster** "
            f"(target ≥ 20×) | **{doc['memory_ratio']:.2f}** (target ≤ ¼) |",
            "", f"From {_source(doc)}."]
    return out


def render(folder: Path) -> str:
    docs = _load(folder)
    parts = []
    if "quick.json" in docs:
        parts += ["**Every loss** (one child process per row)", ""] + quick_table(docs["quick.json"]) + [""]
    if "paired_315.json" in docs:
        parts += ["**SCRAPL against MSS Linear, in one process** (paired rounds)", ""] \
            + paired_table(docs["paired_315.json"]) + [""]
    if "kymatio.json" in docs:
        parts += ["**The exact full JTFS against kymatio main**", ""] + kymatio_table(docs["kymatio.json"]) + [""]
    return "\n".join(parts)


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    args = ap.parse_args(argv)
    if not args.folder.is_dir():
        raise SystemExit(f"{args.folder}: no such folder")
    text = render(args.folder)
    sys.stdout.write(text)
    return text


if __name__ == "__main__":
    main()
