"""Synth render + backward time: batched vs per-example Python loops (issue 3).

    python experiments/benchmark_synths.py [--batch 32] [--reps 5] [--threads N] [--json PATH]

For each synth, one step = forward of a batch of θ (requires_grad) and backward of a random projection of the
audio. Columns:
  batched      the synth called once on the whole batch;
  loop         the same synth called once per example (B = 1), outputs concatenated;
  grain loop   (granular only) the authors' structure: per example and per grain, pad + ``torch.roll`` by
               ``onset.item()``, built from the same math and random draws (checked equal to the batched output).
Times are medians over ``--reps`` interleaved rounds after one warm-up round, in milliseconds.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from scraplab.synths import dsp, rng
from scraplab.synths.chirplet import ChirpletSynth
from scraplab.synths.granular import STREAM_F0, STREAM_ONSET, GranularSynth
from scraplab.synths.tr808 import TR808Synth


def granular_grain_loop(s: GranularSynth, theta: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """Reference with the authors' loop structure (ref §1.1 'Cost'); (B, 2) -> (B, 1, N)."""
    phys = s.to_physical(theta)
    m, n = s.grain_n_samples, s.n_samples
    t = (torch.arange(m, dtype=theta.dtype) - m // 2) / s.sample_rate
    window = dsp.periodic_hann(m, dtype=theta.dtype)
    out = []
    for b in range(theta.shape[0]):
        sd = seed[b : b + 1]
        f0 = (s.f0_min_hz * (s.f0_max_hz / s.f0_min_hz) ** rng.uniform(sd, STREAM_F0, s.n_grains)[0]).to(theta.dtype)
        onset = rng.randint(sd, STREAM_ONSET, s.n_grains, 0, n - m)[0]
        amp = s.grain_amplitudes(phys["density"][b : b + 1])[0]
        curve = dsp.exp_chirp_cycles(1.0, phys["slope"][b], t)
        y = torch.zeros(n, dtype=theta.dtype)
        for g in range(s.n_grains):
            grain = torch.sin(2 * math.pi * f0[g] * curve) * window * amp[g] / torch.sqrt(f0[g])
            y = y + torch.roll(F.pad(grain, (0, n - m)), int(onset[g].item()))
        out.append(y / y.norm())
    return torch.stack(out)[:, None]


def per_example_loop(s, theta, seed):
    return torch.cat([s(theta[i : i + 1], seed[i : i + 1]) for i in range(theta.shape[0])])


def time_steps(fns: dict, theta0: torch.Tensor, seed: torch.Tensor, reps: int) -> dict:
    """Median ms of forward + backward per variant; variants run interleaved so background load hits all alike."""
    times = {k: [] for k in fns}
    for r in range(reps + 1):
        for k, fn in fns.items():
            theta = theta0.clone().requires_grad_()
            t0 = time.perf_counter()
            y = fn(theta, seed)
            (y * torch.randn_like(y)).sum().backward()
            if r:  # first round is warm-up
                times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--json", type=str, default=None, help="write the results here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    synths = {"granular": GranularSynth(), "chirplet": ChirpletSynth(), "tr808": TR808Synth(max_shift=2048)}
    rows = []
    for name, s in synths.items():
        seed = torch.arange(args.batch, dtype=torch.int64)
        theta = s.random_theta(seed)
        fns = {"batched": s, "loop": lambda th, sd, s=s: per_example_loop(s, th, sd)}
        if name == "granular":
            with torch.no_grad():
                err = (granular_grain_loop(s, theta, seed) - s(theta, seed)).abs().max().item()
            assert err < 1e-5, f"grain-loop reference disagrees with the batched synth by {err}"
            fns["grain_loop"] = lambda th, sd, s=s: granular_grain_loop(s, th, sd)
        t = time_steps(fns, theta, seed, args.reps)
        row = dict(synth=name, batch=args.batch, n_samples=s.n_samples, batched_ms=t["batched"], loop_ms=t["loop"],
                   speedup_vs_loop=t["loop"] / t["batched"])
        if "grain_loop" in t:
            row.update(grain_loop_ms=t["grain_loop"], speedup_vs_grain_loop=t["grain_loop"] / t["batched"])
        rows.append(row)
    env = dict(torch=torch.__version__, threads=torch.get_num_threads(), cpu=platform.processor() or platform.machine(),
               device="cpu")
    print(f"render + backward, batch {args.batch}, CPU, {env['threads']} threads, torch {env['torch']} "
          f"(median of {args.reps} runs, ms)")
    print(f"| synth | N | batched | per-example loop | speedup | per-grain loop (authors' structure) | speedup |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        grain = (f"{r['grain_loop_ms']:.0f} | {r['speedup_vs_grain_loop']:.1f}×" if "grain_loop_ms" in r else "– | –")
        print(f"| {r['synth']} | {r['n_samples']} | {r['batched_ms']:.1f} | {r['loop_ms']:.1f} | "
              f"{r['speedup_vs_loop']:.1f}× | {grain} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(env=env, args=vars(args), results=rows), f, indent=2)


if __name__ == "__main__":
    main()
