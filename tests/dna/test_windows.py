from __future__ import annotations

import itertools
import random

import pytest

from biofm.dna.fasta import Record, reverse_complement
from biofm.dna.windows import Segment, Window, WindowStats, iter_windows, split_segments
from biofm.errors import BiofmError


def rec(name: str, seq: str) -> Record:
    return Record(name=name, description=name, seq=seq, path="g.fa", line=1)


def random_seq(n: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice("ACGT") for _ in range(n))


def covered(windows: list[Window]) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for w in windows:
        out.setdefault(w.record, set()).update(range(w.start, w.end))
    return out


def assert_no_leak(train: list[Segment], val: list[Segment], window_bp: int, stride_bp: int) -> None:
    tw = list(iter_windows(train, window_bp, stride_bp, 1.0, min_bp=1))
    vw = list(iter_windows(val, window_bp, stride_bp, 1.0, min_bp=1))
    assert tw and vw
    t, v = covered(tw), covered(vw)
    for name in t.keys() & v.keys():
        assert not t[name] & v[name], f"train and val windows overlap on {name}"


# --- split ---------------------------------------------------------------------------------------


def test_record_mode_no_leak_and_complete() -> None:
    recs = [rec(f"r{i}", random_seq(200, i)) for i in range(10)]
    train, val = split_segments(recs, "record", 0.3, 1000, seed=1)
    assert len(val) == 3 and len(train) == 7
    assert {s.record for s in train}.isdisjoint({s.record for s in val})
    assert all(s.start == 0 for s in train + val)
    assert_no_leak(train, val, 50, 10)


def test_record_mode_at_least_one_val() -> None:
    recs = [rec("a", "ACGT" * 10), rec("b", "ACGT" * 10)]
    train, val = split_segments(recs, "record", 0.01, 1000, seed=0)
    assert len(val) == 1 and len(train) == 1


def test_record_mode_single_record_error() -> None:
    with pytest.raises(BiofmError, match=r"g\.fa.*'only'.*split: region"):
        split_segments([rec("only", "ACGT" * 10)], "record", 0.1, 1000, seed=0)


def test_record_mode_independent_of_order() -> None:
    recs = [rec(f"r{i}", "ACGT") for i in range(20)]
    _, val1 = split_segments(recs, "record", 0.2, 10, seed=5)
    _, val2 = split_segments(list(reversed(recs)), "record", 0.2, 10, seed=5)
    assert {s.record for s in val1} == {s.record for s in val2}


def test_region_mode_no_leak_and_fraction() -> None:
    recs = [rec("chr1", random_seq(10_000, 1)), rec("chr2", random_seq(5_050, 2))]
    train, val = split_segments(recs, "region", 0.2, 500, seed=3)
    # 20 + 11 regions -> round(0.2 * 31) = 6 val regions
    val_bp = sum(len(s.seq) for s in val)
    assert 5 * 500 <= val_bp <= 6 * 500
    # segments tile each record exactly, with no gaps and no overlaps
    for r in recs:
        segs = sorted((s for s in train + val if s.record == r.name), key=lambda s: s.start)
        assert segs[0].start == 0
        for a, b in itertools.pairwise(segs):
            assert a.start + len(a.seq) == b.start
        assert "".join(s.seq for s in segs) == r.seq
    # adjacent regions of the same split are merged
    for side in (train, val):
        ends = {(s.record, s.start + len(s.seq)) for s in side}
        assert not any((s.record, s.start) in ends for s in side)
    assert_no_leak(train, val, 300, 37)


def test_region_mode_single_record_works() -> None:
    train, val = split_segments([rec("chrI", random_seq(3_000))], "region", 0.1, 1000, seed=0)
    assert len(val) == 1 and len(val[0].seq) == 1000
    assert_no_leak(train, val, 100, 50)


def test_region_mode_single_region_error() -> None:
    with pytest.raises(BiofmError, match="region_bp"):
        split_segments([rec("chrI", "ACGT" * 10)], "region", 0.1, 1000, seed=0)


def test_zero_val_fraction() -> None:
    train, val = split_segments([rec("x", "ACGT" * 100)], "region", 0.0, 100, seed=0)
    assert val == [] and train == [Segment("x", 0, "ACGT" * 100)]


def test_split_deterministic_and_seed_dependent() -> None:
    recs = [rec(f"chr{i}", random_seq(2_000, i)) for i in range(5)]
    a = split_segments(recs, "region", 0.25, 100, seed=7)
    b = split_segments(recs, "region", 0.25, 100, seed=7)
    c = split_segments(recs, "region", 0.25, 100, seed=8)
    assert a == b
    assert a != c


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"mode": "bogus"}, "mode"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"val_fraction": -0.1}, "val_fraction"),
        ({"region_bp": 0}, "region_bp"),
    ],
)
def test_split_bad_arguments(kwargs: dict[str, object], needle: str) -> None:
    args: dict[str, object] = {"mode": "region", "val_fraction": 0.1, "region_bp": 10, "seed": 0} | kwargs
    with pytest.raises(BiofmError, match=needle):
        split_segments([rec("x", "ACGT" * 10)], **args)  # type: ignore[arg-type]


# --- windows -------------------------------------------------------------------------------------


def test_stride_and_coordinates() -> None:
    seg = Segment("chr1", 1000, random_seq(100))
    ws = list(iter_windows([seg], 40, 30, 0.0))
    # offsets 0, 30 full; 60 -> [60, 100) length 40 is full too and ends the segment
    assert [(w.start, w.end) for w in ws] == [(1000, 1040), (1030, 1070), (1060, 1100)]
    for w in ws:
        assert w.seq == seg.seq[w.start - 1000 : w.end - 1000]
        assert w.strand == "+"


def test_min_bp_tail() -> None:
    seg = Segment("x", 0, "A" * 110)
    stats = WindowStats()
    ws = list(iter_windows([seg], 50, 50, 0.0, stats=stats))  # tail of 10 < default min 25
    assert [(w.start, w.end) for w in ws] == [(0, 50), (50, 100)]
    assert stats.skipped_short == 1
    ws = list(iter_windows([seg], 50, 50, 0.0, min_bp=10))
    assert [(w.start, w.end) for w in ws] == [(0, 50), (50, 100), (100, 110)]


def test_only_one_short_tail_window() -> None:
    ws = list(iter_windows([Segment("x", 0, "A" * 115)], 50, 10, 0.0, min_bp=1))
    assert (ws[-2].start, ws[-2].end) == (60, 110)
    assert (ws[-1].start, ws[-1].end) == (70, 115)
    assert [w for w in ws if w.end - w.start < 50] == [ws[-1]]


def test_short_segment() -> None:
    assert [(w.start, w.end) for w in iter_windows([Segment("x", 5, "ACGTACGT")], 10, 5, 0.0)] == [(5, 13)]
    assert list(iter_windows([Segment("x", 5, "ACGT")], 10, 5, 0.0)) == []


def test_n_filter_and_stats() -> None:
    seq = "ACGT" * 5 + "N" * 20 + "ACGTNACGTN" * 2  # windows of 20: 0 N, 20 N, 4 N
    stats = WindowStats()
    ws = list(iter_windows([Segment("x", 0, seq)], 20, 20, 0.1, stats=stats))
    assert [w.start for w in ws] == [0]
    assert stats.kept == 1 and stats.skipped_n == 2 and stats.bases == 20
    ws = list(iter_windows([Segment("x", 0, seq)], 20, 20, 0.2))
    assert [w.start for w in ws] == [0, 40]


def test_reverse_complement_windows() -> None:
    seg = Segment("x", 0, "AACCGGTTAC")
    stats = WindowStats()
    ws = list(iter_windows([seg], 5, 5, 0.0, reverse_complement=True, stats=stats))
    assert [(w.start, w.strand, w.seq) for w in ws] == [
        (0, "+", "AACCG"),
        (0, "-", reverse_complement("AACCG")),
        (5, "+", "GTTAC"),
        (5, "-", reverse_complement("GTTAC")),
    ]
    assert stats.kept == 2


@pytest.mark.parametrize(
    ("args", "needle"),
    [((0, 1, 0.0), "window_bp"), ((10, 0, 0.0), "stride_bp"), ((10, 1, 1.5), "max_n_fraction")],
)
def test_window_bad_arguments(args: tuple[int, int, float], needle: str) -> None:
    with pytest.raises(BiofmError, match=needle):
        iter_windows([], *args)


def test_window_bad_min_bp() -> None:
    with pytest.raises(BiofmError, match="min_bp"):
        iter_windows([], 10, 5, 0.0, min_bp=11)
