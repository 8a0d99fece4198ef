"""Memory and step time of the 𝒫-Adam/𝒫-SAGA state options for the paper's encoder sizes.

Parameter tensors mimic the paper's encoders (5 conv blocks, 128 channels, 3×3; Tables 10/12) with a dense head sized
so the totals match: granular ≈ 604 K weights (P = 315), TR-808 ≈ 724.6 K (P = 483). Only sizes matter here: the
optimizer cost does not depend on the values. Accuracy (θ-error) of each option is to be measured with the training
app. Usage:  python experiments/benchmark_optim.py [--steps 20] [--tasks 808 granular] [--json PATH]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time

import torch

from scraplab.optim import PathAdamSaga

TASKS = {  # name: (P, total weights, dense-head input width)
    "granular": (315, 604_000, 64),
    "808": (483, 724_600, 128),
}


def encoder_shapes(total: int, emb: int) -> list[tuple[int, ...]]:
    """Conv stack of the paper's encoder plus a dense layer absorbing the remainder, summing to ``total``."""
    shapes = [(128, 1, 3, 3), (128,)] + [(128, 128, 3, 3), (128,)] * 4 + [(1,)] * 5  # convs + PReLU slopes
    rest = total - sum(torch.Size(s).numel() for s in shapes)
    shapes += [(emb, rest // emb)] if rest >= emb else []
    rest = total - sum(torch.Size(s).numel() for s in shapes)
    return shapes + ([(rest,)] if rest > 0 else [])


OPTIONS = {  # name: (optimizer kwargs, per_path only on the dense head?)
    "authors: P-Adam+SAGA fp32, SAGA table": (dict(saga_memory="table", state_dtype="float32"), False),
    "P-Adam+SAGA fp32, recomputed SAGA (default)": (dict(state_dtype="float32"), False),
    "P-Adam+SAGA bf16, SAGA table": (dict(saga_memory="table", state_dtype="bfloat16"), False),
    "P-Adam+SAGA bf16, recomputed SAGA": (dict(state_dtype="bfloat16"), False),
    "P-Adam only fp32": (dict(p_saga=False, state_dtype="float32"), False),
    "P-Adam only bf16": (dict(p_saga=False, state_dtype="bfloat16"), False),
    "SAGA only fp32": (dict(p_adam=False, state_dtype="float32"), False),
    "SAGA only bf16": (dict(p_adam=False, state_dtype="bfloat16"), False),
    "P-Adam+SAGA bf16, recomputed SAGA, factored v": (dict(state_dtype="bfloat16", factored_v=True), False),
    "P-Adam+SAGA fp32, recomputed SAGA, factored v": (dict(state_dtype="float32", factored_v=True), False),
    "P-Adam+SAGA fp32, per-path on dense head only": (dict(state_dtype="float32"), True),
    "P-Adam+SAGA bf16, per-path on last conv + head": (dict(state_dtype="bfloat16"), "last2"),
}


def build(shapes, P, kwargs, chosen):
    params = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
    if chosen is False:
        groups = [{"params": params}]
    else:
        n_path = 1 if chosen is True else 3  # dense head (and the last conv + its bias)
        head = [p for p in params if p.dim() == 2][:1]
        convs = [p for p in params if p.dim() == 4][-1:] + [p for p in params if p.dim() == 1 and p.numel() == 128][-1:]
        chosen_params = head + (convs if n_path == 3 else [])
        ids = {id(p) for p in chosen_params}
        groups = [{"params": chosen_params}, {"params": [p for p in params if id(p) not in ids], "per_path": False}]
    return params, PathAdamSaga(groups, n_paths=P, lr=1e-4, weight_decay=0.01, **kwargs)


def bench(task: str, name: str, steps: int) -> dict:
    P, total, emb = TASKS[task]
    kwargs, chosen = OPTIONS[name]
    params, opt = build(encoder_shapes(total, emb), P, kwargs, chosen)
    n = sum(p.numel() for p in params)
    gen = torch.Generator().manual_seed(0)
    times = []
    for k in range(steps + 3):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen) * 1e-3
        opt.set_paths([int(torch.randint(P, (1,), generator=gen))])
        t0 = time.perf_counter()
        opt.step()
        if k >= 3:  # the first step allocates the tables; two more warm the caches
            times.append(time.perf_counter() - t0)
    allocated = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values())
    out = {"task": task, "option": name, "n_paths": P, "n_weights": n, "state_bytes": opt.state_bytes(),
           "allocated_bytes": allocated, "step_ms_median": 1e3 * statistics.median(times),
           "step_ms_iqr": 1e3 * (statistics.quantiles(times, n=4)[2] - statistics.quantiles(times, n=4)[0])}
    del opt, params
    gc.collect()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--tasks", nargs="+", default=["808", "granular"], choices=sorted(TASKS))
    ap.add_argument("--json", default=None, help="write the rows as JSON here")
    ap.add_argument("--raw-malloc", action="store_true",
                    help="keep glibc's default mmap threshold (every large temporary then page-faults afresh)")
    args = ap.parse_args()
    if not args.raw_malloc and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        # keep freed temporaries in the heap, as a caching allocator (CUDA) would; re-exec so glibc sees it
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(1 << 32), MALLOC_TRIM_THRESHOLD_=str(1 << 32))
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    rows = []
    print(f"{'task':9} {'option':48} {'state GB':>9} {'ms/step':>8} {'IQR':>6}")
    for task in args.tasks:
        for name in OPTIONS:
            r = bench(task, name, args.steps)
            rows.append(r)
            flag = " ≤1GB" if r["state_bytes"] <= 1e9 else ""
            print(f"{task:9} {name:48} {r['state_bytes'] / 1e9:9.3f} {r['step_ms_median']:8.2f} "
                  f"{r['step_ms_iqr']:6.2f}{flag}", flush=True)
    if args.json:
        meta = {"torch": torch.__version__, "machine": platform.processor() or platform.machine(),
                "threads": torch.get_num_threads(), "steps": args.steps, "device": "cpu",
                "malloc_tuned": "MALLOC_MMAP_THRESHOLD_" in os.environ}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
