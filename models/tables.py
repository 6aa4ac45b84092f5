"""Reading ticket tables (CSV or Parquet), whole or in bounded chunks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


def table_kind(path: Path) -> str:
    """``csv`` or ``parquet`` by suffix; a clear error for other files or a missing file."""
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise ValueError(f"{path}: expected a .csv or .parquet file, got {suffix or 'no suffix'!r}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return "csv" if suffix == ".csv" else "parquet"


def read_table(path: str | Path) -> pd.DataFrame:
    """The whole table; CSV cells are read as text (empty cells as missing)."""
    path = Path(path)
    if table_kind(path) == "csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    return pd.read_parquet(path)


def iter_table(path: str | Path, chunk_rows: int, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
    """The table in chunks of at most ``chunk_rows`` rows, so memory stays bounded for any file size."""
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be positive")
    path = Path(path)
    if table_kind(path) == "csv":
        yield from pd.read_csv(
            path, dtype=str, keep_default_na=False, na_values=[""], usecols=columns, chunksize=chunk_rows
        )
        return
    parquet = pq.ParquetFile(path)
    for batch in parquet.iter_batches(batch_size=chunk_rows, columns=columns):
        yield batch.to_pandas()
