"""configs/optim and configs/sampler instantiate as partials that the training code completes."""
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from scraplab.locations import config_dir


@pytest.mark.parametrize("name,cls", [("p_saga", "PathAdamSaga"), ("p_adam", "PathAdamSaga"), ("adamw", "AdamW"),
                                      ("sgd", "SGD")])
def test_optim_configs(name, cls):
    with initialize_config_dir(config_dir=str(config_dir() / "optim"), version_base=None):
        factory = instantiate(compose(config_name=name))
    w = torch.nn.Parameter(torch.ones(3))
    opt = factory([w], n_paths=7)
    assert type(opt).__name__ == cls
    w.grad = torch.ones(3)
    if hasattr(opt, "set_paths"):
        opt.set_paths([2])
        assert opt.state_bytes() > 0
    opt.step()
    assert (w.detach() < 1).all()


@pytest.mark.parametrize("name,mode", [("uniform", "uniform"), ("theta_is", "fixed"), ("adaptive", "adaptive"),
                                       ("all_first", "all_first"), ("importance_weighted", "fixed")])
def test_sampler_configs_with_budget(name, mode):
    with initialize_config_dir(config_dir=str(config_dir() / "sampler"), version_base=None):
        factory = instantiate(compose(config_name=name, overrides=["budget=3"]))
    s = factory(n_paths=11)
    assert s.mode == mode and s.budget == 3
    assert s.needs_warmup == (mode == "fixed")
    if not s.needs_warmup:
        assert len(set(s.draw(5))) == 3
