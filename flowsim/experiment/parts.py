"""Per-replication tables on disk, so a run's memory does not grow with its replications.

Why: one replication of a one-year baseline carries ~10 MB of tables (every stay, every day, every
node); kept in the parent process, 200 replications peaked at 3.4 GB.  Each replication's tables
are written here as it arrives (one Parquet file per table and replication, renamed into place
like the sweep's task store) and only its KPIs stay in memory; tables are read back when asked
for, one replication or one column set at a time, always in replication order, so what is built
from them does not depend on the order replications finished in (serial, pool or Dask).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

#: The per-replication tables of ``ReplicationResult`` kept on disk.
TABLES = ("daily", "patients", "escalation", "nodes")


@dataclass(frozen=True)
class Encoded:
    """One replication's table as Parquet bytes, with the datetime units Parquet does not keep."""

    data: bytes
    times: tuple[tuple[str, str], ...]


def encode(frame: pd.DataFrame | None) -> Encoded | None:
    """A table as the Parquet file ``PartStore`` keeps (None for a missing table).

    Why bytes: a replication run in a pool worker is encoded there, in parallel, and travels back as one
    ``bytes`` object instead of pickled frames that the parent would unpickle and encode itself; on a machine whose
    cores the workers already fill, every second of the parent's work is taken from them (issue 16)."""
    if frame is None:
        return None
    times = tuple((str(c), str(t)) for c, t in frame.dtypes.items() if pd.api.types.is_datetime64_any_dtype(t))
    sink = pa.BufferOutputStream()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, sink, use_dictionary=_labelled(table.schema))
    return Encoded(sink.getvalue().to_pybytes(), times)


def _labelled(schema: pa.Schema) -> list[str]:
    """The columns worth dictionary-encoding: labels (strings, categoricals), not numbers, flags or times.

    Why: Parquet tries a dictionary for every column by default and falls back to plain values when it grows too
    big, which the stay times (nearly all distinct) always do; asking only for the labels' dictionaries encodes a
    Rotherham replication's tables ~25% faster and 13% smaller, and they read back the same (the same values,
    dtypes and categories)."""
    plain = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean, pa.types.is_temporal)
    return [f.name for f in schema if not any(is_(f.type) for is_ in plain)]


class PartStore:
    """``<root>/<table>/r<replication>.parquet``; a temporary directory unless ``root`` is given.

    A temporary store is removed when the last object using it is garbage-collected (or at exit);
    a given ``root`` (inside a run directory) is the caller's to remove, see ``remove``.
    """

    def __init__(self, root: Path | None = None):
        if root is None:
            self.root = Path(tempfile.mkdtemp(prefix="flowsim-parts-"))
            self._finalizer: Callable[[], object] | None = weakref.finalize(self, shutil.rmtree, self.root, True)
        else:
            self.root = Path(root)
            self.root.mkdir(parents=True, exist_ok=True)
            self._finalizer = None
        # Parquet has no seconds unit: datetime64[s] columns come back as [ms]; restore what was written
        self._times: dict[str, dict[str, str]] = {}

    def path(self, table: str, replication: int) -> Path:
        """Where one replication's table lives (zero-padded, so a directory listing is in replication order)."""
        return self.root / table / f"r{replication:06d}.parquet"

    def write(self, table: str, replication: int, frame: pd.DataFrame | None) -> None:
        """Store one replication's table (nothing for a missing one); atomic like every flowsim file."""
        self.write_encoded(table, replication, encode(frame))

    def write_encoded(self, table: str, replication: int, encoded: Encoded | None) -> None:
        """Store a table a worker has already encoded (``encode``): the parent only writes the bytes."""
        if encoded is None:
            return
        self._times.setdefault(table, dict(encoded.times))
        path = self.path(table, replication)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_bytes(encoded.data)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def has(self, table: str, replication: int) -> bool:
        """Whether the replication stored this table (a run without per-stay records has no ``patients``)."""
        return self.path(table, replication).is_file()

    def read_one(self, table: str, replication: int, columns: Sequence[str] | None = None) -> pd.DataFrame | None:
        """One replication's table (only ``columns``, when given), or None when it stored none."""
        path = self.path(table, replication)
        if not path.is_file():
            return None
        if columns is not None:  # a table stored without some columns (an empty one has none) reads as far as it has
            names = set(pq.read_schema(path).names)
            columns = [c for c in columns if c in names]
        frame = pd.read_parquet(path, columns=list(columns) if columns is not None else None, engine="pyarrow")
        times = {c: t for c, t in self._times.get(table, {}).items() if c in frame.columns and str(frame[c].dtype) != t}
        return frame.astype(times) if times else frame

    def columns(self, table: str, replications: Sequence[int]) -> list[str]:
        """The column names of the first of these replications that stored the table ([] when none did)."""
        for r in replications:
            path = self.path(table, r)
            if path.is_file():
                return list(pq.read_schema(path).names)
        return []

    def frames(self, table: str, replications: Sequence[int],
               columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
        """Each stored replication's table, in the order given."""
        for r in replications:
            frame = self.read_one(table, r, columns)
            if frame is not None:
                yield frame

    def tables(self, table: str, replications: Sequence[int]) -> Iterator[pa.Table]:
        """The same as Arrow tables (for streaming into one Parquet file)."""
        for r in replications:
            path = self.path(table, r)
            if path.is_file():
                yield pq.read_table(path)

    def concat(self, table: str, replications: Sequence[int],
               columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The replications' tables one after another (empty when none stored any)."""
        frames = list(self.frames(table, replications, columns))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def drop(self, replications: Sequence[int]) -> None:
        """Forget replications the result does not keep (beyond a replication-count decision)."""
        for r in replications:
            for table in TABLES:
                self.path(table, r).unlink(missing_ok=True)

    def remove(self) -> None:
        """Delete the store (after its tables were written out elsewhere)."""
        if self._finalizer is not None:
            self._finalizer()
        else:
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(self.root)
