"""Counter-based random numbers derived from per-example integer seeds.

Every random quantity a synth uses (grain pitches and onsets, noise, time shifts) is a pure function of
``(seed, stream, counter)``, computed with 32-bit integer hashing held in int64 tensors. Integer arithmetic is exact
on every device, so the same seed gives the same random draws on CPU and GPU, with no generator state and no loop
over examples (the authors' texture synth re-seeds a per-device ``torch.Generator`` per example, which differs between
CPU and CUDA; reference_experiments.md §1.1).

The mixer is Wellons' "lowbias32" 32-bit integer hash. A product of two 32-bit numbers can overflow int64, so the
multiplication modulo 2**32 is split into two 16-bit halves (every intermediate stays below 2**49).

Speed: on CPU the same hash runs in NumPy ``uint32`` arithmetic (unsigned wrap-around is defined behaviour), about
10× faster than the int64 torch ops; the two paths are bit-identical (tests/test_synth_dsp.py checks it), so the
draws do not depend on which one ran. Other devices use the torch int64 path.
"""
from __future__ import annotations

import numpy as np
import torch

MASK32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9  # 2**32 / golden ratio: spreads consecutive stream ids apart
_OFFSET = 0x632BE5AB  # moves counter 0 of key 0 off hash32's fixed point hash32(0) = 0

# Stream ids in use; synths pick their own small ids for internal draws (0..99).
STREAM_SHIFT = 1000  # base-class random time shift
STREAM_THETA = 1001  # random θ for rendering / synthetic data sets


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``x * c mod 2**32`` for ``x`` in [0, 2**32) held in int64, without int64 overflow."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & MASK32


def hash32(x: torch.Tensor) -> torch.Tensor:
    """Bijective 32-bit mix of an int64 tensor whose values lie in [0, 2**32); same shape out."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _hash32_np(x: np.ndarray) -> np.ndarray:
    """:func:`hash32` on a uint32 array, in place (multiplication wraps modulo 2**32)."""
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


def check_seed(seed: torch.Tensor) -> None:
    if not isinstance(seed, torch.Tensor) or seed.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"seed must be an int64 (or int32) tensor, got {type(seed).__name__} "
                         f"{getattr(seed, 'dtype', '')}")
    if seed.ndim != 1:
        raise ValueError(f"seed must have shape (B,), got {tuple(seed.shape)}")


def random_bits(seed: torch.Tensor, stream: int, n: int) -> torch.Tensor:
    """Uniform 32-bit integers.

    Args:
        seed: (B,) integer tensor; any int64 value (both halves are used).
        stream: small non-negative int naming the quantity drawn (keeps draws for different uses independent).
        n: number of draws per example.
    Returns:
        (B, n) int64 in [0, 2**32), on ``seed.device``.
    """
    check_seed(seed)
    if seed.device.type == "cpu":
        return torch.from_numpy(_random_bits_np(seed, stream, n).astype(np.int64))
    return _random_bits_torch(seed, stream, n)


def _stream_keys(seed: torch.Tensor, stream: int) -> torch.Tensor:
    """(B, 1) int64 per-(seed, stream) keys in [0, 2**32) (B hashes: cheap on any device)."""
    check_seed(seed)
    seed = seed.long()
    lo, hi = seed & MASK32, (seed >> 32) & MASK32
    if not 0 <= stream < 2**31:
        raise ValueError(f"stream must be in [0, 2**31), got {stream}")
    s = ((stream + 1) * _GOLDEN) & MASK32  # plain Python int: no device sync
    return hash32(lo ^ hash32(hi ^ s))[:, None]


def _random_bits_torch(seed: torch.Tensor, stream: int, n: int) -> torch.Tensor:
    """Reference path of :func:`random_bits`: torch int64 ops on seed's device."""
    key = _stream_keys(seed, stream)
    counter = torch.arange(n, device=seed.device, dtype=torch.int64)[None, :]
    # counter -> (counter + key) -> hash -> xor key -> hash is a bijection per key: no repeats within a stream
    return hash32(hash32((counter + key + _OFFSET) & MASK32) ^ key)


def _random_bits_np(seed: torch.Tensor, stream: int, n: int) -> np.ndarray:
    """CPU path of :func:`random_bits` as a (B, n) uint32 array; bit-identical to :func:`_random_bits_torch`."""
    key = _stream_keys(seed, stream).numpy().astype(np.uint32)
    x = np.arange(n, dtype=np.uint32)[None, :] + (key + np.uint32(_OFFSET))  # wraps modulo 2**32
    x = _hash32_np(x)
    x ^= key
    return _hash32_np(x)


def uniform(seed: torch.Tensor, stream: int, n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(B, n) uniform floats in the open interval (0, 1), computed in float64 and cast to ``dtype``."""
    check_seed(seed)
    if seed.device.type == "cpu":  # same float64 arithmetic in NumPy, skipping the int64 round trip
        u = _random_bits_np(seed, stream, n).astype(np.float64)
        u += 0.5
        u *= 2.0**-32
        return torch.from_numpy(u).to(dtype)
    bits = random_bits(seed, stream, n)
    return ((bits.double() + 0.5) * 2.0**-32).to(dtype)


def randint(seed: torch.Tensor, stream: int, n: int, low: int, high: int) -> torch.Tensor:
    """(B, n) int64 uniform on the inclusive range [low, high], exact integer arithmetic (span < 2**31)."""
    span = high - low + 1
    if span <= 0 or span >= 2**31:
        raise ValueError(f"randint needs 0 < high - low + 1 < 2**31, got low={low}, high={high}")
    return low + ((random_bits(seed, stream, n) * span) >> 32)
