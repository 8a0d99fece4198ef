"""Per-path SCRAPL step time: ours vs the authors' `scrapl-loss` 0.1.0, on the same machine.

The authors' package cannot share an environment with kymatio 0.3.0, so run each side with its own interpreter
and the same path indices, back to back:

    python experiments/compare_authors_speed.py ours 0 30 150 314
    .oracle-venv/bin/python experiments/compare_authors_speed.py theirs 0 30 150 314   # see `make oracle-fixtures`

Each line: forward + backward w.r.t. x_hat, batch 4, 32768 samples, J=12, Q=(8,2), J_fr=3, Q_fr=2 (P = 315),
float32, 2 threads, 𝒫-Adam/𝒫-SAGA off, mean of two calls after one warm-up. Path i is the same (n2, n_fr) on both
sides (both enumerate second-order paths n2-major).
"""
import sys
import time

import torch


def main(which, idxs):
    torch.set_num_threads(2)
    x, y = torch.randn(4, 1, 32768), torch.randn(4, 1, 32768)
    if which == "ours":
        from scraplab.losses import SCRAPLLoss

        loss = SCRAPLLoss(32768, 12, (8, 2), 3, 2)
        keys = [(p.n2, p.n_fr) for p in loss.paths]

        def step(i):
            x.add_(0.0)  # a "new" target each call: no cache hit
            loss(y.clone().requires_grad_(), x, paths=[i]).backward()
    else:
        from scrapl import SCRAPLLoss  # only in the separate oracle environment

        loss = SCRAPLLoss(shape=32768, J=12, Q1=8, Q2=2, J_fr=3, Q_fr=2, use_p_adam=False, use_p_saga=False,
                          grad_mult=1.0)
        keys = loss.scrapl_keys

        def step(i):
            loss(y.clone().requires_grad_(), x, path_idx=i).backward()
    step(idxs[0])
    for i in idxs:
        t = time.perf_counter()
        step(i)
        step(i)
        print(f"{which} path {i} {keys[i]}: {(time.perf_counter() - t) / 2 * 1000:.0f} ms", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], [int(a) for a in sys.argv[2:]] or [0, 30, 150, 314])
