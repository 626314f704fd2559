"""Cutting records into training windows, with a train/validation split that cannot leak.

The split is decided on *segments* (contiguous pieces of a record), never on windows. Each
segment belongs wholly to train or to val, and windows are cut strictly inside one segment, so
no window can contain a base of both splits. Splitting windows after cutting them would let
overlapping windows (stride < window) put the same bases into train and val, inflating validation
scores; cutting inside segments rules that out by construction. It keeps *positions* apart, not
*sequences*: a genome that holds the same sequence twice (a duplicated record, a long repeat) still
gives identical windows on both sides, which `biofm.dna.data` removes from validation.

Two split modes:

* ``record``: whole records go to one side. Right for collections of many independent sequences
  (promoters, genes, many assemblies).
* ``region``: every record is cut into consecutive regions of ``region_bp`` and regions are
  assigned to a side. Right for a single genome with few, long chromosomes. Regions next to each
  other on the same side are merged, so the only bases lost to the split are the partial windows
  at region borders.

Assignment hashes (seed, record name[, region index]), so it is reproducible across runs and does
not depend on the order of records in the file.

Streaming: the split needs only each record's name and length (`plan_split`, fed by a cheap first pass
such as `scan_fasta`), never its bases. `stream_windows` then cuts the same windows, in the same order
and with the same counts, from a record's sequence arriving in pieces, holding at most one piece plus
one window: memory does not depend on how long a record is. `split_segments` and `iter_windows` are
the in-memory forms of the same two steps and share their code.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from biofm.dna.fasta import Record, RecordInfo, reverse_complement
from biofm.errors import BiofmError, where

__all__ = [
    "Segment",
    "SplitPlan",
    "Window",
    "WindowStats",
    "iter_windows",
    "plan_split",
    "split_segments",
    "stream_windows",
]


@dataclass(frozen=True)
class Segment:
    """A contiguous piece of a record assigned to one split; `start` is its offset in the record."""

    record: str
    start: int
    seq: str


@dataclass(frozen=True)
class Window:
    """A training example; `start`/`end` are 0-based half-open coordinates in the source record."""

    record: str
    start: int
    end: int
    strand: str
    seq: str


@dataclass
class WindowStats:
    """Counts filled in by `iter_windows`, so callers can tell the user what the filters removed.

    `kept` counts forward-strand windows that passed the filters; reverse-complement copies are
    not counted again. `skipped_n` are windows over the N limit, `skipped_short` final partial
    windows shorter than `min_bp`.
    """

    kept: int = 0
    skipped_n: int = 0
    skipped_short: int = 0
    bases: int = 0


def _rank(seed: int, *key: object) -> bytes:
    """Stable pseudo-random sort key: Python's hash() is salted per process, so it cannot be used."""
    text = "\x1f".join([str(seed), *map(str, key)])
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()


def _n_val(val_fraction: float, n: int) -> int:
    """How many of `n` units go to val: about the fraction, at least one, never all of them."""
    if val_fraction <= 0 or n < 2:
        return 0
    return min(max(1, round(val_fraction * n)), n - 1)


def _rank_keys(seed: int, keys: Iterable[tuple[object, ...]]) -> np.ndarray:
    """`_rank` of many keys as big-endian uint64, which orders exactly as the digests' bytes do."""
    digests = b"".join(_rank(seed, *key) for key in keys)
    return np.frombuffer(digests, dtype=">u8").astype(np.uint64)


@dataclass(frozen=True, eq=False)  # holds arrays, which have no single truth value to compare by
class SplitPlan:
    """Which stretches of which records are validation, decided from names and lengths alone.

    Records are referred to by their position in the list given to `plan_split`. In record mode
    `val_records` holds the validation records; in region mode `val_regions` holds sorted global
    region ids (record r's region g is `region_offsets[r] + g`), a compact form even for millions of
    regions.
    """

    mode: Literal["record", "region"]
    region_bp: int
    names: tuple[str, ...]
    lengths: tuple[int, ...]
    val_records: frozenset[int] = frozenset()
    val_regions: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    region_offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))

    def runs(self, index: int) -> Iterator[tuple[int, int, bool]]:
        """`(start, end, is_val)` of the maximal same-side stretches of record `index`, in order."""
        length = self.lengths[index]
        if length == 0:
            return
        if self.mode == "record":
            yield 0, length, index in self.val_records
            return
        first = int(self.region_offsets[index])
        n_regions = int(self.region_offsets[index + 1]) - first
        lo, hi = np.searchsorted(self.val_regions, [first, first + n_regions])
        val = (self.val_regions[lo:hi] - first).tolist()
        # Walk the regions where the side changes, merging runs of regions on the same side.
        run_start, run_val, i = 0, False, 0
        for g in range(n_regions):
            is_val = i < len(val) and val[i] == g
            i += is_val
            if g and is_val != run_val:
                yield run_start, g * self.region_bp, run_val
                run_start = g * self.region_bp
            run_val = is_val
        yield run_start, length, run_val

    def split_bp(self) -> tuple[int, int]:
        """Bases assigned to (train, val)."""
        bp = [0, 0]
        for index in range(len(self.lengths)):
            for start, end, is_val in self.runs(index):
                bp[is_val] += end - start
        return bp[0], bp[1]


def plan_split(
    records: Sequence[RecordInfo],
    mode: Literal["record", "region"],
    val_fraction: float,
    region_bp: int,
    seed: int,
) -> SplitPlan:
    """Decide the train/validation split from the records' names and lengths (see module doc).

    Records of length 0 must not be passed: they hold no bases and would still take a rank.
    """
    if mode not in ("record", "region"):
        raise BiofmError(f"split: mode must be 'record' or 'region', got {mode!r}")
    if not 0 <= val_fraction < 1:
        raise BiofmError(f"split: val_fraction must be in [0, 1), got {val_fraction}")
    if mode == "region" and region_bp < 1:
        raise BiofmError(f"split: region_bp must be a positive number of bases, got {region_bp}")
    if not records:
        raise BiofmError("split: no non-empty records to split")
    names = tuple(r.name for r in records)
    lengths = tuple(r.length for r in records)
    if mode == "record":
        if val_fraction > 0 and len(records) == 1:
            r = records[0]
            raise BiofmError(
                f"{r.path}: only one record ({r.name!r}), so split: record cannot hold out a validation "
                f"set; use split: region to hold out regions of it"
            )
        k = _n_val(val_fraction, len(records))
        val: frozenset[int] = frozenset()
        if k:
            order = np.argsort(_rank_keys(seed, ((n,) for n in names)), kind="stable")
            val = frozenset(order[:k].tolist())
        return SplitPlan(mode, region_bp, names, lengths, val_records=val)
    counts = np.array([math.ceil(n / region_bp) for n in lengths], dtype=np.int64)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    total = int(offsets[-1])
    if val_fraction > 0 and total < 2:
        r = records[0]
        raise BiofmError(
            f"{r.path}: {r.length} bp is a single region of split.region_bp={region_bp}, "
            f"so no validation region can be held out; lower region_bp or set val_fraction: 0"
        )
    k = _n_val(val_fraction, total)
    val_regions = np.zeros(0, dtype=np.int64)
    if k:
        keys = ((name, g) for name, n in zip(names, counts.tolist(), strict=True) for g in range(n))
        # Stable: ties (never seen with 64-bit hashes) fall back to file order, as a stable sort would.
        order = np.argsort(_rank_keys(seed, keys), kind="stable")
        val_regions = np.sort(order[:k]).astype(np.int64)
    return SplitPlan(mode, region_bp, names, lengths, val_regions=val_regions, region_offsets=offsets)


def split_segments(
    records: Iterable[Record],
    mode: Literal["record", "region"],
    val_fraction: float,
    region_bp: int,
    seed: int,
) -> tuple[list[Segment], list[Segment]]:
    """Split records held in memory into (train, val) segments; see the module docstring."""
    recs = [r for r in records if r.seq]
    infos = [RecordInfo(r.name, r.description, r.path, r.line, len(r.seq)) for r in recs]
    plan = plan_split(infos, mode, val_fraction, region_bp, seed)
    train: list[Segment] = []
    val: list[Segment] = []
    for i, rec in enumerate(recs):
        for start, end, is_val in plan.runs(i):
            (val if is_val else train).append(Segment(rec.name, start, rec.seq[start:end]))
    return train, val


def _check_window_args(window_bp: int, stride_bp: int, max_n_fraction: float, min_bp: int | None) -> int:
    """Validate window settings up front, so a bad config fails before any data is read; the min_bp."""
    if window_bp < 1:
        raise BiofmError(f"window_bp must be a positive number of bases, got {window_bp}")
    if stride_bp < 1:
        raise BiofmError(f"stride_bp must be a positive number of bases, got {stride_bp}")
    if not 0 <= max_n_fraction <= 1:
        raise BiofmError(f"max_n_fraction must be between 0 and 1, got {max_n_fraction}")
    if min_bp is None:
        min_bp = max(1, window_bp // 2)
    if not 1 <= min_bp <= window_bp:
        raise BiofmError(f"min_bp must be between 1 and window_bp ({window_bp}), got {min_bp}")
    return min_bp


def iter_windows(
    segments: Iterable[Segment],
    window_bp: int,
    stride_bp: int,
    max_n_fraction: float,
    min_bp: int | None = None,
    reverse_complement: bool = False,
    stats: WindowStats | None = None,
) -> Iterator[Window]:
    """Cut windows inside each segment, dropping N-rich windows and too-short tails.

    Windows start at offsets 0, stride, 2*stride, ... of each segment. A last window that would run
    past the segment's end is shortened and kept only if at least `min_bp` long (default half a
    window); it is the only shortened one, as later offsets would give windows inside it.
    Arguments are checked here, before iteration starts, so a bad config fails at once.
    """
    min_bp = _check_window_args(window_bp, stride_bp, max_n_fraction, min_bp)
    return _iter_windows(
        segments,
        window_bp,
        stride_bp,
        max_n_fraction,
        min_bp,
        reverse_complement,
        stats if stats is not None else WindowStats(),
    )


def _iter_windows(
    segments: Iterable[Segment],
    window_bp: int,
    stride_bp: int,
    max_n_fraction: float,
    min_bp: int,
    rc: bool,
    stats: WindowStats,
) -> Iterator[Window]:
    for seg in segments:
        cutter = _Cutter(seg.record, seg.start, seg.start + len(seg.seq), window_bp, stride_bp, max_n_fraction,
                         min_bp, rc, stats)
        yield from cutter.feed(seg.seq)


class _Cutter:
    """Cuts the windows of one segment from its sequence arriving in consecutive pieces.

    The segment's end is known up front (from the split plan), so each window is emitted, or
    skipped, as soon as its bases have arrived, with exactly the rules of a segment held whole. Only
    the bases from the next window's start onwards are kept: less than one window plus one piece.
    """

    def __init__(self, record: str, start: int, end: int, window_bp: int, stride_bp: int,
                 max_n_fraction: float, min_bp: int, rc: bool, stats: WindowStats):
        self.record = record
        self.end = end
        self.window_bp = window_bp
        self.stride_bp = stride_bp
        self.max_n_fraction = max_n_fraction
        self.min_bp = min_bp
        self.rc = rc
        self.stats = stats
        self.buf = ""
        self.buf_start = start  # record coordinate of buf[0]
        self.received = start  # record coordinate up to which bases have arrived
        self.next = start  # record coordinate of the next window's start
        self.done = start >= end

    def feed(self, text: str) -> Iterator[Window]:
        """Take the next `len(text)` bases of the segment and yield every window they complete."""
        pos = self.received
        self.received += len(text)
        if self.done or self.received <= self.next:
            return  # finished, or all of it falls in a gap between windows (stride > window)
        if pos < self.next:  # text starts in such a gap: drop the bases before the next window
            text = text[self.next - pos :]
            pos = self.next
        self.buf = self.buf + text if self.buf else text
        seq, base = self.buf, self.buf_start
        stats = self.stats
        while True:
            start = self.next
            end = start + self.window_bp
            last = end >= self.end
            if last:
                end = self.end
            if end > self.received:
                break  # not all its bases have arrived yet
            if last and end - start < self.min_bp:
                stats.skipped_short += 1
                self.done = True
                break
            size = end - start
            if seq.count("N", start - base, end - base) > self.max_n_fraction * size:
                stats.skipped_n += 1
            else:
                stats.kept += 1
                stats.bases += size
                piece = seq[start - base : end - base]
                yield Window(self.record, start, end, "+", piece)
                if self.rc:
                    yield Window(self.record, start, end, "-", reverse_complement(piece))
            if last:
                self.done = True
                break
            self.next += self.stride_bp
            if self.next >= self.end:
                self.done = True
                break
        # Keep only what later windows can still need.
        if self.done or self.next >= self.received:
            self.buf, self.buf_start = "", max(self.next, self.received)
        elif self.next > base:
            self.buf, self.buf_start = seq[self.next - base :], self.next


def stream_windows(
    pieces: Iterable[tuple[RecordInfo, str]],
    plan: SplitPlan,
    window_bp: int,
    stride_bp: int,
    max_n_fraction: float,
    min_bp: int | None = None,
    reverse_complement: tuple[bool, bool] = (False, False),
    stats: tuple[WindowStats, WindowStats] | None = None,
) -> Iterator[tuple[bool, Window]]:
    """`(is_val, window)` for records arriving as `(record, piece)` pairs, e.g. `read_fasta_chunks`.

    Records must arrive in the order `plan` was made from; consecutive pieces of one record share one
    `RecordInfo` object. The windows of each split, taken in order, are exactly those `split_segments`
    followed by `iter_windows` would give for the same records held whole, and `stats` (train, val)
    get the same counts; `reverse_complement` (train, val) adds reverse strands per split.
    """
    min_bp = _check_window_args(window_bp, stride_bp, max_n_fraction, min_bp)
    stats = stats if stats is not None else (WindowStats(), WindowStats())
    return _stream_windows(pieces, plan, window_bp, stride_bp, max_n_fraction, min_bp, reverse_complement, stats)


def _stream_windows(
    pieces: Iterable[tuple[RecordInfo, str]],
    plan: SplitPlan,
    window_bp: int,
    stride_bp: int,
    max_n_fraction: float,
    min_bp: int,
    rc: tuple[bool, bool],
    stats: tuple[WindowStats, WindowStats],
) -> Iterator[tuple[bool, Window]]:
    current: RecordInfo | None = None
    index = -1
    runs: Iterator[tuple[int, int, bool]] = iter(())
    run: tuple[int, int, bool] = (0, 0, False)
    cutter: _Cutter | None = None
    pos = 0  # record coordinate of the piece's first base
    for info, text in pieces:
        if info is not current:
            if current is not None:
                _check_complete(current, pos, plan.lengths[index])
            current, index, pos = info, index + 1, 0
            if index >= len(plan.names) or plan.names[index] != info.name:
                raise BiofmError(
                    f"{info.path}: record {info.name!r} was not seen when the split was planned "
                    f"(was the file changed while it was being read?)"
                )
            runs = plan.runs(index)
            run, cutter = (0, 0, False), None
        end = pos + len(text)
        # The piece may cover the ends of several runs (regions are often smaller than a piece).
        while pos < end:
            if cutter is None or pos >= run[1]:
                following = next(runs, None)
                if following is None:  # more bases than the plan knows of
                    _check_complete(info, end, plan.lengths[index])
                    raise AssertionError("unreachable: a record that is longer than planned fails above")
                run = following
                is_val = run[2]
                cutter = _Cutter(info.name, run[0], run[1], window_bp, stride_bp, max_n_fraction, min_bp,
                                 rc[is_val], stats[is_val])
            upto = min(end, run[1])
            offset = pos - (end - len(text))
            part = text if offset == 0 and upto == end else text[offset : offset + upto - pos]
            for w in cutter.feed(part):
                yield run[2], w
            pos = upto
    if current is not None:
        _check_complete(current, pos, plan.lengths[index])
    if index + 1 != len(plan.names):
        raise BiofmError(
            f"{current.path if current else 'input'}: fewer records than when the split was planned "
            f"(was the file changed while it was being read?)"
        )


def _check_complete(info: RecordInfo, got: int, expected: int) -> None:
    """Fail if a record's length differs from the first pass: the split would no longer tile it."""
    if got != expected:
        raise BiofmError(
            f"{where(info.path, info.line, info.name)}: {'only ' if got < expected else 'at least '}{got} bp "
            f"now, {expected} bp when the split was planned (was the file changed while it was being read?)"
        )
