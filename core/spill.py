"""Per-patient frames kept on disk once a run holds more of them than its memory budget.

A run's map gives every endpoint a per-patient frame per partition, and its reduce gives every
endpoint a per-patient output; for a registry of millions of patients these are far larger than the
summaries computed from them, and only one endpoint's are needed at a time. A :class:`FrameStore`
keeps frames in memory until the frames it holds reach ``memory_budget`` bytes; later frames are
pickled into a private temporary folder (under ``TMPDIR``), a file per million rows, and loaded
again only when used (a file written from disk is written a slice at a time). Pickle round-trips
every pandas dtype exactly, so where a frame was kept never changes a result. The folder is removed
when the store is garbage-collected or the process exits. :class:`FrameParts` keeps a frame as
consecutive parts that are never concatenated unless the whole frame is asked for.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import pickle
import shutil
import sys
import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

DEFAULT_MEMORY_BUDGET = 256 * 1024**2  # bytes of frames a run keeps in memory before it writes them to disk
SLICE_ROWS = 1_000_000  # rows per file of a frame on disk: written, and read back to write a CSV, a slice at a time
RELEASE_AFTER = 64 * 1024**2  # bytes freed before memory is given back (a full collection is not free)
_freed = 0  # bytes freed since memory was last given back


def release_memory(freed: int | None = None) -> None:
    """Give freed memory back to the system (glibc's ``malloc_trim``, and Arrow's memory pool) once
    large frames are gone: the allocators otherwise keep it, and the process's peak grows with every
    endpoint of a large run.

    ``freed`` (bytes just let go) defers the release until :data:`RELEASE_AFTER` bytes have been
    freed: a full garbage collection costs tens of milliseconds in a process holding many objects,
    which a run that writes many small frames would otherwise pay for each one."""
    global _freed
    _freed += freed or 0
    if freed is not None and _freed < RELEASE_AFTER:
        return
    _freed = 0
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    # text columns live in Arrow's own allocator (mimalloc or jemalloc), which keeps freed memory too
    pa.default_memory_pool().release_unused()


def frame_bytes(frame: pd.DataFrame) -> int:
    """The memory a frame holds, closely enough to budget by: arrays by their buffers, and a column
    of Python objects by the size of up to 1,000 evenly spaced values (measuring every one of them,
    as ``memory_usage(deep=True)`` does, costs more than pickling a small frame)."""
    total = frame.index.memory_usage()
    for _, column in frame.items():
        values = column.array
        if column.dtype == object:
            objects = column.to_numpy()
            sample = objects[:: max(1, len(objects) // 1000)]
            each = sum(sys.getsizeof(value) for value in sample) / len(sample) if len(sample) else 0
            total += objects.nbytes + int(each * len(objects))
        else:
            total += values.nbytes
    return int(total)


@dataclass
class StoredFrame:
    """A frame held by a :class:`FrameStore`: in memory, or in a file until :meth:`load` reads it."""

    rows: int
    nbytes: int
    _frame: pd.DataFrame | None = field(default=None, repr=False)
    _paths: tuple[Path, ...] = ()  # on disk: a file per slice of SLICE_ROWS rows
    _store: FrameStore | None = field(default=None, repr=False)  # keeps the folder alive while the frame is

    def load(self) -> pd.DataFrame:
        """The frame (a new object each time it comes from disk: callers own what they get); a
        frame of several slices is put together column by column, never held twice."""
        if self._frame is not None:
            return self._frame
        if len(self._paths) == 1:
            return next(self.slices())
        return join_rows(self.slices())

    def slices(self) -> Iterator[pd.DataFrame]:
        """The frame a slice of rows at a time, each read only when asked for (a frame in memory: whole)."""
        if self._frame is not None:
            yield self._frame
            return
        for path in self._paths:
            with open(path, "rb") as stream:
                yield pickle.load(stream)  # noqa: S301 - a file this process wrote itself, in its private folder

    @property
    def spilled(self) -> bool:
        return self._frame is None

    @classmethod
    def held(cls, frame: pd.DataFrame) -> StoredFrame:
        """A frame kept in memory outside any store (a part that never went through one)."""
        return cls(rows=len(frame), nbytes=0, _frame=frame)


@dataclass(frozen=True)
class FrameParts:
    """A frame kept as consecutive parts (a report of millions of records, then a few more): a
    file is written part after part, each loaded only while it is written, and the parts are
    concatenated (by ``join``) only when the whole frame is asked for."""

    parts: tuple[StoredFrame, ...]
    join: Callable[[list[pd.DataFrame]], pd.DataFrame]

    def load(self) -> pd.DataFrame:
        return self.join([part.load() for part in self.parts])

    def slices(self) -> Iterator[pd.DataFrame]:
        """Each part's slices, in order, each read only when asked for."""
        for part in self.parts:
            yield from part.slices()

    @property
    def rows(self) -> int:
        return sum(part.rows for part in self.parts)

    @property
    def nbytes(self) -> int:
        return sum(part.nbytes for part in self.parts)

    @property
    def spilled(self) -> bool:
        return any(part.spilled for part in self.parts)


def as_frame(value: pd.DataFrame | StoredFrame | FrameParts) -> pd.DataFrame:
    """The frame itself, loaded when it is a handle."""
    return value.load() if isinstance(value, StoredFrame | FrameParts) else value


class FrameStore:
    """Frames in memory up to a budget, then in a private temporary folder."""

    def __init__(self, memory_budget: int | None = None) -> None:
        self.memory_budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else memory_budget
        self.held = 0  # bytes of frames kept in memory
        self.spilled = 0  # bytes of frames written to disk
        self._folder: Path | None = None
        self._count = 0

    def put(self, frame: pd.DataFrame) -> StoredFrame:
        nbytes = frame_bytes(frame)
        if self.held + nbytes <= self.memory_budget:
            self.held += nbytes
            return StoredFrame(rows=len(frame), nbytes=nbytes, _frame=frame)
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="endpointkit-frames-"))
            weakref.finalize(self, shutil.rmtree, self._folder, True)
        paths = []
        for start in range(0, max(len(frame), 1), SLICE_ROWS):  # a slice at a time: pickling copies Arrow text
            self._count += 1
            paths.append(self._folder / f"{self._count:06d}.pickle")
            with open(paths[-1], "wb") as stream:
                part = frame if len(frame) <= SLICE_ROWS else frame.iloc[start:start + SLICE_ROWS]
                pickle.dump(part, stream, protocol=pickle.HIGHEST_PROTOCOL)
        self.spilled += nbytes
        return StoredFrame(rows=len(frame), nbytes=nbytes, _paths=tuple(paths), _store=self)


def assemble(parts: list[StoredFrame], order: str) -> pd.DataFrame:
    """The parts' rows as one frame in the order of the ``order`` column (stable: rows with equal
    values keep the parts' order), without it.

    Column by column, so that the whole frame is never held twice: each part is loaded, its columns
    copied out, and the part released; then each column is concatenated and put in order on its own."""
    if len(parts) == 1:
        return _in_order(parts[0].load(), order)
    try:
        head, _, pieces = _column_pieces(part.load() for part in parts)
    except _ColumnsDiffer:  # pandas aligns differing columns (what the column-wise path assumes away)
        return _in_order(pd.concat([p.load() for p in parts], ignore_index=True), order)
    if head.columns.has_duplicates:
        del pieces
        return _in_order(pd.concat([p.load() for p in parts], ignore_index=True), order)
    at = list(head.columns).index(order)
    position = np.argsort(_joined_column(pieces[at]).to_numpy(), kind="stable")
    in_order = np.array_equal(position, np.arange(len(position)))
    columns = {}
    for i, name in enumerate(head.columns):
        if i != at:
            column = _joined_column(pieces[i])
            columns[name] = column if in_order else column.take(position).reset_index(drop=True)
    return pd.DataFrame(columns, copy=False)


def join_rows(slices: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Slices of one frame's rows (same columns and dtypes, in order) as that frame: its index,
    column labels and attrs. Column by column, as :func:`assemble`, so it is never held twice."""
    head, indexes, pieces = _column_pieces(slices)
    joined = pd.DataFrame({i: _joined_column(column) for i, column in enumerate(pieces)}, copy=False)
    joined.columns = head.columns
    joined.index = indexes[0].append(indexes[1:]) if len(indexes) > 1 else indexes[0]
    joined.attrs = dict(head.attrs)
    return joined


class _ColumnsDiffer(Exception):
    """A frame whose columns are not those of the first."""


def _column_pieces(frames: Iterable[pd.DataFrame]) -> tuple[pd.DataFrame, list[pd.Index], list[list[pd.Series]]]:
    """Each frame's columns copied out by position (so that the frame itself can be let go as the
    next is loaded): the first frame's empty head, every frame's index, and each column's pieces."""
    head, indexes, pieces = None, [], []
    for frame in frames:
        if head is None:
            head = frame.iloc[:0]
            pieces = [[] for _ in range(frame.shape[1])]
        elif not frame.columns.equals(head.columns):
            raise _ColumnsDiffer
        indexes.append(frame.index)
        for position in range(frame.shape[1]):
            pieces[position].append(frame.iloc[:, position].copy(deep=True).reset_index(drop=True))
        del frame
    if head is None:
        raise ValueError("no frames to join")
    return head, indexes, pieces


def _joined_column(pieces: list[pd.Series]) -> pd.Series:
    """One column's pieces as one column; the pieces are let go, and their memory given back once
    enough is free."""
    column = pd.concat(_same_categories(pieces), ignore_index=True)
    pieces.clear()
    release_memory(int(column.memory_usage(index=False)))
    return column


def _same_categories(pieces: list[pd.Series]) -> list[pd.Series]:
    """Unordered categorical pieces with differing categories given their sorted union (pandas would
    concatenate them as objects, at many times the memory): the dtype a whole frame made with
    sorted categories has, however many parts it was built from."""
    dtypes = [piece.dtype for piece in pieces]
    if not all(isinstance(d, pd.CategoricalDtype) and not d.ordered for d in dtypes) or all(d == dtypes[0] for d in dtypes):
        return pieces
    union = pd.CategoricalDtype(sorted(set().union(*(d.categories for d in dtypes))))
    return [piece.astype(union) for piece in pieces]


def _in_order(frame: pd.DataFrame, order: str) -> pd.DataFrame:
    position = np.argsort(frame[order].to_numpy(), kind="stable")
    if not np.array_equal(position, np.arange(len(position))):
        frame = frame.iloc[position]
    return frame.drop(columns=order).reset_index(drop=True)


class PerPatientFrames(Mapping[str, pd.DataFrame]):
    """An endpoint id -> per-patient frame mapping whose frames may be on disk: each is loaded when
    asked for (``stored`` gives the frame's handle without loading it)."""

    def __init__(self, frames: Mapping[str, StoredFrame] | None = None) -> None:
        self._frames: dict[str, StoredFrame] = dict(frames or {})

    def __getitem__(self, key: str) -> pd.DataFrame:
        return self._frames[key].load()

    def __iter__(self) -> Iterator[str]:
        return iter(self._frames)

    def __len__(self) -> int:
        return len(self._frames)

    def __repr__(self) -> str:
        return f"PerPatientFrames({', '.join(f'{k}: {v.rows} rows' for k, v in self._frames.items())})"

    def stored(self, key: str) -> StoredFrame:
        return self._frames[key]


def stored_frame(frames: Mapping[str, pd.DataFrame], key: str) -> StoredFrame | pd.DataFrame:
    """A per-patient frame's handle when it may be on disk, else the frame itself."""
    return frames.stored(key) if isinstance(frames, PerPatientFrames) else frames[key]

