"""The listening report: a self-contained report.html whose every referenced file exists, one row per record."""
import base64
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from scraplab.report import write_report
from scraplab.synths import GranularSynth
from train_helpers import tone, write_wav


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.records, self.audio, self.img, self.cells = 0, [], [], []
        self._in_td = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and a.get("class") == "record":
            self.records += 1
        if tag == "audio":
            self.audio.append(a.get("src"))
        if tag == "img":
            self.img.append(a.get("src"))
        self._in_td = tag == "td"

    def handle_data(self, data):
        if self._in_td:
            self.cells.append(data.strip())


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _records(synth):
    g = torch.Generator().manual_seed(0)
    theta = torch.rand(3, synth.n_params, generator=g)
    with torch.no_grad():
        x, x_hat = synth(theta, torch.arange(3)), synth(theta.flip(0), torch.arange(3))
    return theta, [{"name": f"sound {i}", "target": x[i], "match": x_hat[i],
                    "theta": dict(zip(synth.param_names, theta[i].tolist())),
                    "distances": {"jtfs": 0.5 + i, "mss_lin": 0.25}} for i in range(3)]


def test_report_links_existing_media_and_has_one_row_per_record(tmp_path):
    synth = GranularSynth(n_samples=8192)
    theta, records = _records(synth)
    path = write_report(tmp_path / "rep", records, synth=synth)
    page = _parse(path)
    assert page.records == 3 and len(page.audio) == 6 and len(page.img) == 3
    for src in page.audio + page.img:
        assert not src.startswith(("http:", "https:", "/")), src  # relative, nothing from the web
        assert (path.parent / src).is_file(), src
    audio, sr = sf.read(str(path.parent / page.audio[0]))
    assert sr == synth.sample_rate and audio.shape == (8192,) and np.abs(audio).max() > 0
    assert (path.parent / page.img[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    slope = float(synth.to_physical(theta[:1])["slope"][0])  # custom curve: tan map in oct/s
    assert f"{slope:.6g}" in page.cells and "oct/s" in page.cells and "1.5" in page.cells
    assert "http" not in path.read_text()


def test_inline_report_is_one_file(tmp_path):
    synth = GranularSynth(n_samples=8192)
    _, records = _records(synth)
    path = write_report(tmp_path, records[:1], synth=synth, inline=True)
    page = _parse(path)
    assert page.records == 1 and len(page.audio) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    wav = base64.b64decode(page.audio[1].split(",", 1)[1])
    assert page.audio[1].startswith("data:audio/wav;base64,") and wav[:4] == b"RIFF"


def test_report_from_wav_files_without_a_synth(tmp_path):
    a = write_wav(tmp_path / "in" / "a.wav", tone(16000, 0.3), 16000)
    b = write_wav(tmp_path / "in" / "b.wav", tone(16000, 0.2, freq=500.0), 16000)
    path = write_report(tmp_path / "rep", [{"name": "a vs b", "target": a, "match": b,
                                             "physical": {"f0": 440.0}, "units": {"f0": "Hz"}}])
    page = _parse(path)
    assert page.records == 1 and all((path.parent / s).is_file() for s in page.audio + page.img)
    assert "440" in page.cells and "Hz" in page.cells


def test_bad_records_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="at least one record"):
        write_report(tmp_path, [])
    with pytest.raises(ValueError, match=r"record 0 \('x'\) lacks \['match'\]"):
        write_report(tmp_path, [{"name": "x", "target": np.zeros(100)}], sample_rate=8000)
    with pytest.raises(ValueError, match="unknown or different sample rates"):
        write_report(tmp_path, [{"name": "x", "target": np.zeros(4096), "match": np.zeros(4096)}])
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"nope")
    with pytest.raises(ValueError, match="bad.wav"):
        write_report(tmp_path, [{"name": "x", "target": bad, "match": np.zeros(4096)}], sample_rate=8000)
