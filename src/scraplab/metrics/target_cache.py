"""Target-side JTFS coefficients of evaluation sounds, computed once and reused.

The JTFS distance of a test pass transforms every prediction *and* every target; the targets do not depend on the
model, so a run that tests twice (untrained encoder, best checkpoint) or a table of many runs on the same test kits
recomputes the same coefficients again and again (the TR-808 test set: ~2 min of CPU per pass for its 483 paths).
:class:`TargetCoefficientCache` keeps them per example row, keyed by a digest of

* the row's audio bytes (a changed sound is a new key: nothing stale can be returned),
* the path indices of the request and the metric's settings (JTFS shape and filter-bank arguments, ρ, dtype),
* the source code of the scattering engine (an engine change invalidates every stored entry).

``folder=None`` keeps the entries in memory (one process); with a folder they are also written there as ``.pt``
files and read by later processes. ``max_mb`` bounds the memory entries (least recently used first out): training
uses such a cache for its fixed data set's targets (``SCRAPLLoss(target_cache_mb=...)``). Coefficients computed for a row inside a different batch agree with a fresh
computation to float32 round-off (batched BLAS kernels), not bit for bit.
"""
from __future__ import annotations

import functools
import hashlib
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Optional, Sequence

import torch


@functools.lru_cache(maxsize=1)
def engine_digest() -> str:
    """Digest of the scattering engine's source files (filter bank, core, JTFS, paths) and of the path loss."""
    import scraplab.losses.scrapl as scrapl_mod
    import scraplab.scattering as scattering_pkg
    h = hashlib.blake2b(digest_size=16)
    files = sorted(Path(scattering_pkg.__file__).parent.glob("*.py")) + [Path(scrapl_mod.__file__)]
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


class TargetCoefficientCache:
    """ρ-transformed JTFS coefficients of target rows, ``get(loss, x, paths) -> (B, k, F', T')``.

    Args:
        folder: where to store entries for later processes; None = memory only.
        max_mb: bound on the memory entries in MiB (least recently used evicted first); None = unbounded.
    """

    def __init__(self, folder: Optional[str | Path] = None, max_mb: Optional[float] = None) -> None:
        if max_mb is not None and not max_mb > 0:
            raise ValueError(f"max_mb must be positive (or None for no bound), got {max_mb!r}")
        self.folder = Path(folder) if folder is not None else None
        self.max_bytes = None if max_mb is None else int(max_mb * 2**20)
        self.memory: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.bytes = 0
        self.hits = self.misses = 0

    def _settings(self, loss, paths: Sequence[int], dtype: torch.dtype) -> bytes:
        jt = loss.jtfs
        desc = (engine_digest(), type(loss).__name__, jt.extra_repr(), str(jt.psi1.dtype), bool(loss.log1p),
                float(getattr(loss, "log1p_eps", 0.0)), str(dtype), tuple(int(p) for p in paths))
        return repr(desc).encode()

    def _key(self, settings: bytes, row: torch.Tensor) -> str:
        h = hashlib.blake2b(settings, digest_size=20)
        h.update(str(tuple(row.shape)).encode())
        h.update(row.detach().to("cpu").contiguous().numpy().tobytes())
        return h.hexdigest()

    def _file(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.pt"

    def _load(self, key: str) -> Optional[torch.Tensor]:
        if key in self.memory:
            self.memory.move_to_end(key)
            return self.memory[key]
        if self.folder is not None and self._file(key).is_file():
            try:
                value = torch.load(self._file(key), weights_only=True)
            except Exception:  # a torn or foreign file is recomputed (and rewritten), never trusted
                return None
            self._remember(key, value)
            return value
        return None

    def _remember(self, key: str, value: torch.Tensor) -> None:
        if key in self.memory:
            self.bytes -= _nbytes(self.memory.pop(key))
        self.memory[key] = value
        self.bytes += _nbytes(value)
        while self.max_bytes is not None and self.bytes > self.max_bytes and self.memory:
            self.bytes -= _nbytes(self.memory.popitem(last=False)[1])

    def _store(self, key: str, value: torch.Tensor) -> None:
        value = value.detach().to("cpu").clone()
        self._remember(key, value)
        if self.folder is not None:
            file = self._file(key)
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_suffix(f".tmp{uuid.uuid4().hex}")  # not torch's RNG: evaluation must not move training's
            torch.save(value, tmp)
            tmp.replace(file)  # atomic: a reader sees the old file or the whole new one

    @torch.no_grad()
    def get(self, loss, x: torch.Tensor, paths: Sequence[int]) -> torch.Tensor:
        """ρ(JTFS(x)) on ``paths`` for (B, N) targets x, computing only the rows not seen before."""
        settings = self._settings(loss, paths, x.dtype)
        keys = [self._key(settings, x[b]) for b in range(x.shape[0])]
        found = [self._load(k) for k in keys]
        missing = [b for b, v in enumerate(found) if v is None]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            S = loss._rho(loss.jtfs.forward_paths(x[missing], list(paths)))
            for b, s in zip(missing, S):
                self._store(keys[b], s)
                found[b] = s
        return torch.stack([v.to(device=x.device, dtype=x.dtype) for v in found])

    @torch.no_grad()
    def get_per_path(self, loss, x: torch.Tensor, paths: Sequence[int]) -> torch.Tensor:
        """As :meth:`get`, with one entry per (row, path): a training step's drawn paths are reused whatever paths
        they were drawn with. The rows and paths not seen before are computed in one call (one first layer)."""
        paths = [int(p) for p in paths]
        settings = self._settings(loss, (), x.dtype)
        digests = [self._key(settings, x[b]) for b in range(x.shape[0])]
        found = [[self._load(f"{d}-{p}") for p in paths] for d in digests]
        rows = [b for b in range(len(digests)) if any(v is None for v in found[b])]
        todo = list(dict.fromkeys(p for b in rows for p, v in zip(paths, found[b]) if v is None))
        n_missing = sum(v is None for r in found for v in r)
        self.hits += len(digests) * len(paths) - n_missing
        self.misses += n_missing
        if rows:
            S = loss._rho(loss.jtfs.forward_paths(x[rows], todo))
            col = {p: k for k, p in enumerate(todo)}
            for i, b in enumerate(rows):
                for j, p in enumerate(paths):
                    if found[b][j] is None:
                        found[b][j] = S[i, col[p]]
                        self._store(f"{digests[b]}-{p}", found[b][j])
        return torch.stack([torch.stack(r) for r in found]).to(device=x.device, dtype=x.dtype)


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()
