"""Audio and parameter losses: small ``nn.Module``s usable from plain Python (auraloss style)."""
from .jtfs import JTFSLoss
from .scattering1d import Scattering1DLoss
from .scrapl import SCRAPLLoss

__all__ = ["SCRAPLLoss", "JTFSLoss", "Scattering1DLoss"]
