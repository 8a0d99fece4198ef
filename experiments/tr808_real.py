"""The paper's TR-808 experiment (§4.4, Table 4) on real one-shots: hydrogen-drumkits, split by kit (issue 16).

    make drums                                        # data/drums (never committed)
    python experiments/tr808_real.py run              # every arm × seed (resumable; see experiments/runplan.py)
    python experiments/tr808_real.py table            # experiments/results/tr808_real.{json,md}
    python experiments/tr808_real.py all              # both

Every arm trains with ``experiment=cpu_tr808_real`` (see the preset) and is tested on the unseen test kits with the
paper's audio metrics: the JTFS distance on all paths, the MSS distances, the transient/decay feature errors and the
log-mel L1, plus the collapse measure (``test/theta_spread_ratio``; no θ for real sounds, so its reference is the
spread of θ uniform on [0, 1]). Table: mean ± 95 % CI over seeds, and paired tests of SCRAPL against each arm.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))  # runplan.py (not a package)
from runplan import RunPlanError, add_plan_arguments, execute, one_commit, provenance, run_cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
PRESET = "experiment=cpu_tr808_real"
ARMS: dict[str, list[str]] = {
    "scrapl": [],  # the preset's recipe: log1p JTFS, 𝒫-Adam + 𝒫-SAGA (uniform π on a CPU: see the preset)
    # The same loss with AdamW: at 400 steps and 483 paths a path is drawn 0.83 times, so 𝒫-Adam's per-path moments
    # rarely pass a path's first (sign) step; on the granular twin AdamW beat 𝒫-Adam (twin_granular.md).
    "scrapl_adamw": ["optim=adamw"],
    "mss_linear": ["loss=mss", "optim=adamw", "sampler=uniform"],
    "mss_log_lin": ["loss=mss_log", "optim=adamw", "sampler=uniform"],
    "mss_revisited": ["loss=mss_revisited", "optim=adamw", "sampler=uniform"],
    "mss_random": ["loss=mss_random", "optim=adamw", "sampler=uniform"],
    # The full JTFS at a reduced budget: 15 steps at batch 8 (4 × 2 accumulated: batch 8 at once takes > 20 GB),
    # ≈ 50 s each, about the wall time of SCRAPL's 400 steps (measured 2026-11-29: 8.1 GB peak at batch 2).
    "jtfs": ["loss=jtfs", "optim=adamw", "sampler=uniform", "data.batch_size=2", "trainer.accumulate_grad_batches=4",
             "trainer.max_steps=15", "trainer.val_check_interval=20"],
    # The former default, P-loss on the synth's own renders (no real sound seen, download-free), then tested on the
    # same unseen real kits as the arms above with eval.py.
    "synthetic": [],
}
LABELS = {"scrapl": "SCRAPL (log1p, 𝒫-Adam + 𝒫-SAGA)", "scrapl_adamw": "SCRAPL (log1p, AdamW)", "mss_linear": "MSS Linear",
          "mss_log_lin": "MSS Log + Linear", "mss_revisited": "MSS Revisited", "mss_random": "MSS Random",
          "jtfs": "JTFS (reduced budget)",
          "synthetic": "P-loss on synthetic renders (cpu_tr808_synthetic)"}
METRICS_FILE = {"synthetic": "real_test/metrics.json"}  # the other arms test on the real kits themselves
# `python train.py synth=tr808` (experiment=cpu_tr808, added by the train command) composes exactly the config of
# the arm this table chooses (tests/test_tr808_real.py checks it against the committed result), so the result file's
# "default" entry is that arm's runs, not a second copy of them.
BARE = ["synth=tr808"]


def real_test_overrides() -> list[str]:
    """eval.py overrides that test a checkpoint on the preset's real test kits with the preset's test settings
    (read from the composed preset, so the two cannot drift apart)."""
    from scraplab.cli.build import compose_train
    cfg = compose_train([PRESET, f"paths.root_dir={ROOT}"])
    ta = cfg.module.test_audio
    return ["data=wav_folder", f"data.path={cfg.data.path}", f"data.batch_size={cfg.data.batch_size}",
            f"data.regime={cfg.data.regime}", f"module.eval_loss={str(cfg.module.eval_loss).lower()}",
            f"module.test_audio.mss={str(ta.mss).lower()}",
            f"module.test_audio.jtfs_paths={'null' if ta.jtfs_paths is None else ta.jtfs_paths}",
            f"module.test_audio.features={ta.features}", f"module.test_audio.target_cache={ta.target_cache}"]


def plan_entry(arm: str, seed: int, out: Path) -> tuple:
    """(folder, overrides[, then]) of one run for :func:`runplan.execute` (no leading overrides)."""
    folder = out / arm / f"seed{seed}"
    if arm == "synthetic":
        then = ["eval.py", "ckpt={folder}/checkpoints/best.ckpt", "report_n=0", "hydra.run.dir={folder}/real_test",
                "overrides=[" + ",".join(f'"{o}"' for o in real_test_overrides()) + "]"]
        return folder, ["experiment=cpu_tr808_synthetic", "eval_init=false", f"seed={seed}"], then
    return folder, [PRESET, *ARMS[arm], "eval_init=false", f"seed={seed}"]
# The result file's metric names → metrics.json keys (prefix test/; the JTFS key is found by its prefix,
# audio/jtfs_all<P>). transient_err / decay_err are the loudness L1 over the transient (frames 0–1) and the decay
# (frames 2–65), paper Tables 8–9's first columns; the centroid and flatness errors are reported beside them.
METRICS = {"jtfs_distance": "audio/jtfs", "mss_linear": "audio/mss_lin", "mss_loglin": "audio/mss_log_lin",
           "mss_revisited": "audio/mss_rev", "logmel_l1": "audio/logmel_l1",
           "transient_err": "audio/loudness_transient", "decay_err": "audio/loudness_decay",
           "centroid_transient": "audio/centroid_transient", "centroid_decay": "audio/centroid_decay",
           "flatness_transient": "audio/flatness_transient", "flatness_decay": "audio/flatness_decay",
           "theta_spread_ratio": "theta_spread_ratio"}
RESULT_ARM = {"mss_log_lin": "mss_loglin"}  # the result file's arm names (run folders keep the script's)
# The default recipe (issue 16, part 4): the arm with the best mean rank over these (lower is better for each),
# fixed before the table was run; ties go to the lower JTFS distance.
RANKED = ["jtfs_distance", "mss_linear", "logmel_l1", "transient_err", "decay_err"]


def _value(metrics: dict, key: str) -> Optional[float]:
    if key == "audio/jtfs":
        key = next((k[len("test/"):] for k in metrics if k.startswith("test/audio/jtfs_all")), key)
    v = metrics.get(f"test/{key}")
    return float(v) if isinstance(v, (int, float)) else None


def _collect(out: Path) -> tuple[dict[str, dict[int, dict]], list[Path]]:
    runs: dict[str, dict[int, dict]] = {}
    folders = []
    for arm in ARMS:
        for folder in sorted((out / arm).glob("seed*")):
            met, marker = folder / METRICS_FILE.get(arm, "metrics.json"), folder / "twin_run.json"
            if not met.is_file() or not marker.is_file():
                continue
            m = json.loads(met.read_text())
            if m.get("status") != "ok":
                continue
            folders.append(folder)
            runs.setdefault(arm, {})[int(folder.name[4:])] = m
    return runs, folders


def default_recipe(arms: dict) -> tuple[Optional[str], dict]:
    """The arm with the best mean rank over :data:`RANKED` (arms missing a ranked metric are left out) and every
    arm's mean rank."""
    full = {a: e for a, e in arms.items() if a != "default" and all(k in e for k in RANKED)}
    if not full:
        return None, {}
    rank_sum = {a: 0 for a in full}  # integers: equal mean ranks must compare equal (then the JTFS distance decides)
    for key in RANKED:
        for i, a in enumerate(sorted(full, key=lambda a: full[a][key]["mean"])):
            rank_sum[a] += i + 1
    best = min(full, key=lambda a: (rank_sum[a], full[a]["jtfs_distance"]["mean"]))
    return best, {a: r / len(RANKED) for a, r in rank_sum.items()}


def _paired(ref: dict[int, dict], other: dict[int, dict], arm: str) -> dict:
    """Paired tests (over the seeds both have) of ref − other, per metric with ≥ 2 pairs."""
    from scraplab.metrics.stats import paired_test
    out = {}
    for name, key in METRICS.items():
        pairs = [(_value(other[s], key), _value(ref[s], key)) for s in sorted(set(ref) & set(other))]
        pairs = [p for p in pairs if None not in p]
        if len(pairs) >= 2:
            out[name] = paired_test([p[0] for p in pairs], [p[1] for p in pairs], f"{arm} {name}")
    return out


def build_table(out: Path) -> dict:
    """The result file's content: ``{"arms": {ARM: {METRIC: {"mean", "ci95", "n"}, "n_seeds", "label", "seeds",
    "paired_scrapl_minus_arm", "paired_recipe_minus_arm"}}, "default_recipe": ARM, "mean_rank": {...},
    "commit": ...}`` (issue 16's shape; the second paired block is against the chosen recipe, when it is not SCRAPL)."""
    from scraplab.metrics.stats import mean_ci95
    runs, folders = _collect(out)
    if not runs:
        raise RunPlanError(f"no finished runs under {out} (python experiments/tr808_real.py run)")
    commit, _ = one_commit(folders, out)
    table: dict = {}
    for arm, by_seed in runs.items():
        entry: dict = {"label": LABELS[arm], "seeds": sorted(by_seed), "n_seeds": len(by_seed)}
        for name, key in METRICS.items():
            vals = [v for v in (_value(by_seed[s], key) for s in sorted(by_seed)) if v is not None]
            if vals:
                mean, ci = mean_ci95(vals, f"{arm} {key}")
                entry[name] = {"mean": mean, "ci95": ci, "n": len(vals)}
        if "scrapl" in runs and arm != "scrapl":
            entry["paired_scrapl_minus_arm"] = _paired(runs["scrapl"], by_seed, arm)
        table[RESULT_ARM.get(arm, arm)] = entry
    best, ranks = default_recipe(table)
    source = {RESULT_ARM.get(a, a): a for a in runs}.get(best)
    if source not in (None, "scrapl"):  # the chosen recipe against every other arm, too
        for arm, by_seed in runs.items():
            if arm != source:
                table[RESULT_ARM.get(arm, arm)]["paired_recipe_minus_arm"] = _paired(runs[source], by_seed, arm)
    if best is not None:  # the bare command trains the chosen arm's config: its matches are that arm's runs
        label = f"default: `python train.py {' '.join(BARE)}` (= {table[best]['label']})"
        table["default"] = {**table[best], "label": label, "same_runs_as": best}
    return {"arms": table, "default_recipe": best, "mean_rank": ranks, "ranked_by": RANKED, "commit": commit}


def _paired_cell(test: Optional[dict]) -> str:
    if not test:
        return "–"
    p = test.get("p_value")
    return f"{test['delta_mean']:+.3g} (p = {p:.2g})" if p is not None else f"{test['delta_mean']:+.3g}"


PAIRED_COLS = ["jtfs_distance", "mss_loglin", "logmel_l1", "transient_err", "decay_err"]


def _paired_block(doc: dict, key: str, title: str) -> list[str]:
    """A Markdown table of the arms' paired tests under ``key`` (the default entry repeats its arm: left out)."""
    lines = ["", title, "", "| arm | " + " | ".join(PAIRED_COLS) + " |", "|---|" + "---|" * len(PAIRED_COLS)]
    for e in doc["arms"].values():
        pt = e.get(key) or {}
        if pt and not e.get("same_runs_as"):
            lines.append(f"| {e['label']} | " + " | ".join(_paired_cell(pt.get(c)) for c in PAIRED_COLS) + " |")
    return lines


def to_markdown(doc: dict) -> str:
    cols = ["jtfs_distance", "mss_loglin", "mss_linear", "logmel_l1", "transient_err", "decay_err",
            "theta_spread_ratio"]
    lines = ["# TR-808 on real one-shots (hydrogen-drumkits, unseen test kits)", "",
             f"Runs at commit `{doc['commit'][:10]}`; `{doc['provenance']['command']}`. Mean ± 95 % CI over seeds; "
             "lower is better except the θ spread (the collapse measure: 1 = as varied as θ uniform on [0, 1]). "
             "transient / decay: loudness L1 (LU) over frames 0–1 / 2–65.", "",
             "| arm | seeds | " + " | ".join(cols) + " | mean rank |",
             "|---|---|" + "---|" * (len(cols) + 1)]
    for arm, e in doc["arms"].items():
        cells = [(f"{e[c]['mean']:.4g} ± {e[c]['ci95']:.2g}" if c in e else "–") for c in cols]
        rank = doc.get("mean_rank", {}).get(arm)
        lines.append(f"| {e['label']} | {e['n_seeds']} | " + " | ".join(cells) + " | "
                     + (f"{rank:.2f}" if rank is not None else "–") + " |")
    lines += _paired_block(doc, "paired_scrapl_minus_arm",
                           "SCRAPL − arm, paired by seed (mean Δ, two-sided p; negative: SCRAPL lower):")
    rec = doc.get("default_recipe")
    if rec and any(e.get("paired_recipe_minus_arm") for e in doc["arms"].values()):
        lines += _paired_block(doc, "paired_recipe_minus_arm", f"{doc['arms'][rec]['label']} − arm, paired by seed:")
    if doc.get("default_recipe"):
        lines += ["", f"Default recipe (best mean rank over {', '.join(doc['ranked_by'])}; ties to the lower JTFS "
                      f"distance): **{doc['default_recipe']}**, what `python train.py {' '.join(BARE)}` trains "
                      "(experiment=cpu_tr808; its config equals that arm's, tests/test_tr808_real.py)."]
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["run", "table", "all"], help="all: run, then table")
    ap.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    add_plan_arguments(ap, ROOT / "outputs" / "tr808_real")
    args = ap.parse_args(argv)
    command = shlex.join(["python", "experiments/tr808_real.py", *argv])
    if args.what in ("run", "all"):
        if not (ROOT / "data" / "drums" / "filelist.csv").is_file():
            raise RunPlanError("data/drums is missing: run `make drums` first")
        prov = provenance(command, args.allow_dirty)
        plan = {f"{a}/seed{s}": plan_entry(a, s, args.out) for s in args.seeds for a in args.arms}
        execute(plan, prov, args.jobs, args.overwrite, (), args.out)
    if args.what in ("table", "all"):
        doc = build_table(args.out)
        runs_prov = args.out / "run_provenance.json"  # commit, command, versions and load of the runs
        doc["provenance"] = {**(json.loads(runs_prov.read_text()) if runs_prov.is_file() else {"command": command}),
                             "table_command": command}
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "tr808_real.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        (RESULTS / "tr808_real.md").write_text(to_markdown(doc))


if __name__ == "__main__":
    run_cli(main)
