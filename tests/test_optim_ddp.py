"""Under DDP (2 CPU gloo ranks, batch B each) PathAdamSaga + PathSampler give the single-process update with batch 2B:
the optimizer reads all-reduced gradients and every rank draws the same paths (slow: spawns processes)."""
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from scraplab.optim import PathAdamSaga
from scraplab.sampling import PathSampler

P, STEPS = 5, 6


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(STEPS, 8, 4, generator=g, dtype=torch.float64), torch.randn(P, 4, generator=g, dtype=torch.float64)


def _train(model, opt, batches, targets, rank=0, world=1):
    sampler = PathSampler(P, budget=2, seed=11)
    for k in range(STEPS):
        x = batches[k].chunk(world)[rank]
        paths = sampler.draw(k)
        loss = sum(((model(x) - targets[p]) ** 2).mean() for p in paths) / len(paths)
        opt.zero_grad()
        loss.backward()
        opt.set_paths(paths)
        opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _model():
    torch.manual_seed(3)
    return torch.nn.Linear(4, 4).double()


def _worker(rank, world, init_file, out_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(100 + rank)  # rank-local RNG state differs on purpose
    ddp = torch.nn.parallel.DistributedDataParallel(_model())
    opt = PathAdamSaga(ddp.parameters(), n_paths=P, lr=1e-2, weight_decay=0.01)
    w = _train(ddp, opt, *_data(), rank=rank, world=world)
    if rank == 0:
        torch.save(w, out_file)
    dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_ranks_equal_one_rank_double_batch(tmp_path):
    m = _model()
    single = _train(m, PathAdamSaga(m.parameters(), n_paths=P, lr=1e-2, weight_decay=0.01), *_data())
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "w.pt")), nprocs=2, join=True)
    torch.testing.assert_close(torch.load(tmp_path / "w.pt", weights_only=True), single, rtol=1e-9, atol=1e-12)
