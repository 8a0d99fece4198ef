"""Loss benchmark: forward + backward time and peak memory per optimisation step (paper Table 5).

    python experiments/benchmark_losses.py [--quick] [--json OUT.json] [--device cpu|cuda] [--batch 4]
    python experiments/benchmark_losses.py --paired 315 [--rounds 5] [--json OUT.json]   # the SCRAPL / MSS ratio

Each row times ``loss(x_hat, x).backward()`` w.r.t. ``x_hat`` on random signals (batch 4, 32768 samples, float32
by default). SCRAPL is reported as the **mean step under uniform path sampling**: every path's time weighted by
how often it is drawn (1/P), beside the median, fastest and slowest path. Each timed SCRAPL step gets a target of
new values (the in-loss cache would otherwise serve its coefficients); the ``_warm`` rows time the step of a fixed
training set after its first epoch instead: ``target_cache_mb`` on, the target's coefficients for that path stored,
the same sound passed again as a new tensor (its digest is part of the timed step). Paths that share a rate n2, a frequential
subsampling and a spin class run the very same tensor shapes, so the quick mode times one representative per class
and weights it by the class size; the full mode times every path.
Peak memory: CUDA's max_memory_allocated, or on CPU the peak resident set of a fresh child process per row, minus
the same process's resident set before the row ran.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict

import torch

JTFS_CONFIGS = {
    315: dict(J=12, Q=(8, 2), J_fr=3, Q_fr=2),  # granular / chirplet (paper Tables 10-11)
    483: dict(J=12, Q=(8, 2), J_fr=5, Q_fr=2, T=2048, F=1),  # TR-808 (Table 12)
}


def build(name, n, device, **kw):
    """The loss of a row; ``kw`` go to SCRAPLLoss (``overlap_target``)."""
    from scraplab.losses import JTFSLoss, SCRAPLLoss, Scattering1DLoss
    from scraplab.losses.spectral import MSSLoss, RandomMSSLoss, RevisitedMSSLoss

    if name.startswith("scrapl_"):
        warm = {"target_cache_mb": 4096} if name.endswith("_warm") else {}
        return SCRAPLLoss(n, **JTFS_CONFIGS[int(name.split("_")[1])], **warm, **kw).to(device)
    if name.startswith("jtfs_"):
        return JTFSLoss(n, **JTFS_CONFIGS[int(name.split("_")[1])]).to(device)
    return {
        "mss_linear": lambda: MSSLoss(),
        "mss_loglin": lambda: MSSLoss(w_log_mag=1.0),
        "mss_revisited": lambda: RevisitedMSSLoss(),
        "mss_random": lambda: RandomMSSLoss(),
        "scattering1d": lambda: Scattering1DLoss(n, J=12, Q=(8, 2)),
    }[name]().to(device)


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_step(fn, device, repeats, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t) * 1000)
    return times


def path_classes(loss):
    """Paths grouped by identical computation: (order, n2, frequential subsampling, spin == 0)."""
    groups = defaultdict(list)
    for p in loss.paths:
        groups[(p.order, p.n2, loss.jtfs._k_fr[p.n_fr], p.spin == 0)].append(p.index)
    return list(groups.values())


def run_row(name, args):
    torch.manual_seed(0)
    device = args.device
    x = torch.randn(args.batch, 1, args.n_samples, device=device)
    x_hat0 = torch.randn(args.batch, 1, args.n_samples, device=device)
    loss = build(name, args.n_samples, device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    def step(paths=None, target=None):
        x_hat = x_hat0.clone().requires_grad_(True)
        target = x if target is None else target
        v = loss(x_hat, target) if paths is None else loss(x_hat, target, paths=paths)
        v.backward()

    rec = dict(loss=name.split("_")[0], name=name,
               paths=None, batch=args.batch, n_samples=args.n_samples, device=device)
    if name.startswith("scrapl_"):
        per_path, n_timed = {}, 0
        step([0])  # first call: allocator and index caches
        repeats = 1 if args.quick else args.path_repeats
        for members in path_classes(loss):
            timed = members if not args.quick else members[:1]
            for p in timed:
                if name.endswith("_warm"):  # the target's coefficients stored, the same sound as a new tensor
                    step([p], x.clone())
                    times = time_step(lambda: step([p], x.clone()), device, repeats, warmup=0)
                else:  # new target values at every step: the cost of a target never seen before
                    times = time_step(lambda: (x.add_(1e-3), step([p])), device, repeats, warmup=0)
                per_path[p] = statistics.median(times)
            n_timed += len(timed)
            for p in members:
                per_path.setdefault(p, statistics.median(per_path[q] for q in timed))
        values = [per_path[p] for p in range(loss.n_paths)]
        rec.update(paths=loss.n_paths, mean_ms=sum(values) / len(values), median_ms=statistics.median(values),
                   min_ms=min(values), max_ms=max(values), timed_paths=n_timed)
    else:
        if name.startswith("jtfs_"):
            rec["paths"] = loss.n_paths
        full = name.startswith("jtfs_")  # tens of seconds on CPU: one timed call, no warm-up
        times = time_step(step, device, 1 if full else args.repeats, warmup=0 if full else 1)
        rec.update(mean_ms=statistics.mean(times), median_ms=statistics.median(times), min_ms=min(times),
                   max_ms=max(times))
    if device.startswith("cuda"):
        rec["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return rec


def paired(args):
    """SCRAPL and MSS Linear timed alternately in one process: per round, every path class's representative
    (weighted by its size), each followed by one MSS Linear step, then the same with the target stored, then the
    fresh-target step once more with ``overlap_target=False`` (the target computed after the prediction, on the one
    calling thread: the A/B of ``losses.overlap``), then the target's transform alone (no autograd, the part of a
    fresh-target step that the stored rows skip). Load or cache drift moves all of them alike, so the per-round
    ratio is steadier than one row per child process.

    ``hidden``: the share of the target's transform that the overlap hides, (stored + target − fresh) / target:
    1 if a fresh-target step cost no more than a stored one, 0 if it cost the two one after the other."""
    torch.manual_seed(0)
    device, cfg = args.device, int(args.paired)
    x = torch.randn(args.batch, 1, args.n_samples, device=device)
    x_hat0 = torch.randn(args.batch, 1, args.n_samples, device=device)
    fixed = x.clone()  # the stored rows' training sound; x itself is changed before every fresh-target step
    mss = build("mss_linear", args.n_samples, device)
    cold = build(f"scrapl_{cfg}", args.n_samples, device)
    serial = build(f"scrapl_{cfg}", args.n_samples, device, overlap_target=False)
    warm = build(f"scrapl_{cfg}_warm", args.n_samples, device)

    def timed(fn):
        return time_step(fn, device, 1, warmup=0)[0]

    def step(loss, target, path=None):
        x_hat = x_hat0.clone().requires_grad_(True)
        (loss(x_hat, target) if path is None else loss(x_hat, target, paths=[path])).backward()

    @torch.no_grad()
    def target_only(path):  # what the fresh-target step adds to the stored one: the target's coefficients
        cold.jtfs.forward_paths(x.reshape(-1, x.shape[-1]), [path])

    classes = path_classes(cold)
    reps = [(m[0], len(m)) for m in classes]
    step(mss, x), step(cold, x, 0), step(serial, x, 0)
    for p, _ in reps:  # fill the store: the warm rows time a fixed training set after its first epoch
        step(warm, fixed.clone(), p)
    rounds = []
    for _ in range(args.rounds):
        t_mss, t_cold, t_warm, t_serial, t_target = [], 0.0, 0.0, 0.0, 0.0
        for p, size in reps:
            t_cold += size * timed(lambda: (x.add_(1e-3), step(cold, x, p)))
            t_mss.append(timed(lambda: step(mss, x)))
            t_warm += size * timed(lambda: step(warm, fixed.clone(), p))
            t_mss.append(timed(lambda: step(mss, x)))
            t_serial += size * timed(lambda: (x.add_(1e-3), step(serial, x, p)))
            t_mss.append(timed(lambda: step(mss, x)))
            t_target += size * timed(lambda: (x.add_(1e-3), target_only(p)))
        m, sc, sw, ss, st = (statistics.mean(t_mss), t_cold / cold.n_paths, t_warm / cold.n_paths,
                             t_serial / cold.n_paths, t_target / cold.n_paths)
        rounds.append(dict(mss_linear_ms=m, scrapl_ms=sc, scrapl_warm_ms=sw, scrapl_serial_ms=ss, target_ms=st,
                           ratio=sc / m, ratio_warm=sw / m, ratio_serial=ss / m, ratio_target=st / m,
                           hidden=(sw + st - sc) / st))
    summary = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    for k in ("ratio", "ratio_warm", "ratio_serial", "ratio_target", "hidden"):
        summary.update({f"{k}_min": min(r[k] for r in rounds), f"{k}_max": max(r[k] for r in rounds)})
    store = warm.target_store  # every timed stored-target step must be served: misses only while filling
    return dict(paths=cold.n_paths, classes=len(reps), batch=args.batch, n_samples=args.n_samples, device=device,
                rounds=rounds, median=summary, store_hits=store.hits, store_misses=store.misses)


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(name, args):
    base = rss_mb()
    rec = run_row(name, args)
    if "peak_mb" not in rec:
        rec["peak_mb"] = peak_rss_mb() - base
    print("ROW " + json.dumps(rec), flush=True)


def main(argv=None):
    # imported here, not at the top: compare_kymatio_jtfs.py imports this file's helpers in the oracle venv,
    # which has no scraplab
    from scraplab.host_memory import MODES, set_host_memory

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one path per computation class; skip full JTFS at P=483")
    ap.add_argument("--json", help="write the records to this file")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--n-samples", type=int, default=32768)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--path-repeats", type=int, default=3)
    ap.add_argument("--rows", nargs="*", help="subset of rows (default: all)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--paired", choices=["315", "483"],
                    help="only SCRAPL at this P and MSS Linear, alternating in one process (see paired())")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of the --paired mode")
    ap.add_argument("--host-memory", choices=MODES, default="keep",
                    help="allocator setting of scraplab.host_memory, as the train command's host_memory (default keep)")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    kept = set_host_memory(args.host_memory)  # process-wide: both losses of a run share it
    if args._child:
        return child(args._child, args)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from runplan import finish_measurement, measurement_provenance  # experiments/runplan.py, next to this file

    prov = measurement_provenance("experiments/benchmark_losses.py", argv)
    if args.paired:
        doc = paired(args)
        for i, r in enumerate(doc["rounds"]):
            print(f"round {i}: MSS Linear {r['mss_linear_ms']:6.1f} ms  SCRAPL {r['scrapl_ms']:6.1f} ms "
                  f"({r['ratio']:.2f}x)  targets stored {r['scrapl_warm_ms']:6.1f} ms ({r['ratio_warm']:.2f}x)  "
                  f"no overlap {r['scrapl_serial_ms']:6.1f} ms ({r['ratio_serial']:.2f}x)  "
                  f"target alone {r['target_ms']:6.1f} ms ({r['ratio_target']:.2f}x, {100 * r['hidden']:.0f} % hidden)")
        med = doc["median"]
        print(f"median of {len(doc['rounds'])} rounds: SCRAPL / MSS Linear {med['ratio']:.2f}x "
              f"[{med['ratio_min']:.2f}, {med['ratio_max']:.2f}], targets stored {med['ratio_warm']:.2f}x "
              f"[{med['ratio_warm_min']:.2f}, {med['ratio_warm_max']:.2f}], target not overlapped "
              f"{med['ratio_serial']:.2f}x [{med['ratio_serial_min']:.2f}, {med['ratio_serial_max']:.2f}], "
              f"the target's transform alone {med['ratio_target']:.2f}x, {100 * med['hidden']:.0f} % of it hidden "
              f"(target <= 1.5x)")
        doc.update(threads=args.threads or torch.get_num_threads(), host_memory=args.host_memory, host_memory_kept=kept)
        return finish_measurement(doc, prov, args.json)
    rows = args.rows or ["mss_linear", "mss_loglin", "mss_revisited", "mss_random", "scattering1d", "scrapl_315",
                         "scrapl_315_warm", "scrapl_483", "scrapl_483_warm", "jtfs_315"] + (
                         [] if args.quick else ["jtfs_483"])
    records = []
    for name in rows:  # one child process per row: CPU peak memory is a per-process high-water mark
        cmd = [sys.executable, __file__, "--_child", name, "--device", args.device, "--batch", str(args.batch),
               "--n-samples", str(args.n_samples), "--repeats", str(args.repeats),
               "--path-repeats", str(args.path_repeats), "--host-memory", args.host_memory] + (
               ["--quick"] if args.quick else []) + (["--threads", str(args.threads)] if args.threads else [])
        out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("ROW ")]
        if out.returncode != 0 or not line:
            raise SystemExit(f"row {name} failed:\n{out.stderr[-3000:]}")
        rec = json.loads(line[0][4:])
        records.append(rec)
        print(f"{rec['name']:>14}  mean {rec['mean_ms']:9.1f} ms  median {rec['median_ms']:9.1f}  "
              f"min {rec['min_ms']:9.1f}  max {rec['max_ms']:9.1f}  peak {rec['peak_mb']:8.0f} MB", flush=True)
    mss = next((r for r in records if r["name"] == "mss_linear"), None)
    if mss:
        for r in records:
            r["mean_vs_mss_linear"] = r["mean_ms"] / mss["mean_ms"]
        print("\nratio of mean step to MSS Linear (same run):")
        for r in records:
            print(f"  {r['name']:>14}  {r['mean_vs_mss_linear']:8.2f}x")
    warm = {r["name"][: -len("_warm")]: r for r in records if r["name"].endswith("_warm")}
    if warm:
        print("\nSCRAPL step with the target's coefficients stored (a fixed training set after its first epoch):")
        for name, r in warm.items():
            cold = next((c for c in records if c["name"] == name), None)
            if cold:
                print(f"  {name:>14}  {cold['mean_ms']:7.1f} -> {r['mean_ms']:7.1f} ms ({r['mean_ms'] / cold['mean_ms']:.2f}x)")
    # the records, with the commit, command, versions and machine load (rows compare only within one file)
    finish_measurement({"rows": records, "threads": args.threads or torch.get_num_threads(),
                        "host_memory": args.host_memory, "host_memory_kept": kept}, prov, args.json)


if __name__ == "__main__":
    main()
