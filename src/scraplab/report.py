"""A self-contained listening report: ``report.html`` with, per matched file, the target and match as <audio>
players, their log-CQT scalograms side by side, θ in [0, 1] and in physical units, and distances.

    from scraplab.report import write_report
    write_report("matched/", [{"name": "snare", "target": x, "match": x_hat, "theta": {...}, "distances": {...}}],
                 synth=synth)

Nothing is fetched from the web: media are files in ``out_dir/report_media/`` linked by relative paths, or with
``inline=True`` base64 ``data:`` URIs inside the page (one file to send around).
"""
from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np
import soundfile as sf
import torch

from scraplab.models.encoder import cqt_settings
from scraplab.models.frontend import LogCQT

Audio = Union[torch.Tensor, np.ndarray, str, Path]
MEDIA_DIR = "report_media"
_STYLE = ("body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
          "td,th{border:1px solid #bbb;padding:4px 8px;vertical-align:top}.num{text-align:right}"
          "img{max-width:640px}")


def _mono(audio: Audio, where: str) -> tuple[np.ndarray, Optional[int]]:
    """(samples (N,) float32, file sample rate or None) from a tensor/array (N,), (1, N) or an audio file."""
    if isinstance(audio, (str, Path)):
        try:
            data, sr = sf.read(str(audio), dtype="float32", always_2d=True)
        except Exception as err:  # soundfile raises several types
            raise ValueError(f"{where}: cannot read audio file {audio}: {err}") from err
        return data.mean(axis=1), int(sr)
    x = audio.detach().cpu().float().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio, np.float32)
    x = np.squeeze(x)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"{where}: audio must be (N,) or (1, N) samples, got shape {np.shape(audio)}")
    return x, None


def _wav_bytes(x: np.ndarray, sr: int) -> bytes:
    peak = float(np.abs(x).max())
    buf = io.BytesIO()
    sf.write(buf, x / peak if peak > 1.0 else x, sr, format="WAV", subtype="PCM_16")  # scaled only if it would clip
    return buf.getvalue()


def _png_bytes(u: torch.Tensor, u_hat: torch.Tensor, title: str) -> bytes:
    import matplotlib.pyplot as plt

    from scraplab.training.callbacks import scalogram_figure  # Agg backend, shared colour scale

    fig = scalogram_figure(u, u_hat, title)
    fig.axes[0].set_title("target")
    fig.axes[1].set_title("match")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


class _Media:
    """Writes media beside the page (relative links) or returns them as data: URIs."""

    def __init__(self, out_dir: Path, inline: bool) -> None:
        self.out_dir, self.inline = out_dir, inline
        if not inline:
            (out_dir / MEDIA_DIR).mkdir(parents=True, exist_ok=True)

    def add(self, name: str, data: bytes, mime: str) -> str:
        if self.inline:
            return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
        (self.out_dir / MEDIA_DIR / name).write_bytes(data)
        return f"{MEDIA_DIR}/{name}"


def _kv_table(rows: Sequence[tuple[str, ...]], head: Sequence[str]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f'<td class="num">{html.escape(c)}</td>' if i else f"<td>{html.escape(c)}</td>"
                                   for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def _theta_rows(rec: Mapping[str, Any], synth: Any) -> list[tuple[str, str, str, str]]:
    theta = dict(rec.get("theta") or {})
    phys = dict(rec.get("physical") or {})
    units = dict(rec.get("units") or {})
    if synth is not None:
        units = {**{p.name: p.unit for p in synth.params}, **units}
        if theta and not phys:  # map θ through the synth's parameter table
            t = torch.tensor([[float(theta[n]) for n in synth.param_names]])
            phys = {n: float(v[0]) for n, v in synth.to_physical(t).items()}
    names = list(theta) or list(phys)
    return [(n, units.get(n, ""), f"{theta[n]:.4f}" if n in theta else "",
             f"{phys[n]:.6g}" if n in phys else "") for n in names]


def write_report(out_dir: Union[str, Path], records: Sequence[Mapping[str, Any]], synth: Any = None,
                 sample_rate: Optional[int] = None, title: str = "scraplab listening report", inline: bool = False,
                 scalogram: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> Path:
    """Write ``out_dir/report.html`` (and its media) and return its path.

    Args:
        records: one mapping per file with ``name`` (str), ``target`` and ``match`` (audio: tensor/array (N,) or
            (1, N) at ``sample_rate``, or an audio file path), and optionally ``theta`` ({param: value in [0, 1]}),
            ``physical`` ({param: value}; computed from ``theta`` with ``synth`` when missing), ``units`` and
            ``distances`` ({name: float}).
        synth: the synth (sample rate, parameter table and units, ``cqt_defaults`` for the scalograms) or None.
        sample_rate: Hz of array audio (default: the synth's; a file's own rate otherwise).
        inline: embed the media as base64 data: URIs instead of files in ``out_dir/report_media/``.
        scalogram: ``(1, N) → (1, bins, frames)`` image function (default: the encoder's log-CQT for the synth).
    """
    if not records:
        raise ValueError("write_report needs at least one record")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    media = _Media(out_dir, inline)
    default_sr = sample_rate or getattr(synth, "sample_rate", None)
    cqts: dict[tuple[int, int], LogCQT] = {}
    rows = []
    for i, rec in enumerate(records):
        where = f"record {i} ({rec.get('name', '?')!r})"
        missing = [k for k in ("name", "target", "match") if k not in rec]
        if missing:
            raise ValueError(f"{where} lacks {missing}")
        (x, sr_x), (y, sr_y) = _mono(rec["target"], where), _mono(rec["match"], where)
        sr = sr_x or sr_y or default_sr
        if sr is None or (sr_x and sr_y and sr_x != sr_y):
            raise ValueError(f"{where}: unknown or different sample rates (target {sr_x}, match {sr_y}); "
                             "pass sample_rate= or a synth")
        n = max(x.size, y.size)
        x, y = np.pad(x, (0, n - x.size)), np.pad(y, (0, n - y.size))
        stem = f"{i:03d}_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", str(rec["name"]))[:60]
        src_x = media.add(f"{stem}_target.wav", _wav_bytes(x, sr), "audio/wav")
        src_y = media.add(f"{stem}_match.wav", _wav_bytes(y, sr), "audio/wav")
        fn = scalogram
        if fn is None:
            if (sr, n) not in cqts:
                cqts[(sr, n)] = LogCQT(sr, n, **cqt_settings(getattr(synth, "cqt_defaults", None)))
            fn = cqts[(sr, n)]
        with torch.no_grad():
            u = fn(torch.from_numpy(np.stack([x, y])))
        src_png = media.add(f"{stem}_scalogram.png", _png_bytes(u[0], u[1], str(rec["name"])), "image/png")
        theta = _theta_rows(rec, synth)
        dist = [(k, f"{float(v):.6g}") for k, v in dict(rec.get("distances") or {}).items()]
        rows.append(
            f'<tr class="record"><td>{html.escape(str(rec["name"]))}</td>'
            f'<td>target<br><audio controls preload="none" src="{src_x}"></audio><br>'
            f'match<br><audio controls preload="none" src="{src_y}"></audio></td>'
            f'<td><img alt="log-CQT of target and match" src="{src_png}"></td>'
            f'<td>{_kv_table(theta, ("parameter", "unit", "θ [0-1]", "physical")) if theta else ""}</td>'
            f'<td>{_kv_table(dist, ("distance", "value")) if dist else ""}</td></tr>')
    page = (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p>{len(records)} file(s); {html.escape(type(synth).__name__ if synth is not None else 'no synth')}"
            f"; scalograms: log-CQT (bins × frames), one colour scale per row.</p>"
            "<table><tr><th>file</th><th>listen</th><th>scalograms (target | match)</th><th>θ</th>"
            "<th>distances</th></tr>" + "".join(rows) + "</table></body></html>")
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
