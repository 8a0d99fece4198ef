"""A/B of zeroing the FFT-defined operators' round-off entries (below OPERATOR_TOL of the peak), in one process.

"kept": a JTFS whose wfr/tavg/favg buffers are copied from one built with OPERATOR_TOL = 0 (the entries kept, as
before the change; column skipping is unchanged, it is decided at call time with the default tolerance).
"zeroed": the default JTFS. SCRAPL steps (forward + backward, batch 2, 1 thread) over every 23rd path of the
TR-808 settings (all spin 0) and every 23rd path of the granular settings, interleaved, best of 2 rounds.

    python experiments/results/subnormal_ab/ab_round_off.py
"""
import time

import torch

from scraplab.losses import SCRAPLLoss
from scraplab.scattering import jtfs as jtfs_mod

torch.set_num_threads(1)
CONFIGS = {"tr808 (P=483)": (44100, dict(J=12, Q=(8, 2), J_fr=5, Q_fr=2, T=2048, F=1, log1p=True)),
           "granular (P=315)": (32768, dict(J=12, Q=(8, 2), J_fr=3, Q_fr=2))}
for name, (n, kw) in CONFIGS.items():
    zeroed = SCRAPLLoss(shape=n, **kw)
    tol, jtfs_mod.OPERATOR_TOL = jtfs_mod.OPERATOR_TOL, 0.0
    raw = SCRAPLLoss(shape=n, **kw)
    jtfs_mod.OPERATOR_TOL = tol
    kept = SCRAPLLoss(shape=n, **kw)
    with torch.no_grad():
        for (k, b), r in zip(kept.jtfs.named_buffers(), raw.jtfs.buffers()):
            if k.startswith(("wfr", "tavg", "favg")):
                b.copy_(r)
    g = torch.Generator().manual_seed(0)
    xh = torch.randn(2, n, generator=g, requires_grad=True)
    y = torch.randn(2, n, generator=g)
    times = {"kept": {}, "zeroed": {}}
    for _ in range(2):
        for label, loss in (("kept", kept), ("zeroed", zeroed)):
            for p in range(0, loss.n_paths, 23):
                t = time.perf_counter()
                loss(xh, y, paths=[p]).backward()
                times[label][p] = min(times[label].get(p, 1e9), time.perf_counter() - t)
    a, b = sum(times["kept"].values()), sum(times["zeroed"].values())
    worst = max(times["kept"], key=lambda p: times["kept"][p] / times["zeroed"][p])
    print(f"{name}: {len(times['kept'])} paths, kept {a:.2f} s, zeroed {b:.2f} s ({a / b:.2f}x); largest gain path "
          f"{worst}: {times['kept'][worst]:.3f} -> {times['zeroed'][worst]:.3f} s", flush=True)
