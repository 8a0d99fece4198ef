"""Joint time-frequency scattering (JTFS), kymatio-shaped: filter banks, paths, core, nn.Module front end."""
from .jtfs import JTFS
from .paths import PathMeta

__all__ = ["JTFS", "PathMeta"]
