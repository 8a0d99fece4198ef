"""SCRAPLLoss(overlap_target=True): the target's coefficients on the worker thread of ``losses.overlap`` give the
one-thread values bit for bit, only where the per-thread state allows it, and failures surface."""
from __future__ import annotations

import threading
import time

import pytest
import torch

from scraplab.losses import JTFSLoss, SCRAPLLoss
from scraplab.losses import overlap

SMALL = dict(shape=4096, J=6, Q=(8, 2), J_fr=3, Q_fr=2)


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def submissions(monkeypatch):
    """Counts the calls handed to the worker thread, and the threads they ran on."""
    calls, real = [], overlap.submit

    def counted(fn, *args):
        def run(*a):
            calls.append(threading.get_ident())
            return fn(*a)
        return real(run, *args)

    monkeypatch.setattr(overlap, "submit", counted)
    return calls


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("store_mb", [0, 64])
def test_overlapped_target_gives_the_one_thread_values_bit_for_bit(dtype, store_mb, two_threads, submissions):
    a = SCRAPLLoss(**SMALL, target_cache_mb=store_mb).to(dtype)
    b = SCRAPLLoss(**SMALL, target_cache_mb=store_mb, overlap_target=False).to(dtype)
    torch.manual_seed(0)
    x, x_hat = torch.randn(3, 4096, dtype=dtype), torch.randn(3, 4096, dtype=dtype, requires_grad=True)
    for paths in ([0], [a.n_paths - 1], [3, 40]):
        la = a(x_hat, x, paths=paths)
        (ga,) = torch.autograd.grad(la, x_hat)
        lb = b(x_hat, x, paths=paths)
        (gb,) = torch.autograd.grad(lb, x_hat)
        assert torch.equal(la, lb) and torch.equal(ga, gb)
    assert len(submissions) == 3 and threading.get_ident() not in submissions  # it did run elsewhere


@pytest.mark.parametrize("log1p", [False, True])
def test_the_full_loss_overlaps_its_target_with_the_one_thread_values(log1p, two_threads, submissions):
    # JTFSLoss (the full-JTFS baseline) is SCRAPLLoss.full: its target's transform runs on the worker too
    a = JTFSLoss(**SMALL, log1p=log1p).double()
    b = JTFSLoss(**SMALL, log1p=log1p, overlap_target=False).double()
    torch.manual_seed(1)
    x, x_hat = torch.rand(2, 1, 4096, dtype=torch.float64), torch.randn(2, 1, 4096, dtype=torch.float64,
                                                                         requires_grad=True)
    for reduction in ("mean", "none"):
        la, lb = a(x_hat, x, reduction=reduction), b(x_hat, x, reduction=reduction)
        (ga,) = torch.autograd.grad(la.sum(), x_hat)
        (gb,) = torch.autograd.grad(lb.sum(), x_hat)
        assert torch.equal(la, lb) and torch.equal(ga, gb)
    assert len(submissions) == 2 and threading.get_ident() not in submissions
    assert x.grad is None and not b.full(x_hat.detach(), x).requires_grad


def test_no_overlap_where_the_worker_would_not_share_the_callers_state(two_threads, submissions):
    x = torch.randn(2, 4096)
    assert overlap.can_overlap(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not overlap.can_overlap(x)
    assert torch.func.vmap(lambda row: torch.tensor(overlap.can_overlap(row)))(x).tolist() == [False, False]
    torch.set_num_threads(1)  # one core given to torch: the second thread would exceed it
    assert not overlap.can_overlap(x)
    loss = SCRAPLLoss(**SMALL)
    loss(torch.randn(2, 4096, requires_grad=True), x, paths=[5]).backward()
    assert submissions == []


def test_a_target_failure_is_raised_by_the_call(two_threads, monkeypatch):
    loss = SCRAPLLoss(**SMALL)

    def broken(x, paths):
        raise RuntimeError("target side failed")

    monkeypatch.setattr(loss, "_target_coefficients", broken)
    with pytest.raises(RuntimeError, match="target side failed"):
        loss(torch.randn(2, 4096), torch.randn(2, 4096), paths=[1])


def test_a_prediction_failure_waits_for_the_target_work_before_raising(two_threads, monkeypatch):
    loss = SCRAPLLoss(**SMALL)
    finished = []

    def slow_target(x, paths):
        time.sleep(0.3)
        finished.append(True)

    def broken(x, paths):
        raise RuntimeError("prediction side failed")

    monkeypatch.setattr(loss, "_target_coefficients", slow_target)
    monkeypatch.setattr(loss.jtfs, "forward_paths", broken)
    with pytest.raises(RuntimeError, match="prediction side failed"):
        loss(torch.randn(2, 4096), torch.randn(2, 4096), paths=[1])
    assert finished == [True]  # nothing of the failed call is left running


def test_a_forked_child_makes_a_worker_of_its_own(monkeypatch):
    # A forked child inherits the executor object but not its thread: work queued there would never run. (A real
    # fork cannot show it here: libgomp hangs a child whose parent ran OpenMP teams unless the child goes to one
    # thread, as DataLoader workers do, and one thread never overlaps.)
    import os

    parent = overlap._executor()
    assert overlap._executor() is parent
    monkeypatch.setattr(overlap, "_worker", overlap._worker)  # the process's worker is restored afterwards
    monkeypatch.setattr(os, "getpid", lambda: -1)
    child = overlap._executor()
    assert child is not parent and child.submit(lambda: 41 + 1).result(timeout=30) == 42
    child.shutdown(wait=True)  # the "child's" thread is not left idling in the test process
