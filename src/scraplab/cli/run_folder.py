"""One run per folder: claim it for this process, refuse a folder holding another run's checkpoints, keep the CSV
rows of an earlier session when a run is resumed in place, and refuse a resume with another synth."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from scraplab.cli.build import ConfigError, to_container

LOCK = "run.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def claim(out_dir: Path) -> Path:
    """Create ``out_dir/run.lock`` (this pid) exclusively. A lock of a live process means another launch writes to
    the same folder (e.g. two launches in the same second); a dead process's lock is taken over."""
    lock = out_dir / LOCK
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and _alive(pid):
                raise ConfigError(f"run folder {out_dir} is in use by another process (pid {pid}); give this run "
                                  "its own folder with hydra.run.dir=DIR") from None
            lock.unlink(missing_ok=True)  # stale: its process has ended
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return lock
    raise ConfigError(f"could not claim run folder {out_dir} ({lock} keeps reappearing)")


def release(lock: Path | None) -> None:
    if lock is not None:
        lock.unlink(missing_ok=True)


def check_reuse(out_dir: Path, ckpt_path: str | None) -> bool:
    """Refuse a folder that holds checkpoints unless this run resumes from one of them; True when resuming in place."""
    ckpts = sorted((out_dir / "checkpoints").glob("*.ckpt")) if (out_dir / "checkpoints").is_dir() else []
    if not ckpts:
        return False
    if ckpt_path and Path(ckpt_path).expanduser().resolve().parent == (out_dir / "checkpoints").resolve():
        return True
    raise ConfigError(f"run folder {out_dir} already holds checkpoints of another run ({ckpts[0].name}, ...): "
                      f"resume it with ckpt_path={out_dir / 'checkpoints' / 'last.ckpt'} or use a new folder "
                      "(hydra.run.dir=DIR)")


def keep_csv_rows(cfg: DictConfig) -> list[Path]:
    """Lightning's CSVLogger deletes an existing metrics.csv in its folder; move each one aside first
    (``metrics.csv`` → ``metrics_session<k>.csv``) so that a resumed run keeps the earlier rows."""
    moved = []
    for lg in (cfg.get("logger") or {}).values():
        if lg is None or not str(lg.get("_target_", "")).endswith("CSVLogger"):
            continue
        if lg.get("version") is None:  # Lightning then picks a new version_<n> folder: nothing is deleted
            continue
        folder = Path(str(lg.save_dir)) / str(lg.get("name") or "lightning_logs") / str(lg.version)
        old = folder / "metrics.csv"
        if old.is_file():
            k = 1
            while (folder / f"metrics_session{k}.csv").exists():
                k += 1
            moved.append(old.rename(folder / f"metrics_session{k}.csv"))
    return moved


def check_same_synth(ckpt: dict[str, Any], cfg: DictConfig, ckpt_path: str) -> None:
    """Refuse resuming a checkpoint trained with another synth (or other synth settings)."""
    stored = (ckpt.get("scraplab_config") or {}).get("synth")
    if stored is None:
        return
    current = to_container(cfg.synth)
    if stored != current:
        keys = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
        diff = ", ".join(f"{k}: {stored.get(k)!r} → {current.get(k)!r}" for k in keys[:4])
        raise ConfigError(f"checkpoint {ckpt_path} was trained with another synth ({diff}); resume with the "
                          "checkpoint's synth settings")
