"""Deterministic randomness for the sample scene: integer hashes of (seed, stream, coordinates).

Every random choice of the scene is a pure function of its seed and global coordinates, never of
a generator's state, so any window of the plane can be computed alone and matches every other
tiling of it.
"""
from __future__ import annotations

import zlib
from functools import lru_cache

import numpy as np

_U64 = np.uint64
_M64 = (1 << 64) - 1
_C1, _C2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_PX, _PY = _U64(0x9E3779B97F4A7C15), _U64(0xD1B54A32D192ED03)


def _mix_int(z: int) -> int:
    """splitmix64 finaliser on a Python int."""
    z &= _M64
    z = ((z ^ (z >> 30)) * _C1) & _M64
    z = ((z ^ (z >> 27)) * _C2) & _M64
    return z ^ (z >> 31)


@lru_cache(maxsize=4096)
def stream_key(seed: int, name: str) -> np.uint64:
    """A 64-bit key for one named random stream of one seed."""
    return _U64(_mix_int(_mix_int(seed & _M64) ^ zlib.crc32(name.encode()) * 0x9E3779B97F4A7C15))


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, in place on a uint64 array."""
    z ^= z >> _U64(30)
    z *= _U64(_C1)
    z ^= z >> _U64(27)
    z *= _U64(_C2)
    z ^= z >> _U64(31)
    return z


def hash2(key: np.uint64, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """uint64 hash of ``(key, a, b)`` for integer arrays broadcast together (a and b >= 0)."""
    with np.errstate(over="ignore"):
        z = np.asarray(a, dtype=np.int64).astype(np.uint64) * _PX
        z = np.ascontiguousarray(z)
        z ^= key
        z = _mix(z)
        z = z + np.asarray(b, dtype=np.int64).astype(np.uint64) * _PY
        return _mix(z)


def unit(key: np.uint64, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Uniform float64 in [0, 1) from the hash of ``(key, a, b)``."""
    return (hash2(key, a, b) >> _U64(11)).astype(np.float64) * (1.0 / (1 << 53))


def value_noise(key: np.uint64, scale: int, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Smooth value noise in [0, 1) at lattice spacing ``scale`` px on rows ys × columns xs."""
    iy, ix = ys // scale, xs // scale
    gy = np.arange(iy[0], iy[-1] + 2)[:, None]
    gx = np.arange(ix[0], ix[-1] + 2)[None, :]
    lattice = ((hash2(key, gy, gx) >> _U64(40)).astype(np.float32) * np.float32(1.0 / (1 << 24)))

    def smooth(i: np.ndarray, v: np.ndarray) -> np.ndarray:
        f = ((v - i * scale).astype(np.float32) + np.float32(0.5)) / np.float32(scale)
        return f * f * (np.float32(3.0) - np.float32(2.0) * f)

    tx, ty = smooth(ix, xs), smooth(iy, ys)
    jx = ix - ix[0]
    rows = lattice[:, jx] * (np.float32(1.0) - tx) + lattice[:, jx + 1] * tx
    jy = iy - iy[0]
    return rows[jy] * (np.float32(1.0) - ty)[:, None] + rows[jy + 1] * ty[:, None]
