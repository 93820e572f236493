"""The Hilbert curve that lays IPv4 out on a square: neighbouring addresses stay neighbouring pixels."""

from __future__ import annotations

import numpy as np


def d2xy(order: int, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions along the curve of a 2^order x 2^order square -> (x, y), vectorised (the classic
    iterative rotate-and-flip; blocks of 4^k consecutive positions fill aligned squares)."""
    t = d.astype(np.int32)
    x = np.zeros_like(t)
    y = np.zeros_like(t)
    s = 1
    while s < (1 << order):
        rx = (t >> 1) & 1
        ry = (t ^ rx) & 1
        turn = ry == 0
        flip = turn & (rx == 1)
        fx = np.where(flip, s - 1 - x, x)
        fy = np.where(flip, s - 1 - y, y)
        x = np.where(turn, fy, fx) + s * rx
        y = np.where(turn, fx, fy) + s * ry
        t >>= 2
        s <<= 1
    return x, y


def cell_prefix(size: int) -> int:
    """The prefix length one pixel stands for on a size x size map: /24 at 4096, /20 at 1024."""
    order = size.bit_length() - 1
    if size != 1 << order or not 1 <= order <= 16:
        raise ValueError(f"map size {size} is not a power of two from 2 to 65536")
    return 2 * order


def pixel_of(address: int, size: int) -> tuple[int, int]:
    """Where an address lands on a size x size map."""
    order = size.bit_length() - 1
    x, y = d2xy(order, np.array([address >> (32 - cell_prefix(size))]))
    return int(x[0]), int(y[0])
