"""Streaming a DNA build: same windows as the in-memory path, sharded output, bounded memory.

The in-memory reference below is a frozen copy of the split and windowing code as it was before
streaming existed, so the equivalence test keeps guarding against drift even though the library's
own `split_segments` / `iter_windows` now share code with the streaming path.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import biofm.data.blocks as blocks
import biofm.dna.data as dnadata
from biofm.data.blocks import BlockWriter, ColumnWriter, open_blocks, open_columns, shard_paths, token_counts
from biofm.dna.config import DnaDataConfig
from biofm.dna.fasta import Record, read_fasta, read_fasta_chunks, reverse_complement, scan_fasta
from biofm.dna.tokenizer import KmerTokenizer
from biofm.dna.windows import Segment, WindowStats, iter_windows, plan_split, split_segments, stream_windows
from biofm.errors import BiofmError

# --- frozen in-memory reference ------------------------------------------------------------------


def _rank(seed: int, *key: object) -> bytes:
    text = "\x1f".join([str(seed), *map(str, key)])
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()


def _n_val(val_fraction: float, n: int) -> int:
    if val_fraction <= 0 or n < 2:
        return 0
    return min(max(1, round(val_fraction * n)), n - 1)


def ref_split(recs: list[Record], mode: str, val_fraction: float, region_bp: int, seed: int):
    recs = [r for r in recs if r.seq]
    if mode == "record":
        k = _n_val(val_fraction, len(recs))
        order = sorted(range(len(recs)), key=lambda i: _rank(seed, recs[i].name))
        val_idx = set(order[:k])
        train = [Segment(r.name, 0, r.seq) for i, r in enumerate(recs) if i not in val_idx]
        val = [Segment(r.name, 0, r.seq) for i, r in enumerate(recs) if i in val_idx]
        return train, val
    counts = [math.ceil(len(r.seq) / region_bp) for r in recs]
    k = _n_val(val_fraction, sum(counts))
    val_regions: set[tuple[int, int]] = set()
    if k:
        regions = [(ri, gi) for ri, n in enumerate(counts) for gi in range(n)]
        regions.sort(key=lambda rg: _rank(seed, recs[rg[0]].name, rg[1]))
        val_regions = set(regions[:k])
    train, val = [], []
    for ri, rec in enumerate(recs):
        run_start = 0
        run_val = (ri, 0) in val_regions
        for gi in range(1, counts[ri] + 1):
            is_val = (ri, gi) in val_regions if gi < counts[ri] else not run_val
            if is_val != run_val:
                end = min(gi * region_bp, len(rec.seq))
                (val if run_val else train).append(Segment(rec.name, run_start, rec.seq[run_start:end]))
                run_start, run_val = end, is_val
    return train, val


def ref_windows(segments, window_bp, stride_bp, max_n_fraction, min_bp, rc, stats):
    out = []
    for seg in segments:
        seq, length, offset = seg.seq, len(seg.seq), 0
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
                out.append((seg.record, seg.start + offset, seg.start + end, "+", piece))
                if rc:
                    out.append((seg.record, seg.start + offset, seg.start + end, "-", reverse_complement(piece)))
            if last:
                break
            offset += stride_bp
    return out


# --- helpers -------------------------------------------------------------------------------------


def write_genome(path: Path, seed: int = 0) -> Path:
    """Several records of different lengths and line widths, N runs, soft-masking, an empty record."""
    rng = np.random.default_rng(seed)
    parts = []
    for r, (length, width) in enumerate([(23_456, 60), (9_001, 80), (150, 70), (0, 60), (31_337, 1000), (4_000, 61)]):
        seq = bytearray(np.frombuffer(b"ACGTacgt", np.uint8)[rng.integers(0, 8, length)].tobytes())
        for start in rng.integers(0, max(1, length - 400), 3 if length > 1000 else 0).tolist():
            n = int(rng.integers(1, 400))
            seq[start : start + n] = b"n" * n
        text = seq.decode()
        lines = "\n".join(text[i : i + width] for i in range(0, len(text), width))
        parts.append(f">rec{r} some description\n{lines}\n" if length else f">rec{r}\n\n")
    path.write_text("".join(parts))
    return path


def as_tuples(windows) -> list[tuple[str, int, int, str, str]]:
    return [(w.record, w.start, w.end, w.strand, w.seq) for w in windows]


# --- equivalence ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["record", "region"])
@pytest.mark.parametrize(("window", "stride"), [(500, 170), (300, 450)])
def test_streaming_windows_match_in_memory_reference(tmp_path: Path, mode: str, window: int, stride: int) -> None:
    path = write_genome(tmp_path / "g.fa")
    recs = list(read_fasta(path))
    region_bp, seed, max_n, min_bp = 2_000, 3, 0.1, 290
    ref_train_seg, ref_val_seg = ref_split(recs, mode, 0.25, region_bp, seed)
    ref_stats = (WindowStats(), WindowStats())
    ref = (ref_windows(ref_train_seg, window, stride, max_n, min_bp, True, ref_stats[0]),
           ref_windows(ref_val_seg, window, stride, max_n, min_bp, False, ref_stats[1]))
    assert ref[0] and ref[1] and ref_stats[0].skipped_n and ref_stats[0].skipped_short + ref_stats[1].skipped_short

    # The library's in-memory functions still give the reference result.
    train_seg, val_seg = split_segments(recs, mode, 0.25, region_bp, seed)  # type: ignore[arg-type]
    assert (train_seg, val_seg) == (ref_train_seg, ref_val_seg)
    stats = WindowStats()
    assert as_tuples(iter_windows(train_seg, window, stride, max_n, min_bp, True, stats)) == ref[0]
    assert stats == ref_stats[0]

    infos = scan_fasta(path)
    assert [(i.name, i.length) for i in infos] == [(r.name, len(r.seq)) for r in recs]
    plan = plan_split(infos, mode, 0.25, region_bp, seed)  # type: ignore[arg-type]
    assert plan.split_bp() == (sum(len(s.seq) for s in ref_train_seg), sum(len(s.seq) for s in ref_val_seg))
    # Pieces much smaller than a window, about a window, and the whole record.
    for chunk in (97, 1_000, 1 << 22):
        got: tuple[list, list] = ([], [])
        got_stats = (WindowStats(), WindowStats())
        for is_val, w in stream_windows(read_fasta_chunks(path, chunk), plan, window, stride, max_n, min_bp,
                                        reverse_complement=(True, False), stats=got_stats):
            got[is_val].append((w.record, w.start, w.end, w.strand, w.seq))
        assert got == ref, chunk
        assert got_stats == ref_stats, chunk


def test_stream_refuses_a_file_that_changed_since_the_plan(tmp_path: Path) -> None:
    path = tmp_path / "g.fa"
    path.write_text(">a\n" + "ACGT" * 100 + "\n>b\n" + "ACGT" * 100 + "\n")
    plan = plan_split(scan_fasta(path), "region", 0.2, 100, 0)
    path.write_text(">a\n" + "ACGT" * 101 + "\n>b\n" + "ACGT" * 100 + "\n")
    with pytest.raises(BiofmError, match="changed while") as exc:
        list(stream_windows(read_fasta_chunks(path), plan, 50, 50, 0.1))
    assert "\n" not in str(exc.value)


# --- chunked reader ------------------------------------------------------------------------------


def chunked(path: Path, chunk: int) -> list[tuple[str, str, int, str]]:
    out: list[list] = []
    current = None
    for info, piece in read_fasta_chunks(path, chunk):
        assert piece and len(piece) <= chunk + 1
        if info is not current:
            out.append([info.name, info.description, info.line, ""])
            current = info
        out[-1][3] += piece
    return [tuple(x) for x in out]


@pytest.mark.parametrize("gz", [False, True])
def test_chunked_reader_joins_to_read_fasta_for_any_chunk_size(tmp_path: Path, gz: bool) -> None:
    text = b"\xef\xbb\xbf\r\n>a one\r\nac GT\r\n\r\nAC\tgu\r\n>empty\n>b\nRYN\n>a dup\nACGTACGTAC\nGG"
    path = tmp_path / "t.fa"
    path.write_bytes(gzip.compress(text) if gz else text)
    whole = [(r.name, r.description, r.line, r.seq) for r in read_fasta(path)]
    assert whole == [("a", "a one", 2, "ACGTACGT"), ("b", "b", 7, "NNN"), ("a", "a dup", 9, "ACGTACGTACGG")]
    for chunk in (1, 2, 3, 5, 8, 64):
        assert chunked(path, chunk) == whole, chunk


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (b">x\nACGT\nAC\r\nGGTAJ\n", "line 4 (record 'x'): invalid character 'J' (column 5)"),
        (b">x\nACGTACGTACGTACGTA*\n", "line 2 (record 'x'): invalid character '*' (column 18)"),
        (b"\nACGT\n>a\nAC\n", "line 2: not a FASTA file: sequence data before"),
        (b"   A\x00C\n>a\nAC\n", "line 1: not a FASTA file (binary data)"),
        (b">a\n\n>b\n", "all 2 record(s) have an empty sequence"),
        (b">a\nAC\n>  \nAC\n", "line 3: header '>' has no record name"),
    ],
)
def test_chunked_reader_errors_do_not_depend_on_chunk_size(tmp_path: Path, text: bytes, needle: str) -> None:
    path = tmp_path / "bad.fa"
    path.write_bytes(text)
    for chunk in (1, 3, 7, 1 << 22):
        with pytest.raises(BiofmError) as exc:
            list(read_fasta_chunks(path, chunk))
        assert needle in str(exc.value) and "\n" not in str(exc.value), chunk


# --- sharded blocks ------------------------------------------------------------------------------


def test_block_writer_rolls_over_and_reads_back_as_one_view(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 1000, size=(1000, 16)).astype(np.int16)
    w = BlockWriter(tmp_path / "train.arrow", 16, "int16", shard_bytes=300 * 16 * 2)  # 300 rows a shard
    for start in range(0, 1000, 130):
        w.write(data[start : start + 130])
    w.close()
    assert (w.rows, w.shards) == (1000, 4)
    assert not (tmp_path / "train.arrow").exists()
    assert [p.name for p in shard_paths(tmp_path / "train.arrow")] == [f"train-0000{i}.arrow" for i in range(4)]
    view = open_blocks(tmp_path / "train.arrow")
    assert view.shape == (1000, 16) and len(view) == 1000
    idx = rng.permutation(1000)
    assert (view[idx] == data[idx]).all()
    assert (view[5:905:7] == data[5:905:7]).all() and (view[999] == data[999]).all()
    assert (np.concatenate(list(view.iter_chunks())) == data).all()
    assert (token_counts(view, 1000) == np.bincount(data.ravel(), minlength=1000)).all()
    assert len(view.dataset) == 1000

    # A folder of shards opens too; a small write stays one plain file, as before sharding.
    folder = tmp_path / "folder"
    folder.mkdir()
    for p in shard_paths(tmp_path / "train.arrow"):
        os.link(p, folder / p.name)
    assert (open_blocks(folder)[idx] == data[idx]).all()
    small = BlockWriter(tmp_path / "val.arrow", 16, "int16")
    small.write(data[:10])
    small.close()
    assert (tmp_path / "val.arrow").is_file() and small.shards == 1
    assert (open_blocks(tmp_path / "val.arrow")[np.arange(10)] == data[:10]).all()

    # Rewriting the same name drops the shards of the earlier write.
    again = BlockWriter(tmp_path / "train.arrow", 16, "int16")
    again.write(data[:3])
    again.close()
    assert shard_paths(tmp_path / "train.arrow") == [tmp_path / "train.arrow"]
    assert not list(tmp_path.glob("train-*.arrow"))
    with pytest.raises(FileNotFoundError):
        open_blocks(tmp_path / "nothing.arrow")


def test_column_writer_rolls_over(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 50, size=(500, 8)).astype(np.int32)
    scalar = rng.random(500).astype(np.float32)
    w = ColumnWriter(tmp_path / "cells.arrow", {"ids": (8, "int32"), "x": (None, "float32")}, shard_bytes=100 * 36)
    for start in range(0, 500, 64):
        w.write({"ids": ids[start : start + 64], "x": scalar[start : start + 64]})
    w.close()
    assert (w.rows, w.shards) == (500, 5)
    view = open_columns(tmp_path / "cells.arrow")
    idx = rng.permutation(500)
    got = view[idx]
    assert len(view) == 500 and view.columns == {"ids": (8, "int32"), "x": (0, "float32")}
    assert (got["ids"] == ids[idx]).all() and (got["x"] == scalar[idx]).all()
    assert (np.concatenate(list(view.column("ids"))) == ids).all()


def test_build_blocks_sharded_equals_single_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_genome(tmp_path / "g.fa")
    tok = KmerTokenizer(3)

    def build(cache: str):
        cfg = DnaDataConfig(fasta=[str(path)], cache_dir=str(tmp_path / cache), region_bp=2_000, val_fraction=0.2,
                            stride_bp=40, reverse_complement=True, pack=False)  # one window per block
        return dnadata.build_blocks(cfg, tok, block=33, seed=0)

    one = build("one")
    monkeypatch.setattr(blocks, "SHARD_BYTES", 100 * 33 * 2)  # 100 rows a shard
    many = build("many")
    assert one.meta["shards"] == {"train": 1, "val": 1}
    assert many.meta["shards"]["train"] > 5 and many.meta["shards"]["val"] > 1
    for a, b in ((one.train, many.train), (one.val, many.val)):
        assert a.shape == b.shape and (a[np.arange(len(a))] == b[np.arange(len(b))]).all()
    counted = token_counts(many.train, tok.vocab_size)
    counted[tok.pad_id] = 0  # padding is not counted as data
    assert (many.counts == counted).all() and (many.counts == one.counts).all()
    assert {k: v for k, v in one.meta.items() if k != "shards"} == {
        k: v for k, v in many.meta.items() if k != "shards"
    }
    # The meta statistics are the reference split's.
    recs = list(read_fasta(path))
    ref_train, ref_val = ref_split(recs, "region", 0.2, 2_000, 0)
    assert one.meta["train_bp"] == sum(len(s.seq) for s in ref_train)
    assert one.meta["val_bp"] == sum(len(s.seq) for s in ref_val)
    ref_stats = WindowStats()
    n_ref = len(ref_windows(ref_train, 96, 40, 0.1, 48, True, ref_stats))
    assert one.meta["train"] == {"blocks": n_ref, **vars(ref_stats)}
    monkeypatch.setattr(dnadata, "encode_windows", None)  # a rerun must come from the cache, sharded or not
    assert len(build("many").train) == len(many.train)


# --- larger than memory --------------------------------------------------------------------------

LINE = 80
BLOCK_LINES = 13_107  # 1,048,560 bases per repeated block
TARGET_BYTES = 1_500_000_000

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    from pathlib import Path

    import numpy as np

    from biofm.dna.config import DnaDataConfig
    from biofm.dna.data import build_blocks
    from biofm.dna.tokenizer import KmerTokenizer

    big, work, headroom = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    tok = KmerTokenizer(6)

    def cfg(fasta, cache):
        return DnaDataConfig(fasta=[str(fasta)], cache_dir=str(work / cache), split="region")

    # Warm up: the same code path on a tiny file, so lazily loaded modules and pools are already
    # counted in the virtual size that the limit is set from.
    tiny = work / "tiny.fa"
    tiny.write_text(">t\\n" + "ACGT" * 75_000 + "\\n")
    build_blocks(cfg(tiny, "warm"), tok, 512, seed=0)

    def vm(field: str = "VmSize") -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no {field} in /proc/self/status")

    vm_before = vm()
    limit = vm_before + headroom
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))

    # Control: loading the file whole must not fit under this limit.
    try:
        with open(big, "rb") as fh:
            data = fh.read()
        control = f"read {len(data)} bytes"
        del data
    except MemoryError:
        control = "MemoryError"

    t0 = time.perf_counter()
    b = build_blocks(cfg(big, "cache"), tok, 512, seed=0)
    seconds = time.perf_counter() - t0
    first = b.train[0][0]
    print(json.dumps({
        "vm": vm_before, "limit": limit, "control": control, "seconds": seconds, "meta": b.meta,
        "len_train": len(b.train), "len_val": len(b.val), "counts_sum": int(b.counts.sum()),
        "first_row_cls": bool(first[0] == tok.cls_id), "peak_vm": vm("VmPeak"),
    }))
    """
)


def write_big_fasta(path: Path, target_bytes: int) -> int:
    """One record of ~target_bytes: a random 1 Mb block with two N runs, repeated; returns its bases."""
    rng = np.random.default_rng(0)
    bases = BLOCK_LINES * LINE
    seq = np.frombuffer(b"ACGT", np.uint8)[rng.integers(0, 4, bases)].copy()
    seq[100_000:105_000] = ord("N")
    seq[700_000:700_700] = ord("N")
    block = seq.reshape(BLOCK_LINES, LINE)
    text = np.concatenate([block, np.full((BLOCK_LINES, 1), ord("\n"), np.uint8)], axis=1).tobytes()
    repeats = max(1, target_bytes // len(text))
    with open(path, "wb") as fh:
        fh.write(b">chrBig synthetic\n")
        for _ in range(repeats):
            fh.write(text)
    return repeats * bases


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc/self/status are Linux's")
def test_build_streams_a_file_larger_than_the_memory_limit(tmp_path: Path) -> None:
    big = tmp_path / "big.fa"
    work = tmp_path / "work"
    work.mkdir()
    headroom = 1 << 30
    try:
        t0 = time.perf_counter()
        total_bp = write_big_fasta(big, TARGET_BYTES)
        size = big.stat().st_size
        assert size > headroom  # so reading it whole cannot fit
        t_write = time.perf_counter() - t0
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(big), str(work), str(headroom)],
            capture_output=True, text=True, timeout=600, env={**os.environ, "MALLOC_ARENA_MAX": "2"},
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"\nfile {size / 1e9:.2f} GB written in {t_write:.1f}s; VmSize {out['vm'] / 2**30:.2f} GiB, "
              f"limit {out['limit'] / 2**30:.2f} GiB (peak VmSize {out['peak_vm'] / 2**30:.2f} GiB); "
              f"control: {out['control']}; build {out['seconds']:.1f}s; "
              f"{out['len_train']} + {out['len_val']} blocks in {out['meta']['shards']} shards")
        assert out["control"] == "MemoryError"
        meta = out["meta"]
        assert meta["train_bp"] + meta["val_bp"] == total_bp
        window = 511 * 6
        # the genome repeats one block, so most validation windows copy a training one and are dropped
        considered = (sum(meta[s]["kept"] + meta[s]["skipped_n"] for s in ("train", "val"))
                      + meta["val_duplicates_removed"])
        regions = math.ceil(total_bp / 100_000)
        max_segments = 2 * round(0.05 * regions) + 1  # every run boundary can cut at most one window
        assert abs(considered - total_bp / window) <= max_segments + 1
        # packed: a full window without N fills one block; N spills into the next, short ends share one
        # (validation keeps mostly the windows with N, as the others copy training ones: more short ends share)
        for split, slack in (("train", 0.02), ("val", 0.05)):
            assert out[f"len_{split}"] == meta[split]["blocks"]
            assert abs(meta[split]["blocks"] - meta[split]["kept"]) < slack * meta[split]["kept"]
        assert meta["train"]["skipped_n"] > 0 and meta["shards"]["train"] >= 2
        assert 0 <= out["len_train"] * 512 - out["counts_sum"] < 512 and out["first_row_cls"]  # padded tail only
    finally:  # pytest keeps recent tmp folders; do not leave gigabytes behind
        big.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
