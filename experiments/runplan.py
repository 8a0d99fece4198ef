"""Run plans for the experiment scripts: train.py runs with provenance, resumable, never mixing code versions.

Each run folder gets ``twin_run.json`` (commit, command, load, exit code) before training starts. A rerun skips a
folder only when that file names the same commit and command and the run ended ``ok``; an interrupted run of the same
commit and command is run again; a folder made by other code or another command is an error (``overwrite`` deletes
it). The working tree must be clean unless ``allow_dirty`` (results then say so). Runs get one BLAS thread each and
keep their θ-IS π inside their folder (``SCRAPLAB_DATA_DIR``).
"""
from __future__ import annotations

import concurrent.futures as cf
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]


class RunPlanError(RuntimeError):
    pass


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def versions() -> dict:
    out = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    for pkg in ("torch", "numpy", "scipy", "lightning", "hydra-core", "omegaconf", "scraplab"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def provenance(command: str, allow_dirty: bool) -> dict:
    dirty = git("status", "--porcelain", "--untracked-files=no")
    if dirty and not allow_dirty:
        raise RunPlanError("the working tree has uncommitted changes; commit them first (results must name the code "
                        "that made them) or pass --allow-dirty for a trial\n" + dirty)
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(dirty), "command": command, "versions": versions()}


def measurement_provenance(script: str, argv: Sequence[str]) -> dict:
    """Provenance of a one-off measurement (benchmark, probe): commit (a dirty tree is recorded, not refused),
    the command, package versions and the load average before it."""
    return {**provenance(shlex.join(["python", script, *argv]), allow_dirty=True), "load_before": os.getloadavg()}


def finish_measurement(doc: dict, prov: dict, json_file=None) -> dict:
    """``doc`` with the load average after it and its provenance, written to ``json_file`` when given."""
    doc = {**doc, "load_after": os.getloadavg(),
           "provenance": {k: prov[k] for k in ("commit", "dirty", "command", "versions", "load_before")}}
    if json_file:
        Path(json_file).parent.mkdir(parents=True, exist_ok=True)
        Path(json_file).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    return doc


def run_one(name: str, folder: Path, overrides: list[str], prov: dict, overwrite: bool,
            leading: Sequence[str] = (), then: Sequence[str] = ()) -> dict:
    """Train one run into ``folder`` (or skip it when this commit and command already finished it there).
    ``leading``: overrides placed first (the experiment preset). ``then``: a second command (a script and its
    arguments, ``{folder}`` replaced by the run folder) run after a successful training, e.g. ``eval.py`` on other
    data; it is part of the run's command, and the run is ``ok`` only when both succeed."""
    argv = [sys.executable, "train.py", *leading, *overrides, f"hydra.run.dir={folder}"]
    then_argv = [sys.executable, *(a.replace("{folder}", str(folder)) for a in then)] if then else []
    command = shlex.join(["python", *argv[1:]]) + (" && " + shlex.join(["python", *then_argv[1:]]) if then else "")
    marker = folder / "twin_run.json"
    if folder.exists():
        old = json.loads(marker.read_text()) if marker.is_file() else None
        same = old is not None and old.get("commit") == prov["commit"] and old.get("command") == command
        if same and old.get("rc") == 0 and (folder / "metrics.json").is_file():
            return {**old, "skipped": True}
        if same and old.get("rc") is None:
            print(f"{folder}: unfinished run of this commit and command (interrupted): running it again", flush=True)
        elif not overwrite:
            why = ("it has no twin_run.json" if old is None else
                   f"it was made by commit {old.get('commit', '?')[:10]}" if old.get("commit") != prov["commit"] else
                   "it was made by another command" if old.get("command") != command else "that run did not finish")
            raise RunPlanError(f"{folder} exists and {why}; pass --overwrite to delete it and run again")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    record = {"name": name, "commit": prov["commit"], "dirty": prov["dirty"], "command": command,
              "load_before": os.getloadavg(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    marker.write_text(json.dumps(record, indent=2) + "\n")
    # θ-IS π is stored inside the run folder: a rerun never picks up a π computed by other code
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "SCRAPLAB_DATA_DIR": str(folder / "data")}
    t0 = time.time()
    with open(folder / "stdout.log", "w") as log:
        rc = subprocess.run(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
        if rc == 0 and then_argv:
            log.flush()
            rc = subprocess.run(then_argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    record.update(rc=rc, wall_s=round(time.time() - t0, 1), load_after=os.getloadavg())
    marker.write_text(json.dumps(record, indent=2) + "\n")
    print(f"{time.strftime('%H:%M:%S')} {name}: rc {rc}, {record['wall_s']:.0f} s", flush=True)
    return record


def run_cli(main) -> None:
    """A run-plan script's entry point: ``main()``, with a :class:`RunPlanError` reported in one line, exit 1."""
    try:
        main()
    except RunPlanError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


def add_plan_arguments(ap, out_default, out_help: str = "run folders") -> None:
    """The options every run-plan script shares: --seeds, --jobs, --out, --overwrite, --allow-dirty."""
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=2, help="runs at once (1 BLAS thread each)")
    ap.add_argument("--out", type=Path, default=out_default, help=out_help)
    ap.add_argument("--overwrite", action="store_true", help="delete run folders made by other code or commands")
    ap.add_argument("--allow-dirty", action="store_true", help="run from a dirty tree (trials: results say so)")


def run_all(plan: dict[str, tuple], prov: dict, jobs: int, overwrite: bool,
            leading: Sequence[str] = ()) -> list[dict]:
    """Run every ``name: (folder, overrides)`` or ``name: (folder, overrides, then)`` of ``plan`` (see
    :func:`run_one`), ``jobs`` at a time, in the plan's order."""
    with cf.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(run_one, n, entry[0], entry[1], prov, overwrite, leading, *entry[2:]): n
                   for n, entry in plan.items()}
        records = [fut.result() for fut in cf.as_completed(futures)]
    failed = [r["name"] for r in records if r.get("rc") != 0]
    if failed:
        raise RunPlanError(f"runs failed: {failed} (see their stdout.log)")
    return records


def execute(plan: dict[str, tuple], prov: dict, jobs: int, overwrite: bool, leading: Sequence[str],
            out: Path, name: str = "run") -> dict:
    """Run ``plan`` (see :func:`run_all`) and write ``out/<name>_provenance.json``: the provenance, the plan's wall
    time, the machine load before and after, and every run's record. Returns that summary."""
    t0, load0 = time.time(), os.getloadavg()
    records = run_all(plan, prov, jobs, overwrite, leading)
    summary = {**prov, "what": name, "wall_s": round(time.time() - t0, 1), "load_before": load0,
               "load_after": os.getloadavg(), "jobs": jobs, "runs": sorted(records, key=lambda r: r["name"])}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}_provenance.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def one_commit(folders: Sequence[Path], where: Path) -> tuple[str, list[dict]]:
    """The one commit that made every run in ``folders`` (their ``twin_run.json``) and those records; runs of
    several commits or of a dirty tree are an error (a table never mixes code versions)."""
    records = [json.loads((Path(f) / "twin_run.json").read_text()) for f in folders]
    commits = sorted({r["commit"] for r in records})
    if len(commits) != 1 or any(r.get("dirty") for r in records):
        raise RunPlanError(f"runs under {where} come from several commits or a dirty tree: {commits}; "
                           "rerun them from one clean commit")
    return commits[0], records
