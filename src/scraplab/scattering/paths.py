"""Enumeration of JTFS paths and their meta (paper §4.1).

A second-order path is (n2, n_fr): a temporal wavelet ψ2 of octave j2 applied to the scalogram rows with j1 < j2,
followed by one frequential filter (spin-0 low-pass, or a spin-up / spin-down band-pass) along log-frequency.
First-order paths (optional) are the time-averaged scalogram filtered along log-frequency by the spin ≥ 0 filters.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional


@dataclass(frozen=True)
class PathMeta:
    """One JTFS path.

    Attributes:
        index: position in the transform's output (and in the SCRAPL path set).
        order: 1 (time-averaged scalogram × frequential filter) or 2 (ψ2 × frequential filter).
        n2: index of the second-order temporal filter (None at order 1).
        n_fr: index of the frequential filter (0 is the spin-0 low-pass).
        spin: +1 (up), -1 (down) or 0.
        j2: dyadic scale of ψ2 (None at order 1).
        j_fr: dyadic scale of the frequential filter.
        xi2: centre frequency of ψ2 in cycles/sample (0 at order 1).
        xi_fr: signed centre frequency of the frequential filter in cycles per scalogram row.
        n1_max: number of scalogram rows that enter the path.
        q1: first-order filters per octave (to convert xi_fr to cycles/octave).
    """

    index: int
    order: int
    n2: Optional[int]
    n_fr: int
    spin: int
    j2: Optional[int]
    j_fr: int
    xi2: float
    xi_fr: float
    n1_max: int
    q1: int

    def rate_hz(self, sample_rate: float) -> float:
        """Temporal modulation rate of the path in Hz (ψ2 centre frequency)."""
        return self.xi2 * sample_rate

    @property
    def scale_cpo(self) -> float:
        """Frequential modulation scale in cycles per octave, signed by the spin."""
        return self.xi_fr * self.q1

    def fm_rate_oct_per_s(self, sample_rate: float) -> float:
        """Chirp rate a path is tuned to, in octaves per second (rate / scale, signed by the spin); 0 for spin 0."""
        if self.xi_fr == 0:
            return 0.0
        return self.rate_hz(sample_rate) / self.scale_cpo

    def as_dict(self) -> dict:
        return asdict(self)


def enumerate_paths(psi1, psi2, psis_fr, q1: int, first_order: bool = False) -> list[PathMeta]:
    """All paths in output order: order 1 first (if requested), then (n2, n_fr) with n2 outer.

    ψ2 filters without any scalogram row of lower octave (j1 < j2) are skipped, as in kymatio.
    """
    j1s = [p["j"] for p in psi1]
    paths: list[PathMeta] = []
    if first_order:
        for n_fr, f in enumerate(psis_fr):
            if f["xi"] >= 0:
                paths.append(PathMeta(len(paths), 1, None, n_fr, _sign(f["xi"]), None, f["j"], 0.0, f["xi"],
                                      len(psi1), q1))
    for n2, p2 in enumerate(psi2):
        n1_max = sum(1 for j1 in j1s if j1 < p2["j"])
        if n1_max == 0:
            continue
        for n_fr, f in enumerate(psis_fr):
            paths.append(PathMeta(len(paths), 2, n2, n_fr, _sign(f["xi"]), p2["j"], f["j"], p2["xi"], f["xi"],
                                  n1_max, q1))
    return paths


def _sign(v: float) -> int:
    return int(v > 0) - int(v < 0)
