"""CPU twin of the paper's granular Tables 1–2 (issue 12): the paper's recipe on a problem small enough that each
scattering path is drawn many times in a 2-core run (preset ``configs/experiment/twin_granular.yaml``).

    python experiments/twin_granular.py sweep          # the short P × lr sweep that chose the preset
    python experiments/twin_granular.py run            # every arm × seed of the table (resumable, see below)
    python experiments/twin_granular.py table          # experiments/results/twin_granular.{json,md,png}
    python experiments/twin_granular.py diagnose       # why 𝒫-Adam loses the slope: shared second moment arms
    python experiments/twin_granular.py pilot          # 𝒫-Adam's staleness: AdamW and 𝒫-Adam at a lower constant lr
    python experiments/twin_granular.py grains         # 64 grains per example: do the 𝒫-arms learn the slope?
    python experiments/twin_granular.py grains_const   # the same 𝒫-arms at a constant lr (the paper's schedule)
    python experiments/twin_granular.py scale          # 𝒫-SAGA at the paper's batch (32), and with its encoder
    python experiments/twin_granular.py grains32       # 32 grains: the twin whose path directions match the paper's
    python experiments/twin_granular.py batch32        # 32 grains at the paper's batch and visits per path
    python experiments/twin_granular.py finetune       # AdamW and 𝒫-SAGA continue from a 32-grain AdamW checkpoint
    bash experiments/run_twin_granular.sh              # run + table: the one command
    python experiments/twin_granular.py run --twin g32 --arms param mss_linear mss_random scrapl_adamw
    python experiments/twin_granular.py table --twin g32   # the same at 32 grains: experiments/results/twin_granular_g32.*

Runs go to ``outputs/twin_granular/<arm>/seed<k>`` (sweep: ``outputs/twin_sweep/<name>``), ``--jobs`` at a time with
one BLAS thread each. Each folder gets ``twin_run.json`` (commit, command, load, exit code) before training starts. A
rerun skips a folder only when that file names the same commit and command and the run ended ``ok``; a folder made
by other code or another command is an error (``--overwrite`` deletes it), so a table never mixes code versions.
The working tree must be clean (``--allow-dirty`` for trials: its results say so).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Optional

from runplan import RunPlanError, add_plan_arguments, execute, provenance, run_cli  # experiments/runplan.py, next to this file

sys.path.insert(0, str(Path(__file__).resolve().parent))  # runplan.py and twin_table.py (not a package)
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
PRESET = "experiment=twin_granular"

# The arm names -> the training overrides. AdamW on a path loss uses eps 1e-16: Adam's update is invariant
# to scaling the gradient by c when eps -> eps/c, so this is AdamW on gradients x 1e8 (the 𝒫-optimizers' grad_mult).
ARMS: dict[str, list[str]] = {
    "param": ["loss=param", "optim=adamw", "sampler=uniform"],
    "mss_linear": ["loss=mss", "optim=adamw", "sampler=uniform"],
    "mss_random": ["loss=mss_random", "optim=adamw", "sampler=uniform"],
    "jtfs": ["loss=jtfs", "optim=adamw", "optim.eps=1e-16", "sampler=uniform"],
    "scrapl_adamw": ["loss=scrapl", "optim=adamw", "optim.eps=1e-16", "sampler=uniform"],
    "scrapl_padam": ["loss=scrapl", "optim=p_adam", "sampler=uniform"],
    "scrapl_psaga": ["loss=scrapl", "optim=p_saga", "sampler=uniform"],
    "scrapl_thetais": ["loss=scrapl", "optim=p_saga", "sampler=theta_is"],
}
ABLATION = ["scrapl_adamw", "scrapl_padam", "scrapl_psaga", "scrapl_thetais"]
MSS_ARMS = ["mss_linear", "mss_random"]

# The arms' own budgets: the full JTFS costs ~1.2 s per step here (~10x a SCRAPL step), so it runs 600 steps (a cost-and-trend
# row, marked in the table); every other arm runs the preset's steps.
ARM_EXTRA: dict[str, list[str]] = {"jtfs": ["trainer.max_steps=600"]}

# The sweep that chose the preset (seed 0, 2000 steps; committed results made at commit 18dd983 with the preset of
# that commit, whose settings PINNED repeats): P (through the JTFS settings) and the learning rate, for SCRAPL with
# 𝒫-SAGA and θ-IS and for MSS Random. Names: <arm>_P<P>_lr<lr>.
PINNED = ["scheduler=null", "sampler.warmup.n_examples=32", "sampler.warmup.batch_size=32", "sampler.warmup.n_iter=20"]
SWEEP_BUDGET = ["trainer.val_check_interval=100", "trainer.max_steps=2000"]
SWEEP_JTFS = {49: "{J: 9, Q: [8, 1], J_fr: 2, Q_fr: 1}", 117: "{J: 8, Q: [8, 2], J_fr: 3, Q_fr: 1}"}
SWEEP: dict[str, list[str]] = {
    "scrapl_psaga_P49_lr1e-4": ARMS["scrapl_psaga"] + ["optim.lr=1e-4"],
    "scrapl_psaga_P49_lr3e-4": ARMS["scrapl_psaga"] + ["optim.lr=3e-4"],
    "scrapl_psaga_P49_lr1e-3": ARMS["scrapl_psaga"] + ["optim.lr=1e-3"],
    "scrapl_psaga_P117_lr3e-4": ARMS["scrapl_psaga"] + ["optim.lr=3e-4", f"synth.jtfs={SWEEP_JTFS[117]}"],
    "mss_random_lr1e-4": ARMS["mss_random"] + ["optim.lr=1e-4"],
    "mss_random_lr1e-3": ARMS["mss_random"] + ["optim.lr=1e-3"],
    "scrapl_thetais_P49_lr3e-4": ARMS["scrapl_thetais"] + ["optim.lr=3e-4"],
}
# The long run: how many steps SCRAPL needs to start learning the chirp slope (same pinned settings, 10 000 steps).
LONG: dict[str, list[str]] = {
    "scrapl_psaga_lr3e-4": ARMS["scrapl_psaga"] + ["optim.lr=3e-4", "trainer.max_steps=10000",
                                                   "trainer.val_check_interval=250"],
}

# Diagnosis of the ablation's first step (AdamW -> 𝒫-Adam costs the slope, twin_granular.md): is it 𝒫-Adam's per-path
# second moment, which gives every path a unit-size step whatever its gradient's size? Same settings as the table;
# `shared_v` keeps per-path first moments but one second moment for all paths (so step sizes follow gradient sizes,
# as under AdamW): the ablation ladder AdamW -> 𝒫-Adam -> 𝒫-SAGA -> θ-IS with that one change. The anchor reruns the table's scrapl_padam seed 0 for 200 steps on the table's lr schedule: its
# validation θ L1 at step 200 must equal the table's (same code path at this commit).
DIAGNOSE: dict[str, list[str]] = {
    "anchor_scrapl_padam": ARMS["scrapl_padam"] + ["trainer.max_steps=200", "scheduler.total_iters=6000"],
    "scrapl_padam_sharedv": ARMS["scrapl_padam"] + ["optim.shared_v=true"],
    "scrapl_psaga_sharedv": ARMS["scrapl_psaga"] + ["optim.shared_v=true"],
    "scrapl_thetais_sharedv": ARMS["scrapl_thetais"] + ["optim.shared_v=true"],
}
DIAGNOSE_SEEDS = {"anchor_scrapl_padam": [0]}

# Staleness pilot: 𝒫-Adam updates a path's moments only when it is drawn, ~P steps apart. At the table's lr (3e-4, 49
# paths) the encoder moves ~P·lr = 0.015 between two draws of one path, 5x the paper's granular run (315 · 1e-5); its
# momentum spans ~10 draws, ~500 steps. Does a constant lr of 1e-4 (P·lr = 0.005, total movement 0.6 > the paper's
# 0.19) let 𝒫-Adam beat AdamW? Seed 0, the preset's 6000 steps, the AdamW arm at the same lr for the comparison.
PILOT: dict[str, list[str]] = {
    "scrapl_adamw_lr1e-4": ARMS["scrapl_adamw"] + ["optim.lr=1e-4", "scheduler=null"],
    "scrapl_padam_lr1e-4": ARMS["scrapl_padam"] + ["optim.lr=1e-4", "scheduler=null"],
}

# Grain-count pilot: single-path directions (direction_agreement.py --synth-kw) step the slope toward the target
# 54.8 % of the time with the preset's 16 grains per 1 s example, 61.0 % with 32 and 63.5 % with 64 (the paper's
# grain count per example; its 4 s problem: 61.3 %), since more grains average out more of each render's randomness.
# Do the 𝒫-arms then learn the slope? Seed 0, the table's preset and schedule, 64 grains of 0.25 s.
GRAINS: dict[str, list[str]] = {
    name: ARMS[name] + ["synth.n_grains=64"] for name in ("scrapl_adamw", "scrapl_psaga", "scrapl_thetais", "mss_random")
}

# Then the paper's granular schedule, a constant lr (its run: 1e-5 for 19 k steps; the table decays 10x): with 16
# grains, 𝒫-SAGA's slope error fell only after ~4000 steps at a constant 3e-4 (twin_long.md), when the decayed lr is
# down to 40 %. The 𝒫-arms at 64 grains with the table's lr held constant.
GRAINS_CONST: dict[str, list[str]] = {
    f"{name}_const": ARMS[name] + ["synth.n_grains=64", "scheduler=null"] for name in ("scrapl_psaga", "scrapl_thetais")
}

# The paper's scale, one factor at a time (both 64 grains, 𝒫-SAGA, the table's lr schedule): 𝒫-Adam takes a unit-size
# step on each visit's gradient, so a visit that averages 4x more examples (the paper's batch 32) points more often
# the right way; 3000 steps at batch 32 draw each path 61 times, the paper's 19 200 / 315. And the paper's encoder
# (604 k weights against 39.5 k) at the table's batch 8 and 6000 steps.
SCALE: dict[str, list[str]] = {
    "scrapl_psaga_b32": ARMS["scrapl_psaga"] + ["synth.n_grains=64", "data.batch_size=32", "trainer.max_steps=3000",
                                                "trainer.val_check_interval=100"],
    "scrapl_psaga_enc604k": ARMS["scrapl_psaga"] + ["synth.n_grains=64", "encoder=paper_2p"],
}

# 32 grains per example: of every twin measured, its single-path directions have the paper's profile
# (direction_twin_granular_n32.json against direction_granular_sizes.json, 4 s and P = 315): weighting the paths by
# gradient size, as AdamW does, costs density (58.2 -> 54.6 %; paper 59.4 -> 55.2 %) and helps the slope (61.0 ->
# 69.1 %; paper 61.3 -> 70.2 %), where at 16 and 64 grains it helps both. The paper's ablation has that trade
# (AdamW -> 𝒫-Adam: density 153 -> 89 ‰, slope 46 -> 86 ‰). Does the twin's ladder then run the paper's way?
GRAINS32: dict[str, list[str]] = {name: ARMS[name] + ["synth.n_grains=32"] for name in (*ABLATION, "mss_random")}

# The paper's batch and visits per path on the 32-grain twin (its path profile is the paper's): batch 32 for 3000 steps
# draws each of the 49 paths 61 times with 32 examples a visit, the paper's 19 200 / 315 steps at batch 32. The
# 64-grain batch-32 run of SCALE was stopped at step 1700; this pair runs to the end, with AdamW beside 𝒫-SAGA so
# that the batch's effect on each optimizer is read in the same run.
BATCH32: dict[str, list[str]] = {
    f"{name}_b32": ARMS[name] + ["synth.n_grains=32", "data.batch_size=32", "trainer.max_steps=3000",
                                 "trainer.val_check_interval=100"]
    for name in ("scrapl_adamw", "scrapl_psaga")
}

# Finding the slope or keeping it? Both optimizers continue, at a constant lr 1e-4 for 2000 steps, from the 32-grain
# table's SCRAPL (AdamW) best checkpoint of the same seed, which has learned the slope (test slope 92–112 ‰, the
# untrained encoder ~234 ‰). If 𝒫-SAGA's per-path unit steps only fail to find the slope, its slope error stays low
# from there; if they push it away, it climbs back toward the untrained level. Needs the g32 table's AdamW runs in
# this checkout (python experiments/twin_granular.py run --twin g32 --arms scrapl_adamw).
FINETUNE_ARMS = ("scrapl_adamw", "scrapl_psaga")
# test_ckpt=last: the question is where each optimizer leaves the encoder, not its best validation on the way
FINETUNE = ["synth.n_grains=32", "scheduler=null", "optim.lr=1e-4", "trainer.max_steps=2000",
            "trainer.val_check_interval=100", "test_ckpt=last"]


def finetune_plan(seeds: list[int], out: Path) -> dict[str, tuple[Path, list[str]]]:
    start = "init_weights=outputs/twin_granular_g32/scrapl_adamw/seed{s}/checkpoints/best.ckpt"
    return {f"{a}_from_adamw/seed{s}": (out / f"{a}_from_adamw" / f"seed{s}",
                                        ARMS[a] + FINETUNE + [start.format(s=s), f"seed={s}", f"sampler.seed={s}"])
            for s in seeds for a in FINETUNE_ARMS}


# The twins a multi-seed table can run on: the preset as it is (16 grains; the committed table twin_granular.*), and
# the preset at 32 grains, whose start-θ path profile is the paper's (GRAINS32 above) and where SCRAPL with AdamW
# reached 0.51x MSS Random at seed 0 (twin_grains32.md). Each twin has its own run folders and result files.
TWINS: dict[str, dict] = {
    "g16": {"overrides": [], "name": "twin_granular"},
    "g32": {"overrides": ["synth.n_grains=32"], "name": "twin_granular_g32"},
}

# The plans of named single runs (seed 0 each), summarised by twin_table.write_sweep as twin_<what>.{json,md}
SINGLE_RUNS: dict[str, dict[str, list[str]]] = {"sweep": SWEEP, "long": LONG, "pilot": PILOT, "grains": GRAINS,
                                                "grains_const": GRAINS_CONST, "scale": SCALE, "grains32": GRAINS32,
                                                "batch32": BATCH32}


TwinError = RunPlanError  # the name the table script and older notes use


def table_plan(seeds: list[int], arms: list[str], out: Path,
               twin: str = "g16") -> dict[str, tuple[Path, list[str]]]:
    """Seed-major order (every arm of seed 0 first), the full JTFS last: a partial run gives whole seeds."""
    order = [(s, a) for s in seeds for a in arms if a != "jtfs"] + [(s, "jtfs") for s in seeds if "jtfs" in arms]
    extra = TWINS[twin]["overrides"]
    return {f"{a}/seed{s}": (out / a / f"seed{s}",
                             ARMS[a] + ARM_EXTRA.get(a, []) + extra + [f"seed={s}", f"sampler.seed={s}"])
            for s, a in order}


def main(argv: Optional[list[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["run", "table", "diagnose", "finetune", *SINGLE_RUNS])
    ap.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    ap.add_argument("--twin", choices=list(TWINS), default="g16",
                    help="run / table: which twin (g16: the preset; g32: the preset at 32 grains)")
    add_plan_arguments(ap, None, "run folders (default outputs/twin_granular, or outputs/twin_<what>)")
    args = ap.parse_args(argv)
    command = shlex.join(["python", "experiments/twin_granular.py", *argv])
    if args.what == "table":
        from twin_table import write_tables  # experiments/twin_table.py, next to this file
        name = TWINS[args.twin]["name"]
        write_tables(args.out or ROOT / "outputs" / name, RESULTS, command, name=name)
        return
    prov = provenance(command, args.allow_dirty)
    if args.what == "diagnose":
        out = args.out or ROOT / "outputs" / "twin_diagnose"
        plan = {f"{a}/seed{s}": (out / a / f"seed{s}", o + [f"seed={s}", f"sampler.seed={s}"])
                for s in args.seeds for a, o in DIAGNOSE.items() if s in DIAGNOSE_SEEDS.get(a, args.seeds)}
        summary = execute(plan, prov, args.jobs, args.overwrite, [PRESET], out, args.what)
        from twin_table import write_diagnosis
        write_diagnosis(out, RESULTS, summary)
        return
    if args.what == "finetune":
        out = args.out or ROOT / "outputs" / "twin_finetune"
        summary = execute(finetune_plan(args.seeds, out), prov, args.jobs, args.overwrite, [PRESET], out, args.what)
        from twin_table import write_finetune
        write_finetune(out, RESULTS, summary)
        return
    if args.what in SINGLE_RUNS:
        out = args.out or ROOT / "outputs" / f"twin_{args.what}"
        budget = SWEEP_BUDGET if args.what == "sweep" else []
        # the sweep and the long run repeat the settings of the commit that chose the preset; the pilots run the
        # table's preset with only their own changes
        pinned = PINNED if args.what in ("sweep", "long") else []
        plan = {n: (out / n, o + pinned + budget) for n, o in SINGLE_RUNS[args.what].items()}
    else:
        out = args.out or ROOT / "outputs" / TWINS[args.twin]["name"]
        plan = table_plan(args.seeds, args.arms, out, args.twin)
    summary = execute(plan, prov, args.jobs, args.overwrite, [PRESET], out, args.what)
    if args.what in SINGLE_RUNS:
        from twin_table import write_sweep
        write_sweep(out, RESULTS, summary, name=f"twin_{args.what}")


if __name__ == "__main__":
    run_cli(main)
