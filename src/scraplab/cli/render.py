"""Render random examples of a synth to WAV files for listening.

    scraplab render synth=tr808 n=8 out=renders/tr808 [seed=0] [normalize=true] [synth.KEY=VALUE ...]

Composes ``configs/synth/NAME.yaml`` (any file there is a valid NAME), draws θ uniformly on [0, 1]^U from per-file
seeds ``seed + i`` (the same seed also drives the synth's own randomness), and writes ``NAME_0000.wav`` … plus
``params.json`` with, per file, the seed, θ and the physical values. ``synth.KEY=VALUE`` overrides a synth setting.
By default each file is peak-normalised to −1 dBFS for listening (16-bit PCM) and the gain applied is recorded;
``normalize=false`` writes the raw synth output as 32-bit float.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import soundfile as sf
import torch

from scraplab.locations import config_dir

USAGE = "usage: scraplab render synth=NAME n=N out=DIR [seed=S] [normalize=true|false] [synth.KEY=VALUE ...]"


def help_text() -> str:
    return (f"{USAGE}\n\nRender n random examples of a synth to WAV files (+ params.json) for listening.\n"
            "  synth=NAME        a config in configs/synth: " + ", ".join(available_synths()) + "\n"
            "  n=N               number of files\n  out=DIR           output folder\n"
            "  seed=S            first per-file seed (default 0)\n"
            "  normalize=BOOL    peak-normalise to -1 dBFS, 16-bit (default true); false: raw float32\n"
            "  synth.KEY=VALUE   override a synth setting (Hydra override syntax)")
PEAK = 10 ** (-1 / 20)  # −1 dBFS


def available_synths() -> list[str]:
    """Names of the synth configs (``configs/synth/*.yaml`` stems)."""
    return sorted(p.stem for p in (config_dir() / "synth").glob("*.yaml"))


def load_synth(name: str, overrides: list[str] | None = None):
    """Instantiate ``configs/synth/NAME.yaml`` with Hydra's compose API; ValueError for an unknown name."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException, InstantiationException, OverrideParseException
    from hydra.utils import instantiate

    names = available_synths()
    if name not in names:
        raise ValueError(f"unknown synth {name!r}; available: {', '.join(names)}")
    try:
        with initialize_config_dir(config_dir=str(config_dir() / "synth"), version_base=None):
            cfg = compose(config_name=name, overrides=list(overrides or []))
        return instantiate(cfg), cfg
    except (ConfigCompositionException, OverrideParseException, InstantiationException) as err:
        raise ValueError(f"cannot build synth {name!r} with overrides {overrides or []}: {err}") from None


def parse_args(argv: list[str]) -> dict:
    """``key=value`` tokens -> settings dict; ValueError naming the bad token."""
    opts: dict = {"seed": 0, "normalize": True, "overrides": []}
    for tok in argv:
        key, sep, val = tok.partition("=")
        if not sep or not val:
            raise ValueError(f"expected key=value, got {tok!r}\n{USAGE}")
        if key.startswith("synth."):
            opts["overrides"].append(f"{key[len('synth.'):]}={val}")
        elif key in ("n", "seed"):
            try:
                opts[key] = int(val)
            except ValueError:
                raise ValueError(f"{key} must be an integer, got {val!r}") from None
        elif key == "normalize":
            if val.lower() not in ("true", "false"):
                raise ValueError(f"normalize must be true or false, got {val!r}")
            opts[key] = val.lower() == "true"
        elif key in ("synth", "out"):
            opts[key] = val
        else:
            raise ValueError(f"unknown argument {key!r}\n{USAGE}")
    for key in ("synth", "n", "out"):
        if key not in opts:
            raise ValueError(f"missing {key}=...\n{USAGE}")
    if opts["n"] < 1:
        raise ValueError(f"n must be >= 1, got {opts['n']}")
    return opts


def render(synth_name: str, n: int, out: str | Path, seed: int = 0, normalize: bool = True,
           overrides: list[str] | None = None) -> Path:
    """Render n examples; returns the path of ``params.json``."""
    synth, cfg = load_synth(synth_name, overrides)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = torch.arange(seed, seed + n, dtype=torch.int64)
    theta = synth.random_theta(seeds, dtype=torch.float64)
    with torch.no_grad():
        audio = synth(theta.float(), seeds)[:, 0].double()
        phys = synth.to_physical(theta)
    files = []
    for i in range(n):
        x = audio[i]
        peak = float(x.abs().max())
        gain = PEAK / peak if normalize and peak > 0 else 1.0
        fname = f"{synth_name}_{i:04d}.wav"
        sf.write(out / fname, (x * gain).numpy(), synth.sample_rate, subtype="PCM_16" if normalize else "FLOAT")
        files.append(dict(file=fname, seed=int(seeds[i]),
                          theta={k: float(theta[i, j]) for j, k in enumerate(synth.param_names)},
                          physical={k: float(v[i]) for k, v in phys.items()}, peak=peak, gain=gain))
    from omegaconf import OmegaConf

    meta = dict(synth=synth_name, config=OmegaConf.to_container(cfg), sample_rate=synth.sample_rate,
                n_samples=synth.n_samples, param_names=synth.param_names, params=synth.param_table(),
                normalized=normalize, files=files)
    path = out / "params.json"
    path.write_text(json.dumps(meta, indent=2))
    return path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(help_text())
        return 0
    try:
        opts = parse_args(argv)
        path = render(opts["synth"], opts["n"], opts["out"], opts["seed"], opts["normalize"], opts["overrides"])
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {opts['n']} files and {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
