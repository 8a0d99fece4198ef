"""``python match.py ckpt=RUN/checkpoints/best.ckpt input=DIR_OR_WAV out=DIR``: sound matching for a musician.

For each input file (any rate, mono or stereo; resampled, down-mixed, padded/cropped as in training) the encoder
predicts θ; the synth re-renders it. Written to ``out``: ``<stem>_match.wav`` (the synth's rendition),
``<stem>_target.wav`` (the input as the model heard it, for A/B listening), ``params.json`` and ``params.csv`` (θ in
[0, 1] and in physical units with their unit names).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import hydra
import soundfile as sf
import torch
from omegaconf import DictConfig

from scraplab.cli.checkpoint import load_encoder
from scraplab.data.wav_folder import list_audio, load_audio
from scraplab.paths import config_dir


def _peak_safe(x: torch.Tensor) -> torch.Tensor:
    peak = float(x.abs().max())
    return x / peak if peak > 1.0 else x


def match(ckpt: str, input: str, out: str, render_seed: int = 0, batch_size: int = 8,
          device: str = "cpu") -> list[dict[str, Any]]:
    """Match every audio file under ``input``; returns the per-file records written to ``params.json``."""
    synth, encoder, _ = load_encoder(ckpt, device)
    files = list_audio(input)
    audio = [load_audio(f, synth.sample_rate, synth.n_samples) for f in files]  # fails naming a bad file
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    units = {p.name: p.unit for p in getattr(synth, "params", ())}
    records: list[dict[str, Any]] = []
    for start in range(0, len(files), batch_size):
        x = torch.stack(audio[start:start + batch_size]).to(device)  # (b, 1, N)
        with torch.no_grad():
            theta = encoder(x)
            seed = torch.full((x.shape[0],), int(render_seed), dtype=torch.int64, device=device)
            x_hat = synth(theta, seed)
            phys = synth.to_physical(theta)
        for i, f in enumerate(files[start:start + batch_size]):
            stem = f.stem
            sf.write(str(out_dir / f"{stem}_match.wav"), _peak_safe(x_hat[i, 0]).cpu().numpy(), synth.sample_rate)
            sf.write(str(out_dir / f"{stem}_target.wav"), _peak_safe(x[i, 0]).cpu().numpy(), synth.sample_rate)
            records.append({
                "file": str(f), "match_wav": f"{stem}_match.wav", "render_seed": int(render_seed),
                "theta": {n: float(theta[i, j]) for j, n in enumerate(synth.param_names)},
                "physical": {n: float(phys[n][i]) for n in synth.param_names},
                "units": {n: units.get(n, "") for n in synth.param_names},
            })
    (out_dir / "params.json").write_text(json.dumps({"checkpoint": str(ckpt), "synth": type(synth).__name__,
                                                     "sample_rate": synth.sample_rate, "matches": records},
                                                    indent=2))
    with open(out_dir / "params.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        names = synth.param_names
        writer.writerow(["file"] + [f"{n} ({units.get(n) or 'unit'})" for n in names] + [f"{n} [0-1]" for n in names])
        for r in records:
            writer.writerow([r["file"]] + [f"{r['physical'][n]:.6g}" for n in names]
                            + [f"{r['theta'][n]:.6f}" for n in names])
    return records


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="match")
def main(cfg: DictConfig) -> None:
    records = match(cfg.ckpt, cfg.input, cfg.out, int(cfg.render_seed), int(cfg.batch_size), cfg.device)
    print(f"matched {len(records)} file(s); results in {Path(cfg.out).resolve()}")
