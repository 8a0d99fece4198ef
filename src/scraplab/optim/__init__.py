"""Optimizers: 𝒫-Adam / 𝒫-SAGA (paper §3.2–3.3) and the config factories."""
from scraplab.optim.factories import adamw, p_adam, p_saga, sgd
from scraplab.optim.path_adam_saga import PathAdamSaga

__all__ = ["PathAdamSaga", "adamw", "p_adam", "p_saga", "sgd"]
