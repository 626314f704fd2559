"""Cutting records into training windows, with a train/validation split that cannot leak.

The split is decided on *segments* (contiguous pieces of a record), never on windows. Each
segment belongs wholly to train or to val, and windows are cut strictly inside one segment, so
no window can contain a base of both splits. Splitting windows after cutting them would let
overlapping windows (stride < window) put the same bases into train and val, inflating validation
scores; cutting inside segments rules that out by construction.

Two split modes:

* ``record``: whole records go to one side. Right for collections of many independent sequences
  (promoters, genes, many assemblies).
* ``region``: every record is cut into consecutive regions of ``region_bp`` and regions are
  assigned to a side. Right for a single genome with few, long chromosomes. Regions next to each
  other on the same side are merged, so the only bases lost to the split are the partial windows
  at region borders.

Assignment hashes (seed, record name[, region index]), so it is reproducible across runs and does
not depend on the order of records in the file.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from biofm.dna.fasta import Record, reverse_complement
from biofm.errors import BiofmError

__all__ = ["Segment", "Window", "WindowStats", "iter_windows", "split_segments"]


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


def split_segments(
    records: Iterable[Record],
    mode: Literal["record", "region"],
    val_fraction: float,
    region_bp: int,
    seed: int,
) -> tuple[list[Segment], list[Segment]]:
    """Split records into (train, val) segments; see the module docstring for the guarantees."""
    if mode not in ("record", "region"):
        raise BiofmError(f"split: mode must be 'record' or 'region', got {mode!r}")
    if not 0 <= val_fraction < 1:
        raise BiofmError(f"split: val_fraction must be in [0, 1), got {val_fraction}")
    if mode == "region" and region_bp < 1:
        raise BiofmError(f"split: region_bp must be a positive number of bases, got {region_bp}")
    recs = [r for r in records if r.seq]
    if not recs:
        raise BiofmError("split: no non-empty records to split")
    if mode == "record":
        return _split_records(recs, val_fraction, seed)
    return _split_regions(recs, val_fraction, region_bp, seed)


def _split_records(recs: list[Record], val_fraction: float, seed: int) -> tuple[list[Segment], list[Segment]]:
    if val_fraction > 0 and len(recs) == 1:
        r = recs[0]
        raise BiofmError(
            f"{r.path}: only one record ({r.name!r}), so split: record cannot hold out a validation "
            f"set; use split: region to hold out regions of it"
        )
    k = _n_val(val_fraction, len(recs))
    order = sorted(range(len(recs)), key=lambda i: _rank(seed, recs[i].name))
    val_idx = set(order[:k])
    train = [Segment(r.name, 0, r.seq) for i, r in enumerate(recs) if i not in val_idx]
    val = [Segment(r.name, 0, r.seq) for i, r in enumerate(recs) if i in val_idx]
    return train, val


def _split_regions(
    recs: list[Record], val_fraction: float, region_bp: int, seed: int
) -> tuple[list[Segment], list[Segment]]:
    counts = [math.ceil(len(r.seq) / region_bp) for r in recs]
    total = sum(counts)
    if val_fraction > 0 and total < 2:
        raise BiofmError(
            f"{recs[0].path}: {len(recs[0].seq)} bp is a single region of split.region_bp={region_bp}, "
            f"so no validation region can be held out; lower region_bp or set val_fraction: 0"
        )
    k = _n_val(val_fraction, total)
    val_regions: set[tuple[int, int]] = set()
    if k:
        regions = [(ri, gi) for ri, n in enumerate(counts) for gi in range(n)]
        regions.sort(key=lambda rg: _rank(seed, recs[rg[0]].name, rg[1]))
        val_regions = set(regions[:k])
    train: list[Segment] = []
    val: list[Segment] = []
    for ri, rec in enumerate(recs):
        # Walk the regions in order and emit a segment at each change of side, merging runs.
        run_start = 0
        run_val = (ri, 0) in val_regions
        for gi in range(1, counts[ri] + 1):
            is_val = (ri, gi) in val_regions if gi < counts[ri] else not run_val  # force a final flush
            if is_val != run_val:
                end = min(gi * region_bp, len(rec.seq))
                (val if run_val else train).append(Segment(rec.name, run_start, rec.seq[run_start:end]))
                run_start, run_val = end, is_val
    return train, val


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
        seq = seg.seq
        length = len(seq)
        offset = 0
        while offset < length:
            end = offset + window_bp
            last = end >= length
            if last:
                end = length
                if end - offset < min_bp:
                    stats.skipped_short += 1
                    break
            size = end - offset
            if seq.count("N", offset, end) > max_n_fraction * size:
                stats.skipped_n += 1
            else:
                stats.kept += 1
                stats.bases += size
                piece = seq[offset:end]
                start = seg.start + offset
                yield Window(seg.record, start, seg.start + end, "+", piece)
                if rc:
                    yield Window(seg.record, start, seg.start + end, "-", reverse_complement(piece))
            if last:
                break
            offset += stride_bp
