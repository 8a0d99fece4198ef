"""Real drum one-shots anyone can get: the kits of the Debian package ``hydrogen-drumkits`` (issue 16).

    make drums     # apt-get download hydrogen-drumkits, extract, then:
    python -m scraplab.data.drums --kits DIR/usr/share/hydrogen/data/drumkits --out data/drums --licence COPYRIGHT

Every sample of every kit becomes one prepared one-shot, as the paper prepares its 808 data (§4.4): mono (channel
mean), 44.1 kHz (band-limited resampling), onset-aligned (cut just before the first sample whose magnitude reaches
``ONSET_FRACTION`` of the file's peak) and padded/cropped to 1 s. Levels are kept. The split is by kit and fixed
(:data:`KIT_SPLITS`), so the test kits are never seen in training: ``data/drums/{train,val,test}/<kit>/<file>.wav``,
which ``data=wav_folder`` reads as a fixed split. ``data/drums/filelist.csv`` lists every file with its source and
onset, and the package's copyright file is copied next to it (the kits are GPL-2, CC0, CC-BY and CC-BY-SA).
The samples themselves are never committed.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import re
import shutil
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import soundfile as sf
import torch

from scraplab.data.synthetic import SPLITS
from scraplab.data.wav_folder import fit_length, resample

SAMPLE_RATE = 44100
N_SAMPLES = 44100  # 1 s, the TR-808 synth's length
ONSET_FRACTION = 0.1  # of the file's peak magnitude
PRE_ROLL = 32  # samples kept before the onset (0.7 ms), so the attack is not cut
SILENCE = 1e-4  # a file whose peak is below this is skipped as silent
EXTENSIONS = (".wav", ".flac", ".aif", ".aiff")

# The 14 kits of hydrogen-drumkits 2017.09.19: 10 train, 2 val, 2 test; each held-out pair is one acoustic and one
# electronic kit, so that the test set covers both.
KIT_SPLITS = {
    "Audiophob": "val", "BJA_Pacific": "train", "ColomboAcousticDrumkit": "test", "ElectricEmpireKit": "test",
    "ForzeeStereo": "train", "Gimme A Hand 1.0": "train", "HardElectro1": "train", "Millo-Drums_v.1": "val",
    "Millo_MultiLayered2": "train", "Millo_MultiLayered3": "train", "The Black Pearl 1.0": "train",
    "VariBreaks": "train", "circAfrique v4": "train", "rumpf_kit_z01_h2": "train",
}


class DrumPrepError(RuntimeError):
    pass


def onset_index(x: np.ndarray, fraction: float = ONSET_FRACTION) -> int:
    """First index whose magnitude reaches ``fraction`` of the peak of the mono signal ``x`` (N,)."""
    mag = np.abs(x)
    return int(np.argmax(mag >= fraction * mag.max()))


def prepare_one(path: Path, sample_rate: int = SAMPLE_RATE, n_samples: int = N_SAMPLES) -> tuple[np.ndarray, int]:
    """One file → (mono float32 (n_samples,) at ``sample_rate``, onset in the source's samples). Raises
    :class:`DrumPrepError` naming the file when it cannot be read or is silent."""
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises several types
        raise DrumPrepError(f"cannot read {path}: {err}") from err
    mono = data.mean(axis=1)
    if mono.size == 0 or not np.isfinite(mono).all() or np.abs(mono).max() < SILENCE:
        raise DrumPrepError(f"{path}: empty, silent or non-finite")
    start = max(onset_index(mono) - int(round(PRE_ROLL * sr / sample_rate)), 0)
    x = torch.from_numpy(np.ascontiguousarray(mono[start:]))
    x = fit_length(resample(x, int(sr), int(sample_rate)), n_samples)
    return x.numpy().astype(np.float32), start


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")


def prepare(kits_dir: Path, out: Path, licence: Optional[Path] = None, sample_rate: int = SAMPLE_RATE,
            n_samples: int = N_SAMPLES) -> list[dict]:
    """Prepare every kit under ``kits_dir`` into ``out`` (see the module docstring). Returns the file-list rows.

    Unknown kits are an error (the split must stay fixed); unreadable or silent files are skipped and listed."""
    kits_dir, out = Path(kits_dir), Path(out)
    kits = sorted(p for p in kits_dir.iterdir() if p.is_dir()) if kits_dir.is_dir() else []
    if not kits:
        raise DrumPrepError(f"no kit folders under {kits_dir} (expected .../usr/share/hydrogen/data/drumkits)")
    unknown = [k.name for k in kits if k.name not in KIT_SPLITS]
    if unknown:
        raise DrumPrepError(f"kits not in the fixed split (scraplab.data.drums.KIT_SPLITS): {unknown}")
    if out.exists():
        for split in SPLITS:
            shutil.rmtree(out / split, ignore_errors=True)  # a rerun replaces the prepared files, nothing else
    rows, skipped = [], []
    for kit in kits:
        split = KIT_SPLITS[kit.name]
        files = sorted(p for p in kit.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS)
        for src in files:
            try:
                x, onset = prepare_one(src, sample_rate, n_samples)
            except DrumPrepError as err:
                skipped.append(str(err))
                continue
            rel = src.relative_to(kit)
            dst = out / split / _slug(kit.name) / (_slug(str(rel.with_suffix("")).replace("/", "__")) + ".wav")
            dst.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(dst), x, sample_rate, subtype="FLOAT")
            rows.append({"split": split, "kit": kit.name, "file": str(dst.relative_to(out)), "source": str(rel),
                         "source_sha1": hashlib.sha1(src.read_bytes()).hexdigest(), "onset": onset,
                         "peak": float(np.abs(x).max())})
    if not rows:
        raise DrumPrepError(f"no usable one-shots under {kits_dir}; skipped: {skipped}")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "filelist.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    if licence is not None:
        shutil.copyfile(licence, out / "LICENSE.hydrogen-drumkits")
    if skipped:
        print(f"skipped {len(skipped)} file(s):\n  " + "\n  ".join(skipped), file=sys.stderr)
    return rows


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description="Prepare the hydrogen-drumkits one-shots (fixed split by kit).")
    ap.add_argument("--kits", type=Path, required=True, help="the package's .../hydrogen/data/drumkits folder")
    ap.add_argument("--out", type=Path, default=Path("data/drums"))
    ap.add_argument("--licence", type=Path, default=None, help="the package's copyright file, copied beside")
    args = ap.parse_args(argv)
    try:
        rows = prepare(args.kits, args.out, args.licence)
    except DrumPrepError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    counts = {s: sum(r["split"] == s for r in rows) for s in SPLITS}
    print(f"prepared {len(rows)} one-shots into {args.out}: {counts}")


if __name__ == "__main__":
    main()
