"""Export a trained encoder (log-CQT → CNN → sigmoid heads) with its θ → physical-unit mapping.

    scraplab export ckpt=RUN/checkpoints/best.ckpt format=torchscript|onnx|pt2 out=FILE [synth=true]

Arguments are ``key=value`` tokens parsed here, as in ``python -m scraplab.render`` (no Hydra config file).
The exported model takes ``audio (B, N)`` float32 (mono, at the synth's rate and length, as ``match.py`` prepares
it) and returns ``theta (B, U)`` in [0, 1] and ``physical (B, U)`` in the units of the synth's parameter table.
Beside ``FILE`` a ``FILE.json`` records the parameter names, units, ranges, sample rate and length.
Formats: ``torchscript`` (``torch.jit.load(FILE)``; torch 2.13 marks TorchScript deprecated), ``pt2`` (a
``torch.export`` program, its successor: ``torch.export.load(FILE).module()``) and ``onnx`` (onnxruntime; needs the
``onnx`` extra). All three keep the batch dimension dynamic.

``synth=true`` also exports the synth as ``FILE.synth.pt`` (TorchScript only) if its trace reproduces the eager synth
on new θ and seeds, and otherwise stops with an error naming the reason. None of the shipped synths can be exported
(checked with torch 2.13): granular and chirplet call custom autograd Functions (``torch.autograd.Function``, saved
as Python calls TorchScript cannot serialise) and the TR-808 turns tensors into Python ints; ``torch.export`` fails on
all three too (their seed-driven noise goes through numpy). Render with the Python package instead.
"""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from scraplab.cli.checkpoint import CheckpointError
from scraplab.models.frontend import LogCQT

FORMATS = ("torchscript", "onnx", "pt2")
USAGE = "usage: scraplab export ckpt=FILE.ckpt format=torchscript|onnx|pt2 out=FILE [synth=true|false]"


class ExportError(RuntimeError):
    """The model could not be exported (the message says what and why)."""


class ThetaToPhysical(nn.Module):
    """θ (B, U) in [0, 1] → physical values (B, U), column u mapped by the synth's ``params[u].to_physical``.

    Every curve (linear, log, dB and the custom ones, e.g. the granular synth's tan map) is a few tensor ops of θ,
    so tracing records them with their constants; nothing else is needed at inference.
    """

    def __init__(self, params) -> None:
        super().__init__()
        self.params = tuple(params)  # plain dataclasses, not modules: tracing inlines their ops

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        return torch.stack([p.to_physical(theta[:, i]) for i, p in enumerate(self.params)], dim=1)


class RealLogCQT(nn.Module):
    """:class:`LogCQT` ``(B, N) → (B, n_bins, n_frames)`` computed on (re, im) pairs instead of complex tensors.

    The ONNX exporter translates FFTs but not the indexing of complex tensors, so the band gathering, gains and
    ifftshift run on ``view_as_real`` of the spectrum and the modulus is sqrt(re² + im²). The transforms run in
    float64: onnxruntime's float32 DFT of the 44 288-point padded 808 signal was off by up to 0.03 on the log-CQT
    (float64: 2e-6, the float32 eager model's own round-off). Same filters as the wrapped module; output float32.
    """

    def __init__(self, cqt: LogCQT) -> None:
        super().__init__()
        self.cqt = cqt

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.cqt
        spec = torch.view_as_real(torch.fft.rfft(x.double(), n=c.n_pad))  # (B, n_pad/2 + 1, 2)
        out = []
        for g, (dec, _, _) in enumerate(c._groups):  # noqa: SLF001  (the band layout LogCQT built)
            idx, gain = getattr(c, f"idx_{g}"), getattr(c, f"gain_{g}")
            band = torch.fft.ifftshift(spec[:, idx] * gain.double().unsqueeze(-1), dim=2)  # (B, n_g, L, 2)
            z = torch.view_as_real(torch.fft.ifft(torch.view_as_complex(band.contiguous()), dim=-1))
            env = torch.sqrt(z.square().sum(-1))
            out.append(env.reshape(env.shape[0], env.shape[1], c.n_frames, c.hop_length // dec).mean(-1))
        return torch.log1p(torch.cat(out, dim=1) / c.eps).float()


class ExportableMatcher(nn.Module):
    """``audio (B, N)`` → ``(theta (B, U) in [0, 1], physical (B, U))``: the encoder in eval mode + the mapping.

    ``real_frontend=True`` swaps in :class:`RealLogCQT` (for ONNX); otherwise the encoder's own front end runs.
    """

    def __init__(self, encoder: nn.Module, synth: Any, real_frontend: bool = False) -> None:
        super().__init__()
        self.encoder = encoder.eval()
        self.frontend = RealLogCQT(encoder.frontend) if real_frontend else encoder.frontend
        self.to_physical = ThetaToPhysical(synth.params)

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        theta = self.encoder.cnn(self.frontend(audio))
        return theta, self.to_physical(theta)


def metadata(synth: Any, fmt: str, ckpt: str) -> dict:
    return {"format": fmt, "checkpoint": str(ckpt), "synth": type(synth).__name__,
            "sample_rate": int(synth.sample_rate), "n_samples": int(synth.n_samples),
            "input": "audio (B, n_samples) float32, mono", "outputs": ["theta (B, U) in [0, 1]", "physical (B, U)"],
            "params": [p.as_dict() for p in synth.params]}


def export_torchscript(model: nn.Module, example: torch.Tensor, out: Path) -> torch.jit.ScriptModule:
    """Trace ``model`` on ``example`` and save it; returns the traced module."""
    with torch.no_grad(), warnings.catch_warnings():
        # The front end's input-shape check becomes a constant of the trace (inputs must be (B, N)); expected.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, (example,), check_trace=False)
    traced.save(str(out))
    return traced


def _batch_dim() -> torch.export.Dim:
    return torch.export.Dim("batch", min=1, max=1024)


def export_pt2(model: nn.Module, example: torch.Tensor, out: Path) -> None:
    """``torch.export`` program with a dynamic batch; ``example`` needs batch ≥ 2 (batch 1 gets specialised)."""
    with torch.no_grad():
        program = torch.export.export(model, (example,), dynamic_shapes=({0: _batch_dim()},))
    torch.export.save(program, str(out))


def export_onnx(model: nn.Module, example: torch.Tensor, out: Path) -> None:
    """ONNX (opset 18, dynamic batch) via ``torch.onnx.export``; needs the ``onnx`` extra (onnx, onnxscript)."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ExportError(f"format=onnx needs the onnx extra (pip install 'scraplab[onnx]'): {err}") from err
    try:
        program = torch.onnx.export(model, (example,), dynamo=True, input_names=["audio"],
                                    output_names=["theta", "physical"], dynamic_shapes=({0: _batch_dim()},),
                                    opset_version=18)
        program.save(str(out))
    except Exception as err:  # the exporter raises many types; say which model part failed
        raise ExportError(f"ONNX export of the encoder failed: {type(err).__name__}: {err}") from err


class _SynthForTrace(nn.Module):
    def __init__(self, synth: nn.Module) -> None:
        super().__init__()
        self.synth = synth

    def forward(self, theta: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
        return self.synth(theta, seed)


def export_synth(synth: nn.Module, out: Path, tol: float = 1e-5) -> None:
    """Trace ``synth(theta, seed)`` and save it, only if the traced synth reproduces the eager one on θ and seeds
    it was not traced with; raises :class:`ExportError` naming the reason otherwise."""
    g = torch.Generator().manual_seed(0)
    theta0, theta1 = torch.rand(2, synth.n_params, generator=g), torch.rand(3, synth.n_params, generator=g)
    seed0, seed1 = torch.tensor([0, 1]), torch.tensor([7, 8, 9])
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the parity check below is the real test
            traced = torch.jit.trace(_SynthForTrace(synth.eval()), (theta0, seed0), check_trace=False)
            traced.save(str(out))
            loaded = torch.jit.load(str(out))
            same = torch.allclose(loaded(theta1, seed1), synth(theta1, seed1), atol=tol, rtol=0)
    except Exception as err:
        Path(out).unlink(missing_ok=True)
        first = next((line for line in str(err).splitlines() if line.strip()), "")  # the rest is a Python trace
        raise ExportError(f"{type(synth).__name__} cannot be traced: {type(err).__name__}: {first}") from err
    if not same:
        Path(out).unlink(missing_ok=True)
        raise ExportError(f"{type(synth).__name__} cannot be exported: its traced graph does not reproduce the "
                          "eager synth for new θ and seeds (data-dependent Python control flow / fast paths)")


def export(ckpt: str | Path, fmt: str, out: str | Path, synth: bool = False) -> dict:
    """Export the checkpoint's encoder (+ θ mapping) to ``out``; returns the metadata written to ``out.json``."""
    from scraplab.cli.checkpoint import load_encoder

    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    the_synth, encoder, _ = load_encoder(ckpt)
    model = ExportableMatcher(encoder, the_synth, real_frontend=fmt == "onnx").eval()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = metadata(the_synth, fmt, str(ckpt))
    if synth:  # first, so a synth that cannot be exported fails before anything is written
        if fmt != "torchscript":
            raise ValueError("synth=true is only supported with format=torchscript")
        synth_out = out.with_name(out.name + ".synth.pt")
        export_synth(the_synth, synth_out)
        meta["synth_file"] = synth_out.name
    example = torch.zeros(2, the_synth.n_samples)  # batch 2: torch.export would specialise a batch of 1
    {"torchscript": export_torchscript, "onnx": export_onnx, "pt2": export_pt2}[fmt](model, example, out)
    Path(str(out) + ".json").write_text(json.dumps(meta, indent=2))
    return meta


def parse_args(argv: list[str]) -> dict:
    """``key=value`` tokens → {ckpt, format, out, synth}; ValueError naming a bad or missing token."""
    opts: dict = {"format": "torchscript", "synth": False}
    for tok in argv:
        key, sep, val = tok.partition("=")
        if not sep or not val:
            raise ValueError(f"expected key=value, got {tok!r}\n{USAGE}")
        if key == "synth":
            if val.lower() not in ("true", "false"):
                raise ValueError(f"synth must be true or false, got {val!r}")
            opts["synth"] = val.lower() == "true"
        elif key in ("ckpt", "format", "out"):
            opts[key] = val
        else:
            raise ValueError(f"unknown key {key!r}\n{USAGE}")
    missing = [k for k in ("ckpt", "out") if k not in opts]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}\n{USAGE}")
    return opts


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(f"{USAGE}\n\nWrite the checkpoint's encoder (log-CQT front end + CNN + θ→physical mapping).\n"
              "  format=torchscript|onnx|pt2   (default torchscript)\n  synth=true   also the synth, where it traces")
        return 0
    try:
        opts = parse_args(argv)
        meta = export(opts["ckpt"], opts["format"], opts["out"], opts["synth"])
    except (ValueError, FileNotFoundError, ExportError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"exported {meta['synth']} encoder ({meta['format']}) to {opts['out']}; metadata in {opts['out']}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
