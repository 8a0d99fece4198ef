"""experiments/runplan.py: a run folder is reused only by the same commit and command; others are refused."""
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import runplan  # noqa: E402

PROV = {"commit": "c0ffee", "dirty": False}


@pytest.fixture()
def fake_train(monkeypatch):
    calls = []

    def run(argv, cwd=None, env=None, stdout=None, stderr=None, **kw):
        calls.append(argv)
        folder = Path(argv[-1].split("=", 1)[1])
        (folder / "metrics.json").write_text("{}")
        assert env["OMP_NUM_THREADS"] == "1" and env["SCRAPLAB_DATA_DIR"] == str(folder / "data")
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(runplan.subprocess, "run", run)
    return calls


def _command(folder, overrides):
    return shlex.join(["python", "train.py", "experiment=x", *overrides, f"hydra.run.dir={folder}"])


def test_same_commit_and_command_is_skipped_others_refused(tmp_path, fake_train):
    folder = tmp_path / "arm" / "seed0"
    rec = runplan.run_one("arm/seed0", folder, ["seed=0"], PROV, False, ["experiment=x"])
    assert rec["rc"] == 0 and len(fake_train) == 1
    marker = json.loads((folder / "twin_run.json").read_text())
    assert marker["commit"] == "c0ffee" and marker["command"] == _command(folder, ["seed=0"])
    again = runplan.run_one("arm/seed0", folder, ["seed=0"], PROV, False, ["experiment=x"])
    assert again["skipped"] and len(fake_train) == 1  # nothing re-trained
    with pytest.raises(runplan.RunPlanError, match="made by commit c0ffee"):
        runplan.run_one("arm/seed0", folder, ["seed=0"], {**PROV, "commit": "beef"}, False, ["experiment=x"])
    with pytest.raises(runplan.RunPlanError, match="another command"):
        runplan.run_one("arm/seed0", folder, ["seed=1"], PROV, False, ["experiment=x"])
    runplan.run_one("arm/seed0", folder, ["seed=1"], PROV, True, ["experiment=x"])  # --overwrite
    assert len(fake_train) == 2


def test_interrupted_run_of_the_same_command_runs_again_and_foreign_folders_are_refused(tmp_path, fake_train):
    folder = tmp_path / "a"
    folder.mkdir()
    (folder / "twin_run.json").write_text(json.dumps({"commit": "c0ffee", "command": _command(folder, [])}))
    runplan.run_one("a", folder, [], PROV, False, ["experiment=x"])  # no rc: it was interrupted
    assert len(fake_train) == 1
    other = tmp_path / "b"
    other.mkdir()
    (other / "notes.txt").write_text("a user's folder")
    with pytest.raises(runplan.RunPlanError, match="no twin_run.json"):
        runplan.run_one("b", other, [], PROV, False, ["experiment=x"])
    assert (other / "notes.txt").exists()


def test_execute_writes_the_plan_provenance(tmp_path, fake_train):
    plan = {f"a/seed{s}": (tmp_path / "a" / f"seed{s}", [f"seed={s}"]) for s in (0, 1)}
    summary = runplan.execute(plan, PROV, 1, False, ["experiment=x"], tmp_path, "run")
    written = json.loads((tmp_path / "run_provenance.json").read_text())
    assert written["commit"] == "c0ffee" and written["what"] == "run" and len(written["runs"]) == 2
    assert [r["name"] for r in summary["runs"]] == ["a/seed0", "a/seed1"] and len(written["load_before"]) == 3
    assert runplan.one_commit([tmp_path / "a" / "seed0", tmp_path / "a" / "seed1"], tmp_path)[0] == "c0ffee"


def test_a_follow_up_command_is_part_of_the_run(tmp_path, monkeypatch):
    """``then`` (e.g. eval.py on real sounds) runs after a successful training, inside the run's command and rc."""
    calls, rcs = [], {"train.py": 0, "eval.py": 5}

    def run(argv, cwd=None, env=None, stdout=None, stderr=None, **kw):
        calls.append(argv)
        if argv[1] == "train.py":
            (Path(argv[-1].split("=", 1)[1]) / "metrics.json").write_text("{}")
        return subprocess.CompletedProcess(argv, rcs[argv[1]])

    monkeypatch.setattr(runplan.subprocess, "run", run)
    folder = tmp_path / "default" / "seed0"
    then = ["eval.py", "ckpt={folder}/checkpoints/best.ckpt", "hydra.run.dir={folder}/real_test"]
    rec = runplan.run_one("default/seed0", folder, ["synth=tr808"], PROV, False, (), then)
    assert rec["rc"] == 5 and [c[1] for c in calls] == ["train.py", "eval.py"]  # the eval's failure fails the run
    assert calls[1][2] == f"ckpt={folder}/checkpoints/best.ckpt" and calls[1][3].endswith("seed0/real_test")
    assert rec["command"].endswith(f"&& python eval.py ckpt={folder}/checkpoints/best.ckpt "
                                   f"hydra.run.dir={folder}/real_test")
    rcs["train.py"] = 1
    runplan.run_one("default/seed0", folder, ["synth=tr808"], PROV, True, (), then)  # a failed run: --overwrite
    assert [c[1] for c in calls[2:]] == ["train.py"]  # a failed training is not evaluated
