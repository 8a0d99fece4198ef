"""``python match.py ...``: sound matching for a musician, by a trained encoder or by optimisation.

* ``mode=encoder`` (default): ``python match.py ckpt=RUN/checkpoints/best.ckpt input=DIR_OR_WAV out=DIR`` — the
  checkpoint's encoder predicts θ for every input file.
* ``mode=optimize``: ``python match.py mode=optimize synth=granular loss=scrapl input=DIR out=DIR optimize.steps=300``
  — θ found by gradient descent through the synth (``scraplab.matching.optimize_theta``) with any configured loss:
  SCRAPL with its sampler and 𝒫-Adam / 𝒫-SAGA (``optimize.optimizer``), the full JTFS, an MSS variant, ...; started
  from ``ckpt=``'s prediction (its synth then) or from ``optimize.restarts`` random points, keeping the best.

Input files (any rate, mono or stereo) are resampled, down-mixed and padded/cropped as in training. Written to ``out``:
``<name>_match.wav`` (the synth's rendition), ``<name>_target.wav`` (the input as the model heard it), ``params.json``
and ``params.csv`` (θ in [0, 1] and in physical units); ``mode=optimize`` adds each file's final loss to both and
``loss_curves.csv`` / ``.png`` (the loss of every step, best restart). Both write ``report.html``: per file, players
for target and match, their log-CQT images side by side, θ in physical units and the MSS distances (plus the final
loss), with its media in ``report_media/`` (no network). Names are the file stems, or the path relative to the input
folder joined by ``__`` where two stems collide.
"""
from __future__ import annotations

import csv
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

import hydra
import soundfile as sf
import torch
from omegaconf import DictConfig

from scraplab.cli.checkpoint import load_encoder
from scraplab.data.wav_folder import WavLoadError, list_audio, load_audio
from scraplab.locations import config_dir

OPTIMIZERS = ("adam", "p_adam", "p_saga")


def _peak_safe(x: torch.Tensor) -> torch.Tensor:
    peak = float(x.abs().max())
    return x / peak if peak > 1.0 else x


def output_names(files: Sequence[Path], root: Path) -> list[str]:
    """A distinct output name per input: the stem, or (when stems collide) the path under ``root`` with '__'."""
    stems = [f.stem for f in files]
    out = []
    for f, stem in zip(files, stems):
        if stems.count(stem) == 1:
            out.append(stem)
        else:
            rel = f.relative_to(root) if root.is_dir() and f.is_relative_to(root) else Path(f.name)
            out.append("__".join(rel.with_suffix("").parts) + "_" + f.suffix.lstrip(".").lower())
    return out


def write_matches(out_dir: Path, files: Sequence[Path], root: Path, x: torch.Tensor, x_hat: torch.Tensor,
                  theta: torch.Tensor, synth, header: dict, render_seed: int,
                  extra: Sequence[dict] | None = None) -> list[dict[str, Any]]:
    """WAVs, ``params.json``, ``params.csv`` and ``report.html`` for matched files; x, x_hat (M, 1, N), theta (M, U)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    units = {p.name: p.unit for p in getattr(synth, "params", ())}
    names = synth.param_names
    phys = synth.to_physical(theta)
    records = []
    for i, (f, name) in enumerate(zip(files, output_names(files, root))):
        sf.write(str(out_dir / f"{name}_match.wav"), _peak_safe(x_hat[i, 0]).cpu().numpy(), synth.sample_rate)
        sf.write(str(out_dir / f"{name}_target.wav"), _peak_safe(x[i, 0]).cpu().numpy(), synth.sample_rate)
        records.append({"file": str(f), "match_wav": f"{name}_match.wav", "target_wav": f"{name}_target.wav",
                        "render_seed": int(render_seed),
                        "theta": {n: float(theta[i, j]) for j, n in enumerate(names)},
                        "physical": {n: float(phys[n][i]) for n in names},
                        "units": {n: units.get(n, "") for n in names}, **(extra[i] if extra else {})})
    (out_dir / "params.json").write_text(json.dumps({**header, "synth": type(synth).__name__,
                                                     "sample_rate": synth.sample_rate, "matches": records}, indent=2))
    has_loss = bool(records) and "final_loss" in records[0]
    with open(out_dir / "params.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file"] + [f"{n} ({units.get(n) or 'unit'})" for n in names] + [f"{n} [0-1]" for n in names]
                        + (["final_loss"] if has_loss else []))
        for r in records:
            writer.writerow([r["file"]] + [f"{r['physical'][n]:.6g}" for n in names]
                            + [f"{r['theta'][n]:.6f}" for n in names] + ([f"{r['final_loss']:.6g}"] if has_loss else []))
    write_listening_report(out_dir, records, x, x_hat, synth)
    return records


def write_listening_report(out_dir: Path, records: Sequence[dict], x: torch.Tensor, x_hat: torch.Tensor, synth):
    """``report.html``: players, log-CQT images, θ and distances (MSS per file; the final loss when optimised)."""
    from scraplab.metrics.audio import MSSDistances
    from scraplab.report import write_report

    with torch.no_grad():
        mss = {k: v.cpu() for k, v in MSSDistances().to(x.device)(x_hat, x).items()}
    rows = [{"name": r["match_wav"][:-len("_match.wav")], "target": x[i, 0], "match": x_hat[i, 0],
             "theta": r["theta"], "physical": r["physical"], "units": r["units"],
             "distances": {**({"final_loss": r["final_loss"]} if "final_loss" in r else {}),
                           **{k: float(v[i]) for k, v in mss.items()}}} for i, r in enumerate(records)]
    return write_report(out_dir, rows, synth=synth, title=f"scraplab matches ({type(synth).__name__})")


ON_BAD_FILE = ("error", "skip")


def check_out_folder(input: str, out: str) -> None:
    """Refuse an output folder that is the input folder or inside it: the outputs would overwrite the user's own
    ``*_target.wav`` / ``*_match.wav`` files, and a rerun would match the previous run's outputs."""
    src, dst = Path(input).expanduser().resolve(), Path(out).expanduser().resolve()
    if src.is_dir() and (dst == src or src in dst.parents):
        raise ValueError(f"out={out} is inside the input folder {src}: choose a folder outside it")
    if src.is_file() and dst == src.parent:  # one input file: its own folder would hold the outputs beside it
        raise ValueError(f"out={out} is the input file's folder: choose another folder")


def _load_inputs(input: str, synth, on_bad_file: str = "error") -> tuple[list[Path], Path, torch.Tensor]:
    """Every readable input at the synth's rate and length; bad files raise one error naming all of them, or with
    ``on_bad_file='skip'`` are left out with a warning that lists them."""
    if on_bad_file not in ON_BAD_FILE:
        raise ValueError(f"on_bad_file must be one of {ON_BAD_FILE}, got {on_bad_file!r}")
    files, audio, bad = [], [], []
    for f in list_audio(input):
        try:
            audio.append(load_audio(f, synth.sample_rate, synth.n_samples))
            files.append(f)
        except WavLoadError as err:
            bad.append(str(err))
    if bad and (on_bad_file == "error" or not files):
        raise WavLoadError(f"{len(bad)} unreadable input file(s)" + ("" if files else " and nothing else to match")
                           + ":\n  " + "\n  ".join(bad) + "\n(on_bad_file=skip matches the others)")
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable input file(s):\n  " + "\n  ".join(bad), stacklevel=2)
    return files, Path(input).expanduser(), torch.stack(audio)


def match(ckpt: str, input: str, out: str, render_seed: int = 0, batch_size: int = 8,
          device: str = "cpu", on_bad_file: str = "error") -> list[dict[str, Any]]:
    """Encoder mode: match every audio file under ``input``; returns the records written to ``params.json``."""
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    check_out_folder(input, out)
    synth, encoder, _ = load_encoder(ckpt, device)
    files, root, x = _load_inputs(input, synth, on_bad_file)
    thetas, x_hats = [], []
    with torch.no_grad():
        for start in range(0, len(files), batch_size):
            xb = x[start:start + batch_size].to(device)
            theta = encoder(xb)
            thetas.append(theta)
            x_hats.append(synth(theta, torch.full((xb.shape[0],), int(render_seed), dtype=torch.int64,
                                                  device=device)))
        return write_matches(Path(out), files, root, x, torch.cat(x_hats), torch.cat(thetas), synth,
                             {"mode": "encoder", "checkpoint": str(ckpt)}, render_seed)


def _optimizer_factory(name: str, settings: DictConfig, n_paths):
    from scraplab.optim import factories
    if name not in OPTIMIZERS:
        raise ValueError(f"optimize.optimizer must be one of {OPTIMIZERS}, got {name!r}")
    if name == "adam":
        return None
    if n_paths is None:
        raise ValueError(f"optimize.optimizer={name} is path-aware and needs a path loss (loss=scrapl); use adam")
    make = factories.p_adam if name == "p_adam" else factories.p_saga
    return lambda params, n_paths=None: make(params, n_paths=n_paths, lr=float(settings.lr), weight_decay=0.0,
                                             eps=float(settings.eps))


def match_optimize(cfg: DictConfig) -> list[dict[str, Any]]:
    """Optimise mode (see the module docstring); returns the records written to ``params.json``."""
    from scraplab.cli.build import build_loss, build_sampler, build_synth
    from scraplab.matching import optimize_theta
    from scraplab.matching.warmup import direct_theta_is
    from scraplab.training.module import path_count

    o, dev = cfg.optimize, cfg.device
    encoder = None
    if cfg.get("ckpt"):
        synth, encoder, run_cfg = load_encoder(cfg.ckpt, dev)
        if cfg.get("synth") is not None and cfg.synth.get("_target_") != run_cfg.synth.get("_target_"):
            raise ValueError(f"synth={cfg.synth._target_} differs from the checkpoint's {run_cfg.synth._target_}; "
                             "drop synth= to use the checkpoint's synth")
    elif cfg.get("synth") is not None:
        synth = build_synth(cfg).to(dev)
    else:
        raise ValueError("mode=optimize needs a synth: synth=NAME (granular, chirplet, tr808, ...) or ckpt=...")
    if int(cfg.batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {cfg.batch_size}")
    check_out_folder(cfg.input, cfg.out)
    loss = build_loss(cfg.loss, synth).to(dev)
    n_paths = path_count(loss)
    sampler = build_sampler(cfg.get("sampler"), loss)
    files, root, x = _load_inputs(cfg.input, synth, str(cfg.get("on_bad_file", "error")))
    x = x.to(dev)
    init = None
    if encoder is not None:
        with torch.no_grad():
            init = torch.cat([encoder(x[s:s + int(cfg.batch_size)]) for s in range(0, len(files), int(cfg.batch_size))])
    if sampler is not None and sampler.needs_warmup:  # θ-IS: π at the first inputs' starting θ (paper §3.4)
        n_ex = min(len(files), int(cfg.sampler.get("warmup", {}).get("n_examples", 4)))
        start = init[:n_ex] if init is not None else torch.full((n_ex, synth.n_params), 0.5)
        probs, _, _ = direct_theta_is(synth, loss, x[:n_ex], start.to(x.dtype),
                                      n_iter=int(cfg.sampler.get("warmup", {}).get("n_iter", 20)),
                                      progress=bool(o.progress))
        sampler.set_probs(probs, source="direct θ-IS warm-up on the inputs")
    opt = _optimizer_factory(str(o.optimizer), o, n_paths)
    results = []
    for s in range(0, len(files), int(cfg.batch_size)):
        sl = slice(s, s + int(cfg.batch_size))
        results.append(optimize_theta(
            synth, loss, x[sl], steps=int(o.steps), restarts=int(o.restarts),
            init=None if init is None else init[sl], optimizer=opt, lr=float(o.lr), lr_decay=float(o.lr_decay),
            sampler=sampler, meso=bool(o.meso), render_seed=int(cfg.render_seed), seed=int(o.seed),
            target_ids=range(s, s + x[sl].shape[0]), chunk_size=o.get("chunk_size"), patience=o.get("patience"),
            min_delta=float(o.min_delta), select_paths=int(o.select_paths), progress=bool(o.progress)))
    theta = torch.cat([r.theta for r in results]).to(device=dev, dtype=x.dtype)
    with torch.no_grad():
        x_hat = synth(theta, torch.full((len(files),), int(cfg.render_seed), dtype=torch.int64, device=dev))
    curves = [r.curve[:, t, int(r.best_restart[t])] for r in results for t in range(r.theta.shape[0])]
    extra = [{"final_loss": float(fl), "best_restart": int(br), "steps": r.steps}
             for r in results for fl, br in zip(r.final_loss, r.best_restart)]
    header = {"mode": "optimize", "checkpoint": str(cfg.ckpt) if cfg.get("ckpt") else None,
              "loss": type(loss).__name__, "optimizer": str(o.optimizer), "steps": int(o.steps),
              "restarts": int(o.restarts), "meso": bool(o.meso), "cpu_s": sum(r.cpu_s for r in results)}
    out = Path(cfg.out)
    records = write_matches(out, files, root, x, x_hat, theta, synth, header, int(cfg.render_seed), extra)
    write_curves(out, [r["match_wav"][:-len("_match.wav")] for r in records], curves)
    return records


def write_curves(out_dir: Path, names: Sequence[str], curves: Sequence[torch.Tensor]) -> None:
    """``loss_curves.csv`` (step × file) and ``loss_curves.png``; runs that stopped early leave blanks."""
    n = max(len(c) for c in curves)
    with open(out_dir / "loss_curves.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["step", *names])
        for k in range(n):
            writer.writerow([k, *[f"{float(c[k]):.6g}" if k < len(c) else "" for c in curves]])
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, c in zip(names, curves):
        ax.plot(c.numpy(), lw=1, label=name if len(names) <= 10 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (as optimised)")
    ax.set_yscale("log")
    if len(names) <= 10:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "loss_curves.png", dpi=100)
    plt.close(fig)


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="match")
def main(cfg: DictConfig) -> None:
    from scraplab.cli.status import classify, is_known

    if cfg.mode not in ("encoder", "optimize"):
        raise SystemExit(f"match.py: mode must be 'encoder' or 'optimize', got {cfg.mode!r}")
    if cfg.mode == "encoder" and not cfg.get("ckpt"):
        raise SystemExit("match.py: mode=encoder needs ckpt=RUN/checkpoints/best.ckpt "
                         "(or mode=optimize synth=NAME to match without a trained encoder)")
    try:
        if cfg.mode == "optimize":
            records = match_optimize(cfg)
        else:
            records = match(cfg.ckpt, cfg.input, cfg.out, int(cfg.render_seed), int(cfg.batch_size), cfg.device,
                            str(cfg.get("on_bad_file", "error")))
    except Exception as err:  # bad settings, paths, audio or checkpoint: one line and the app's exit code
        if not (is_known(err) or isinstance(err, (ValueError, FileNotFoundError))):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(classify(err)[1] if is_known(err) else 2)
    print(f"matched {len(records)} file(s); results in {Path(cfg.out).resolve()}")
