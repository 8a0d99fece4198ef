"""Latency of the exported encoder (+ θ mapping) against the eager one, one input, 1 CPU thread by default.

    python experiments/benchmark_export.py [--synth tr808] [--encoder small|paper_14p|paper_2p] [--repeats 50]
        [--threads 1] [--json OUT.json]

Builds the encoder config ``configs/encoder/<encoder>.yaml`` for the synth (untrained weights: latency does not depend
on them), exports it to TorchScript, torch.export (pt2) and, when onnxruntime is installed, ONNX, records the
largest |Δθ| against the eager model, and
reports the median and 10th/90th percentile wall time of ``repeats`` calls on one input of the synth's length (after
5 warm-up calls).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _time(fn, repeats: int) -> dict:
    for _ in range(5):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - t0))
    q = statistics.quantiles(times, n=10)
    return {"median_ms": statistics.median(times), "p10_ms": q[0], "p90_ms": q[-1]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--synth", default="tr808")
    ap.add_argument("--encoder", default="small")
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from scraplab.cli.export import ExportableMatcher, export_onnx, export_pt2, export_torchscript
    from scraplab.locations import config_dir
    from scraplab.render import load_synth

    synth, _ = load_synth(args.synth)
    with initialize_config_dir(config_dir=str(config_dir() / "encoder"), version_base=None):
        enc_cfg = compose(config_name=args.encoder)
    torch.manual_seed(0)
    encoder = instantiate(enc_cfg)(synth=synth).eval()
    x = torch.randn(1, synth.n_samples) * 0.1
    rows = {"synth": args.synth, "encoder": args.encoder, "n_samples": synth.n_samples,
            "sample_rate": synth.sample_rate, "threads": args.threads, "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        eager = ExportableMatcher(encoder, synth).eval()
        ref = eager(x)[0]
        rows["eager"] = _time(lambda: eager(x), args.repeats)
        ts = export_torchscript(eager, torch.zeros(1, synth.n_samples), Path(tmp) / "m.pt")
        ts = torch.jit.load(str(Path(tmp) / "m.pt"))
        rows["torchscript_max_abs_diff"] = float((ts(x)[0] - ref).abs().max())
        rows["torchscript"] = _time(lambda: ts(x), args.repeats)
        export_pt2(eager, torch.zeros(2, synth.n_samples), Path(tmp) / "m.pt2")
        pt2 = torch.export.load(str(Path(tmp) / "m.pt2")).module()
        rows["pt2_max_abs_diff"] = float((pt2(x)[0] - ref).abs().max())
        rows["pt2"] = _time(lambda: pt2(x), args.repeats)
        try:
            import onnxruntime as ort
        except ImportError:
            rows["onnx"] = "onnxruntime not installed"
        else:
            export_onnx(ExportableMatcher(encoder, synth, real_frontend=True).eval(),
                        torch.zeros(2, synth.n_samples), Path(tmp) / "m.onnx")
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = opts.inter_op_num_threads = args.threads
            sess = ort.InferenceSession(str(Path(tmp) / "m.onnx"), opts, providers=["CPUExecutionProvider"])
            feed = {"audio": x.numpy()}
            rows["onnx_max_abs_diff"] = float((torch.from_numpy(sess.run(None, feed)[0]) - ref).abs().max())
            rows["onnx"] = _time(lambda: sess.run(None, feed), args.repeats)
    print(json.dumps(rows, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
