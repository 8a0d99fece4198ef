"""Optimizers: 𝒫-Adam / 𝒫-SAGA (paper §3.2–3.3) and the config factories."""
from scraplab.optim.path_adam_saga import PathAdamSaga

__all__ = ["PathAdamSaga"]
