"""Synth render + backward time: batched vs per-example Python loops (issue 3).

    python experiments/benchmark_synths.py [--batch 32] [--reps 5] [--threads 1 2] [--json PATH] [--md PATH]
        [--compare-with DIR]   # e.g. DIR = synths/ of an earlier commit: `git archive <rev> synths | tar -x -C /tmp/x`

For each synth, one step = forward of a batch of θ (requires_grad) and backward of a fixed random projection of the
audio. Variants (all render the same audio, checked before timing):
  batched   (a) the synth called once on the whole batch;
  loop      (b) the same synth called once per example (B = 1), outputs concatenated;
  authors   (c) the authors' loop structure (reference_experiments.md §1): per example in Python;
            granular: per grain, pad + ``torch.roll`` by ``onset.item()``; chirplet: per example, chirp then
            ``roll`` by ``delta.item()`` and zeroing of the wrapped part; tr808: per-example oscillators/envelopes,
            the noise high-pass as a sequential biquad recursion over the 44100 samples (direct form II transposed,
            batched over examples like torchaudio's ``lfilter(batching=True)``, in a Python loop over samples),
            then the per-item shift with ``.item()`` (pad + crop).
Times are medians over ``--reps`` interleaved rounds after one warm-up round (wall clock, ms); the tr808 authors'
variant is slow (a 44100-step Python loop with autograd) and runs ``--reps-slow`` rounds.

``--compare-with DIR`` also times the batched call of the synths package in DIR (loaded as a separate package)
interleaved with the current one, wall clock and process CPU time: a paired before/after under the same load.

Overhead bound: batching on a CPU removes per-call overhead (Python, dispatch, small-tensor ops, host syncs) and
lets intra-op threads share bigger tensors; it does not remove per-sample compute. With c = (a)/B the per-example
compute inside the batched call and o the fixed cost of one B = 1 call (measured as a B = 1 step of the same synth
with tiny sizes), a B = 1 loop costs about B·(o + c'), so (b)/(a) ≲ (o + c')/c, reported as ``bound``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import sys
import statistics
import time

import torch
import torch.nn.functional as F

from scraplab.synths import dsp, rng
from scraplab.synths.chirplet import ChirpletSynth
from scraplab.synths.granular import STREAM_F0, STREAM_ONSET, GranularSynth
from scraplab.synths.tr808 import TR808Synth


# -- (c) the authors' loop structures ----------------------------------------------------------------------------
def granular_authors(s: GranularSynth, theta: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """Per example, per grain: pad + roll by onset.item() (ref §1.1 'Cost'); (B, 2) -> (B, 1, N)."""
    phys = s.to_physical(theta)
    m, n = s.grain_n_samples, s.n_samples
    dev = theta.device
    t = (torch.arange(m, dtype=theta.dtype, device=dev) - m // 2) / s.sample_rate
    window = dsp.periodic_hann(m, dtype=theta.dtype, device=dev)
    out = []
    for b in range(theta.shape[0]):
        sd = seed[b : b + 1]
        f0 = (s.f0_min_hz * (s.f0_max_hz / s.f0_min_hz) ** rng.uniform(sd, STREAM_F0, s.n_grains)[0]).to(theta.dtype)
        onset = rng.randint(sd, STREAM_ONSET, s.n_grains, 0, n - m)[0]
        amp = s.grain_amplitudes(phys["density"][b : b + 1])[0]
        curve = dsp.exp_chirp_cycles(1.0, phys["slope"][b], t)
        y = torch.zeros(n, dtype=theta.dtype, device=dev)
        for g in range(s.n_grains):
            grain = torch.sin(2 * math.pi * f0[g] * curve) * window * amp[g] / torch.sqrt(f0[g])
            y = y + torch.roll(F.pad(grain, (0, n - m)), int(onset[g].item()))
        out.append(y / y.norm())
    return torch.stack(out)[:, None]


def chirplet_authors(s: ChirpletSynth, theta: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """Per example: chirp, then roll by delta.item() and zero the wrapped part (ref §1.2)."""
    phys = s.to_physical(theta)
    n = s.n_samples
    n_rel = torch.arange(n, dtype=theta.dtype, device=theta.device) - n // 2
    t = n_rel / s.sample_rate
    out = []
    for b in range(theta.shape[0]):
        am, fm = phys["am_rate"][b], phys["fm_rate"][b]
        phase = s.f0_hz * torch.expm1(fm * math.log(2.0) * t) / (fm * math.log(2.0))
        sigma = s.sigma0 * s.bw_oct * s.sample_rate / fm
        y = torch.sin(2 * math.pi * phase) * fm * torch.exp(-0.5 * (n_rel / sigma) ** 2) * torch.sin(math.pi * am * t)
        d = int(s.shifts(seed[b : b + 1]).item())
        y = torch.roll(y, d)
        if d > 0:
            y = torch.cat([torch.zeros(d, dtype=y.dtype, device=y.device), y[d:]])
        elif d < 0:
            y = torch.cat([y[:d], torch.zeros(-d, dtype=y.dtype, device=y.device)])
        out.append(y)
    return torch.stack(out)[:, None]


def biquad_sequential(x: torch.Tensor, b: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """lfilter-style recursion, direct form II transposed, zero initial state; x (B, N), b, a (B, 3)."""
    b0, b1, b2 = b.unbind(-1)
    a1, a2 = a[:, 1], a[:, 2]
    z1 = z2 = torch.zeros_like(x[:, 0])
    ys = []
    for xn in x.unbind(-1):
        yn = b0 * xn + z1
        z1 = b1 * xn - a1 * yn + z2
        z2 = b2 * xn - a2 * yn
        ys.append(yn)
    return torch.stack(ys, dim=-1)


def tr808_authors(s: TR808Synth, theta: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """Per-example voices, sequential IIR high-pass over the batch, per-item shift with .item() (ref §1.4)."""
    p = s.to_physical(theta)
    sr = s.sample_rate
    mixes, noises = [], []
    for i in range(theta.shape[0]):
        q = {k: v[i : i + 1] for k, v in p.items()}
        pitch_sum = dsp.exp_decay_envelope_cumsum(q["freq_decay"] * 1e-3 * sr, s.n_samples, s.attack)
        osc1 = s._oscillator(q["osc1_freq"], q["osc1_mod"], pitch_sum) * s._envelope(q["osc1_decay"])
        osc2 = s._oscillator(q["osc2_freq"], q["osc2_mod"], pitch_sum) * s._envelope(q["osc2_decay"])
        mixes.append(dsp.db_to_amp(q["osc1_gain"])[:, None] * osc1 + dsp.db_to_amp(q["osc2_gain"])[:, None] * osc2)
        noises.append(s.noise(seed[i : i + 1], theta.dtype) * s._envelope(q["noise_decay"]))
    b, a = dsp.biquad_highpass_coeffs(p["noise_freq"], p["noise_q"], sr, s.cutoff_knee, s.cutoff_ceiling)
    noise = biquad_sequential(torch.cat(noises), b, a)
    y = torch.tanh(dsp.db_to_amp(p["tanh_gain"])[:, None]
                   * (torch.cat(mixes) + dsp.db_to_amp(p["noise_gain"])[:, None] * noise))
    shifts = s.shifts(seed)
    out = []
    for i in range(theta.shape[0]):
        d = int(shifts[i].item())
        out.append(F.pad(y[i], (d, 0))[: s.n_samples] if d >= 0 else F.pad(y[i, -d:], (0, -d)))
    return torch.stack(out)[:, None]


def per_example_loop(s, theta, seed):
    return torch.cat([s(theta[i : i + 1], seed[i : i + 1]) for i in range(theta.shape[0])])


# -- timing --------------------------------------------------------------------------------------------------------
def _sync(t: torch.Tensor) -> None:
    if t.device.type == "cuda":  # kernels are asynchronous: time to their end, not to their launch
        torch.cuda.synchronize(t.device)


def _step(fn, theta0, seed, w):
    theta = theta0.clone().requires_grad_()
    _sync(theta)
    t0 = time.perf_counter()
    y = fn(theta, seed)
    (y * w).sum().backward()
    _sync(theta)
    return (time.perf_counter() - t0) * 1e3


def time_steps(fns: dict, theta0: torch.Tensor, seed: torch.Tensor, w: torch.Tensor, reps: int,
               slow: dict) -> dict:
    """Median ms per variant; variants run interleaved so background load hits all alike; ``slow`` caps reps."""
    times = {k: [] for k in fns}
    for r in range(reps + 1):
        for k, fn in fns.items():
            if r > slow.get(k, reps):
                continue
            ms = _step(fn, theta0, seed, w)
            if r:  # first round is warm-up
                times[k].append(ms)
    return {k: statistics.median(v) for k, v in times.items()}


def call_overhead_ms(make, device: str = "cpu", reps: int = 30) -> float:
    """Median ms of a B = 1 step of the synth with tiny sizes: the fixed per-call cost."""
    s = make()
    seed = torch.zeros(1, dtype=torch.int64, device=device)
    theta = s.random_theta(seed)
    w = torch.ones(1, 1, s.n_samples, device=device)
    ts = [_step(s, theta, seed, w) for _ in range(reps + 3)][3:]
    return statistics.median(ts)


SYNTHS = {
    "granular": (GranularSynth, lambda: GranularSynth(n_samples=256, grain_n_samples=64), granular_authors),
    "chirplet": (ChirpletSynth, lambda: ChirpletSynth(n_samples=256, max_shift=64), chirplet_authors),
    "tr808": (lambda: TR808Synth(max_shift=2048, pre_delay=2048),
              lambda: TR808Synth(n_samples=256, max_shift=64, pre_delay=64), tr808_authors),
}


def run(threads: int, batch: int, reps: int, reps_slow: int, names, device: str = "cpu") -> list[dict]:
    torch.set_num_threads(threads)
    rows = []
    for name in names:
        make, make_tiny, authors = SYNTHS[name]
        s = make()
        seed = torch.arange(batch, dtype=torch.int64, device=device)
        theta = s.random_theta(seed)
        w = rng.uniform(seed, 77, s.n_samples)[:, None].float() - 0.5  # fixed projection for the backward
        fns = {"batched": s, "loop": lambda th, sd, s=s: per_example_loop(s, th, sd),
               "authors": lambda th, sd, s=s, f=authors: f(s, th, sd)}
        with torch.no_grad():
            ref = s(theta, seed)
            agree = {k: ((fns[k](theta, seed) - ref).abs().max() / ref.abs().max()).item() for k in ("loop", "authors")}
        tol = 1e-3  # relative, float32: chirp phases of ~1e4 rad round differently per formulation
        assert all(v < tol for v in agree.values()), f"{name}: variants disagree with the batched synth: {agree}"
        t = time_steps(fns, theta, seed, w, reps, slow={"authors": reps_slow} if name == "tr808" else {})
        over = call_overhead_ms(make_tiny, device)
        c = t["batched"] / batch
        rows.append(dict(synth=name, device=device, threads=threads, batch=batch, n_samples=s.n_samples,
                         batched_ms=t["batched"], loop_ms=t["loop"], authors_ms=t["authors"],
                         speedup_vs_loop=t["loop"] / t["batched"], speedup_vs_authors=t["authors"] / t["batched"],
                         per_example_batched_ms=c, b1_call_ms=t["loop"] / batch, call_overhead_ms=over,
                         bound_vs_loop=(over + c) / c, max_rel_diff_vs_batched=agree))
        print(f"[{threads} thr] {name}: batched {t['batched']:.1f} ms, loop {t['loop']:.1f}, "
              f"authors {t['authors']:.1f}; overhead {over:.2f} ms/call", flush=True)
    return rows


def load_synths_package(path: str):
    """Import the synths package at ``path`` under the name ``synths_before`` (relative imports only)."""
    spec = importlib.util.spec_from_file_location("synths_before", os.path.join(path, "__init__.py"),
                                                  submodule_search_locations=[path])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["synths_before"] = mod
    spec.loader.exec_module(mod)
    return mod


def compare(before_dir: str, threads: int, batch: int, reps: int, names) -> list[dict]:
    """Paired before/after medians (wall and CPU ms) of the batched render + backward."""
    torch.set_num_threads(threads)
    old = load_synths_package(before_dir)
    makes = {"granular": lambda m: m.GranularSynth(), "chirplet": lambda m: m.ChirpletSynth(),
             "tr808": lambda m: m.TR808Synth(max_shift=2048, pre_delay=2048)}
    from scraplab import synths as new
    rows = []
    for name in names:
        pair = {"before": makes[name](old), "after": makes[name](new)}
        seed = torch.arange(batch, dtype=torch.int64)
        theta = pair["after"].random_theta(seed)
        w = rng.uniform(seed, 77, pair["after"].n_samples)[:, None].float() - 0.5
        with torch.no_grad():
            same = bool(torch.equal(pair["before"](theta, seed), pair["after"](theta, seed)))
        t = {k: ([], []) for k in pair}
        for r in range(reps + 1):
            for k, s in pair.items():
                c0 = time.process_time()
                ms = _step(s, theta, seed, w)
                if r:
                    t[k][0].append(ms)
                    t[k][1].append((time.process_time() - c0) * 1e3)
        med = {k: (statistics.median(v[0]), statistics.median(v[1])) for k, v in t.items()}
        rows.append(dict(synth=name, threads=threads, before_wall_ms=med["before"][0], after_wall_ms=med["after"][0],
                         before_cpu_ms=med["before"][1], after_cpu_ms=med["after"][1],
                         speedup_wall=med["before"][0] / med["after"][0], same_audio_bitwise=same))
        print(f"[{threads} thr] {name}: before {med['before'][0]:.1f} ms, after {med['after'][0]:.1f} ms "
              f"(bit-identical audio: {same})", flush=True)
    return rows


def markdown(rows: list[dict], env: dict, cmd: str, cmp_rows=(), cmp_dir=None) -> str:
    lines = [f"# Synth benchmark: render + backward, batch {rows[0]['batch']}, {env['device']}", "",
             "Command (from the repository root):", "", f"    {cmd}", "",
             f"Machine: {env['cpu']}, {env['cores']} CPU cores; device {env['device']}; torch {env['torch']}; "
             f"load average before {env['load_before']}, after {env['load_after']} (`os.getloadavg`). "
             "Wall-clock medians over interleaved rounds (ms per forward + backward of the whole batch).",
             "", "(a) batched call; (b) the same synth called per example with B = 1; (c) the authors' loop structure "
             "(granular: per grain roll + `.item()`; chirplet: per-example roll + `.item()`; tr808: per-example "
             "voices, sequential biquad over 44100 samples, per-item `.item()` shift). All variants render the same "
             "audio (checked: max |diff| / max |audio| < 1e-3 in float32, which rounds the ~1e4-rad chirp "
             "phases differently per formulation; the relative differences are in the JSON).", ""]
    for th in sorted({r["threads"] for r in rows}):
        lines += [f"**{th} thread{'s' if th > 1 else ''}**", "",
                  "| synth | N | (a) batched | (b) B=1 loop | (a) vs (b) | (c) authors' loop | (a) vs (c) | "
                  "per-example compute (a)/B | B=1 call overhead | bound on (a) vs (b) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in (r for r in rows if r["threads"] == th):
            lines.append(f"| {r['synth']} | {r['n_samples']} | {r['batched_ms']:.1f} | {r['loop_ms']:.1f} | "
                         f"{r['speedup_vs_loop']:.2f}× | {r['authors_ms']:.0f} | {r['speedup_vs_authors']:.1f}× | "
                         f"{r['per_example_batched_ms']:.2f} | {r['call_overhead_ms']:.2f} | "
                         f"{r['bound_vs_loop']:.2f}× |")
        lines.append("")
    if cmp_rows:
        lines += [f"**Before / after** (batched call only, `--compare-with {cmp_dir}`, paired and interleaved)", "",
                  "| synth | threads | before wall | after wall | speed-up | before CPU | after CPU | same audio (bitwise) |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in cmp_rows:
            lines.append(f"| {r['synth']} | {r['threads']} | {r['before_wall_ms']:.1f} | {r['after_wall_ms']:.1f} | "
                         f"{r['speedup_wall']:.2f}× | {r['before_cpu_ms']:.1f} | {r['after_cpu_ms']:.1f} | "
                         f"{r['same_audio_bitwise']} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--reps-slow", type=int, default=2, help="rounds for the tr808 authors' variant")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--synths", nargs="+", default=list(SYNTHS), choices=list(SYNTHS))
    ap.add_argument("--json", type=str, default=None, help="write the results here")
    ap.add_argument("--md", type=str, default=None, help="write a markdown table here")
    ap.add_argument("--device", type=str, default="cpu", help="cpu or cuda (CUDA steps are timed to a synchronize)")
    ap.add_argument("--compare-with", type=str, default=None, help="synths/ directory of an earlier version")
    args = ap.parse_args()
    load_before = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = []
    for th in args.threads:
        rows += run(th, args.batch, args.reps, args.reps_slow, args.synths, args.device)
    cmp_rows = []
    if args.compare_with:
        for th in args.threads:
            cmp_rows += compare(args.compare_with, th, args.batch, args.reps, args.synths)
    env = dict(torch=torch.__version__, cpu=platform.processor() or platform.machine(), cores=os.cpu_count(),
               device=torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu", load_before=load_before, load_after=", ".join(f"{x:.2f}" for x in os.getloadavg()))
    cmd = "python experiments/benchmark_synths.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in vars(args).items() if v is not None)
    md = markdown(rows, env, cmd, cmp_rows, args.compare_with)
    print(md)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(env=env, args=vars(args), command=cmd, results=rows, before_after=cmp_rows), f, indent=2)
    if args.md:
        with open(args.md, "w") as f:
            f.write(md + "\n")


if __name__ == "__main__":
    main()
