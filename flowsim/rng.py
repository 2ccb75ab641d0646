"""Named random streams: one generator per activity, derived from (seed, replication, name).

Why: scenarios that share a seed then share random numbers activity by activity
(common random numbers), so an option's difference from the baseline is the
effect of the option and not of a reshuffled dice roll.  Each stream's
``SeedSequence`` is keyed by a *stable* hash of its name (CRC-32, not Python's
salted ``hash``), so adding a new stream never changes existing ones.
"""

from __future__ import annotations

import zlib

import numpy as np


def stream_key(name: str) -> int:
    """Stable 32-bit key for a stream name (identical across processes and machines)."""
    return zlib.crc32(name.encode("utf-8"))


def make_stream(seed: int, replication: int, name: str) -> np.random.Generator:
    """The generator for stream ``name`` of replication ``replication`` under ``seed``."""
    if seed < 0 or replication < 0:
        raise ValueError("seed and replication must be non-negative integers")
    ss = np.random.SeedSequence(entropy=seed, spawn_key=(replication, stream_key(name)))
    return np.random.Generator(np.random.PCG64(ss))


class Streams:
    """Factory of named streams for one replication; each name is created once."""

    def __init__(self, seed: int, replication: int):
        self.seed = int(seed)
        self.replication = int(replication)
        self._streams: dict[str, np.random.Generator] = {}

    def __getitem__(self, name: str) -> np.random.Generator:
        gen = self._streams.get(name)
        if gen is None:
            gen = make_stream(self.seed, self.replication, name)
            self._streams[name] = gen
        return gen

    @property
    def names(self) -> list[str]:
        """The names of the streams drawn from so far."""
        return sorted(self._streams)
