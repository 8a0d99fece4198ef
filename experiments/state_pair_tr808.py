"""Does the compact 𝒫-Adam + 𝒫-SAGA state (bfloat16 tables, factored second moment) cost the 808 matcher any θ
accuracy? (issue 14: the 808 state ≤ 1 GB by default at the paper encoder's size, with θ error not worse than
fp32 in a paired run.)

    python experiments/state_pair_tr808.py            # 2 arms × 3 seeds, then experiments/results/state_pair_tr808.{json,md}

Both arms train the same runs (SCRAPL log1p, 𝒫-Adam + 𝒫-SAGA, uniform π, the paper encoder paper_14p, seeds 0–2) on
the synthetic 808 one-shots (`experiment=cpu_tr808_synthetic`, which has θ), shortened to 8192 samples and 400 steps
at lr 1e-3 for the CPU (at the paper's 1e-4, 200 steps left every run at the untrained encoder's ~247 ‰, where
nothing can be told apart): `fp32` keeps the optimizer state in float32, `compact` is what `experiment=paper_tr808` uses
(state_dtype bfloat16, factored_v). Test θ L1 ‰ is compared seed by seed (paired t-test, compact − fp32). The state
sizes at the paper's 808 size (P = 483, 724 642 weights) are experiments/benchmark_optim.py's (2.81 GB vs 0.71 GB).
Runs: outputs/state_pair_tr808/<arm>/seed<k>, two at a time, one BLAS thread each (experiments/runplan.py: a rerun
skips what this commit and command finished and refuses folders of other code).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # runplan.py (not a package)
from runplan import RunPlanError, add_plan_arguments, execute, one_commit, provenance, run_cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
PRESET = "experiment=cpu_tr808_synthetic"
COMMON = ["loss=scrapl", "optim=p_saga", "sampler=uniform", "encoder=paper_14p", "synth.n_samples=8192",
          "optim.lr=1e-3", "trainer.max_steps=400", "trainer.val_check_interval=200", "eval_init=false",
          "module.eval_loss=false", "module.test_audio=null"]
ARMS = {"fp32": [], "compact": ["optim.state_dtype=bfloat16", "optim.factored_v=true"]}
METRIC = "test/theta_l1_permille"


def plan(seeds: list[int], out: Path) -> dict:
    return {f"{a}/seed{s}": (out / a / f"seed{s}", COMMON + o + [f"seed={s}"]) for s in seeds for a, o in ARMS.items()}


def table(out: Path, results: Path, command: str) -> dict:
    from scraplab.metrics.runs import read_run
    from scraplab.metrics.stats import mean_ci95, paired_test

    folders = sorted(p.parent for p in out.glob("*/seed*/metrics.json"))
    if not folders:
        raise RunPlanError(f"no finished runs under {out}")
    commit, records = one_commit(folders, out)
    runs = {(f.parent.name, int(f.name.removeprefix("seed"))): read_run(f, METRIC) for f in folders}
    seeds = sorted({s for a, s in runs if a == "fp32"} & {s for a, s in runs if a == "compact"})
    summary = json.loads((out / "state_pair_provenance.json").read_text())
    doc = {"arms": {}, "paired": {}, "seeds": seeds, "settings": {"preset": PRESET, "common": COMMON, "arms": ARMS},
           "provenance": {"commit": commit, "runs_command": summary["command"], "versions": summary["versions"],
                          "wall_s": summary["wall_s"], "table_command": command,
                          "runs": [{k: r.get(k) for k in ("name", "command", "wall_s", "load_before", "load_after")}
                                   for r in records]}}
    params = sorted(runs[next(iter(runs))].per_param)
    for arm in ARMS:
        vals = [runs[(arm, s)].metrics[METRIC] for s in seeds]
        m, c = mean_ci95(vals, f"{arm} θ L1")
        doc["arms"][arm] = {"theta_l1_permille": {"mean": m, "ci95": c, "per_seed": vals}}
    for key in [None, *params]:
        get = (lambda r: r.metrics[METRIC]) if key is None else (lambda r, k=key: r.per_param[k])
        doc["paired"][key or "theta_l1_permille"] = paired_test([get(runs[("fp32", s)]) for s in seeds],
                                                                [get(runs[("compact", s)]) for s in seeds],
                                                                f"compact − fp32 {key or 'θ L1'}")
    results.mkdir(parents=True, exist_ok=True)
    (results / "state_pair_tr808.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    d = doc["paired"]["theta_l1_permille"]
    ci = "–" if d["t_ci95"] is None else f"{d['t_ci95']:.1f}"
    p = "–" if d["p_value"] is None else f"{d['p_value']:.2f}"
    lines = ["# TR-808 optimizer state: bfloat16 + factored v against float32, paired", "",
             f"Runs at commit `{commit[:10]}` (`python experiments/state_pair_tr808.py`); {len(seeds)} seeds.", "",
             "| arm | test θ L1 ‰ (mean ± 95 % CI) | per seed |", "|---|---|---|"]
    for arm, v in doc["arms"].items():
        t = v["theta_l1_permille"]
        lines.append(f"| {arm} | {t['mean']:.1f} ± {t['ci95']:.1f} | {', '.join(f'{x:.1f}' for x in t['per_seed'])} |")
    worse = [k for k, v in doc["paired"].items() if v["p_value"] is not None and v["p_value"] < 0.05 and v["delta_mean"] > 0]
    lines += ["", f"compact − fp32: {d['delta_mean']:+.1f} ± {ci} ‰ (p = {p}); parameters significantly worse "
              f"(p < 0.05): {', '.join(worse) or 'none'}."]
    (results / "state_pair_tr808.md").write_text("\n".join(lines) + "\n")
    return doc


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", nargs="?", default="all", choices=["all", "run", "table"])
    add_plan_arguments(ap, ROOT / "outputs" / "state_pair_tr808")
    args = ap.parse_args(argv)
    command = shlex.join(["python", "experiments/state_pair_tr808.py", *argv])
    if args.what in ("all", "run"):
        execute(plan(args.seeds, args.out), provenance(command, args.allow_dirty), args.jobs, args.overwrite,
                [PRESET], args.out, "state_pair")
    if args.what in ("all", "table"):
        print(json.dumps(table(args.out, RESULTS, command)["paired"], indent=1))


if __name__ == "__main__":
    run_cli(main)
