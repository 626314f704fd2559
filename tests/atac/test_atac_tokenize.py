"""Peak vocabulary, genomic positions, the token budget, masked-peak queries and the peak-token batch."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from transformers import BertConfig, BertForMaskedLM

from biofm.atac.objectives import PeakTokenObjective
from biofm.atac.tokenize import (
    ACCESSIBLE,
    QUERY,
    PeakVocab,
    aligned_binary,
    budget,
    free_peaks,
    sample_queries,
)
from biofm.errors import BiofmError

CHROM = np.array(["chr1"] * 4 + ["chr2"] * 3 + ["chrX"] * 3)
START = np.array([100, 900_000, 1_200_000, 5_000_000, 50, 2_500_000, 2_600_000, 10, 20_000, 3_000_000])
END = START + 500
SETTINGS = {"max_peaks": 4, "seed": 0, **PeakVocab.layout(CHROM, END, 1_000_000)}


def _vocab() -> PeakVocab:
    return PeakVocab(CHROM, START, END, settings=SETTINGS)


def test_positions_share_a_window_within_a_chromosome_only():
    v = _vocab()
    pos, n_positions = v.positions()
    assert SETTINGS["chromosomes"] == ["chr1", "chr2", "chrX"] and SETTINGS["bins_per_chromosome"] == 6
    assert n_positions == 1 + 3 * 6 and pos.min() >= 1 and pos.max() < n_positions  # 0 is <cls>
    assert pos[0] == pos[1] == 1  # chr1, both in the first megabase
    assert pos[2] == 2 and pos[3] == 6  # chr1 1.2 Mb, 5.0 Mb
    assert pos[4] == 1 + 6 and pos[7] == 1 + 12  # the first window of chr2, of chrX: not chr1's
    assert pos[5] == pos[6] == 1 + 6 + 2


def test_vocab_roundtrip_and_stock_tokenizer(tmp_path):
    from transformers import AutoTokenizer

    v = _vocab()
    v.save(tmp_path)
    back = PeakVocab.load(tmp_path)
    assert back.names.tolist() == v.names.tolist() and back.settings == v.settings
    np.testing.assert_array_equal(back.positions()[0], v.positions()[0])
    tok = AutoTokenizer.from_pretrained(tmp_path)
    ids = tok("chr2_50_550 chr1_100_600 chr9_1_2")["input_ids"]
    assert ids == [v.cls_id, v.offset + 4, v.offset + 0, v.unk_id]


def test_vocab_refuses_duplicates_and_foreign_folders(tmp_path):
    with pytest.raises(BiofmError, match="appears twice"):
        PeakVocab(["chr1", "chr1"], np.array([5, 5]), np.array([9, 9]))
    with pytest.raises(BiofmError, match="not a biofm ATAC model"):
        PeakVocab.load(tmp_path)


def test_align_by_coordinates_whatever_the_order():
    v = _vocab()
    idx, found = v.align(["chrX", "chr1", "chr7"], np.array([10, 100, 1]), np.array([510, 600, 2]))
    assert idx.tolist() == [7, 0, -1] and found.tolist() == [True, True, False]


def test_aligned_binary_remaps_columns_and_reports_coverage():
    class Matrix:  # the fields of a PeakMatrix that alignment reads
        chrom = np.array(["chrX", "chr1", "chr7"])
        start, end = np.array([10, 100, 1]), np.array([510, 600, 2])
        peak_names = np.array(["chrX_10_510", "chr1_100_600", "chr7_1_2"])
        n_peaks = 3

        def binary(self):
            return sp.csr_matrix(np.array([[1, 0, 1], [0, 1, 1]], dtype=np.float32))

    X, coverage = aligned_binary(Matrix(), _vocab(), "f.h5ad")
    assert X.shape == (2, 10) and coverage == pytest.approx(2 / 3)
    assert X[0].indices.tolist() == [7] and X[1].indices.tolist() == [0]

    Matrix.chrom = np.array(["chr7", "chr7", "chr7"])
    with pytest.raises(BiofmError, match=r"f\.h5ad: none of its 3 peaks"):
        aligned_binary(Matrix(), _vocab(), "f.h5ad")


def test_budget_keeps_small_cells_and_samples_large_ones_reproducibly():
    rng = np.random.default_rng(0)
    X = sp.csr_matrix((rng.random((6, 40)) < np.array([0.05, 0.5, 0.9, 0.1, 0.8, 0.02])[:, None]).astype(np.float32))
    kept = budget(X, np.arange(6), 10, seed=3)
    for r in range(6):
        full, k = set(X[r].indices.tolist()), kept[r].indices.tolist()
        assert set(k) <= full and k == sorted(k)
        assert len(k) == min(len(full), 10)
    again = budget(X[[4, 2]], np.array([4, 2]), 10, seed=3)  # a cell keeps its subset in any batch
    assert again[0].indices.tolist() == kept[4].indices.tolist()
    other = budget(X, np.arange(6), 10, seed=4)
    assert other[2].indices.tolist() != kept[2].indices.tolist()


def test_free_peaks_is_the_kth_inaccessible_peak():
    accessible = np.array([0, 1, 4, 7, 8, 9, 13])
    free = np.array([p for p in range(20) if p not in set(accessible.tolist())])
    k = np.arange(len(free))
    np.testing.assert_array_equal(free_peaks(accessible, k), free)


def test_queries_hide_kept_peaks_and_draw_only_inaccessible_ones():
    n_peaks, r_pos, r_neg = 2000, 0.3, 0.02
    accessible = np.sort(np.random.default_rng(1).choice(n_peaks, 300, replace=False))
    kept = accessible[::2]  # half of them survived a budget: the others are neither context nor negatives
    pos, neg = 0, 0
    for i in range(200):
        q = sample_queries(kept, accessible, n_peaks, r_pos, r_neg, np.random.default_rng([0, i]))
        assert np.array_equal(np.sort(np.concatenate([q.observed, q.positives])), kept)
        assert not set(q.observed.tolist()) & set(q.positives.tolist())
        assert not set(q.negatives.tolist()) & set(accessible.tolist())
        assert len(set(q.negatives.tolist())) == len(q.negatives)
        pos, neg = pos + len(q.positives), neg + len(q.negatives)
    # independent selection at the design's rates (the baseline's assumption): within 5 standard errors
    assert abs(pos / (200 * len(kept)) - r_pos) < 5 * np.sqrt(r_pos * (1 - r_pos) / (200 * len(kept)))
    n_free = 200 * (n_peaks - len(accessible))
    assert abs(neg / n_free - r_neg) < 5 * np.sqrt(r_neg * (1 - r_neg) / n_free)


def _objective(n_peaks: int, positions: np.ndarray, r_pos=0.5, r_neg=0.1, **extra) -> PeakTokenObjective:
    cfg = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                     max_position_embeddings=int(positions.max()) + 1, type_vocab_size=3, pad_token_id=0,
                     bos_token_id=2, eos_token_id=4)
    torch.manual_seed(0)
    stats = {"per_peak_logit": np.zeros(n_peaks), "global_logit": 0.0}
    weights = extra.pop("weights", {"masked_peak": 1.0})
    return PeakTokenObjective(BertForMaskedLM(cfg), positions=positions, n_peaks=n_peaks, offset=5, r_pos=r_pos,
                              r_neg=r_neg, weights=weights, stats=stats, temperature=0.1, projection_dim=8,
                              view_dropout=0.5, pooling="mean", peak_prior=True, **extra)


def _rows(obj: PeakTokenObjective, tensors: dict) -> dict[int, dict[str, np.ndarray]]:
    """Each cell's row of the masked input, from the batch's length groups: ids, types, positions and its
    targets (peak, label)."""
    out = {}
    for t in obj.groups(tensors, "m"):
        ids = t["input_ids"].numpy()
        selected = np.zeros(ids.size, dtype=bool)
        peaks = np.zeros(ids.size, dtype=np.int64)
        labels = np.zeros(ids.size)
        if "target_flat" in t:
            flat = t["target_flat"].numpy()
            selected[flat] = True
            peaks[flat], labels[flat] = t["target_peaks"].numpy(), t["target_labels"].numpy()
        for r, cell in enumerate(t["rows"].tolist()):
            sel = selected.reshape(ids.shape)[r]
            out[cell] = {"ids": ids[r], "types": t["token_type_ids"].numpy()[r], "pos": t["position_ids"].numpy()[r],
                         "targets": sel, "peaks": peaks.reshape(ids.shape)[r][sel],
                         "labels": labels.reshape(ids.shape)[r][sel], "width": ids.shape[1]}
    return out


def test_peak_token_batch_hides_exactly_the_targets():
    v = _vocab()
    positions = v.positions()[0]
    X = sp.csr_matrix(np.array([[1, 1, 0, 1, 1, 0, 1, 0, 1, 1],
                                [0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
                                [1, 0, 1, 0, 1, 1, 0, 1, 0, 0]], dtype=np.float32))
    kept = budget(X, np.arange(3), 4, seed=0)  # cell 0 has 7 peaks: 3 fall outside the budget
    obj = _objective(10, positions)
    batch = obj.collate({"full": X, "kept": kept, "cells": np.arange(3)}, np.array([5, 6, 7]), honest=True, seed=1)
    rows = _rows(obj, batch.tensors)
    assert sorted(rows) == [0, 1, 2]
    assert batch.counts["masked_peak"] == sum(len(r["labels"]) for r in rows.values()) > 0
    for r, row in rows.items():
        ids, types, pos = row["ids"], row["types"], row["pos"]
        assert ids[0] == 2 and pos[0] == 0 and types[0] == 0  # <cls>
        real = ids > 4
        assert (types[row["targets"]] == QUERY).all() and (types[real & ~row["targets"]] == ACCESSIBLE).all()
        np.testing.assert_array_equal(row["peaks"], ids[row["targets"]] - 5)
        peaks = ids[real] - 5
        assert (np.diff(peaks) > 0).all()  # genome order
        np.testing.assert_array_equal(pos[real], positions[peaks])
        accessible, kept_r = set(X[r].indices.tolist()), set(kept[r].indices.tolist())
        observed = set((ids[types == ACCESSIBLE] - 5).tolist())
        assert observed <= kept_r  # context holds kept peaks only, never a hidden one
        for peak, label in zip(row["peaks"], row["labels"], strict=True):
            assert label == float(peak in accessible)  # the label is the truth of the hidden peak
            assert peak in kept_r if label else peak not in accessible
            assert peak not in observed
    # a cell's queries depend on its own key, not on the batch it is in
    alone = obj.collate({"full": X[[2]], "kept": kept[[2]], "cells": np.array([2])}, np.array([7]), honest=True,
                        seed=1)
    np.testing.assert_array_equal(_rows(obj, alone.tensors)[0]["ids"], rows[2]["ids"][rows[2]["ids"] != 0])


def test_length_groups_pad_each_group_to_its_own_longest_cell():
    from biofm.atac.objectives import length_groups

    lengths = np.array([300, 20, 25, 310, 22, 30, 24, 28])
    groups = length_groups(lengths, overhead=100)
    assert sorted(np.concatenate(groups).tolist()) == list(range(8))
    padded = sum(len(g) * lengths[g].max() for g in groups)
    assert [sorted(g.tolist()) for g in groups] == [[1, 2, 4, 5, 6, 7], [0, 3]]
    assert padded == 6 * 30 + 2 * 310 < 8 * 310
    assert len(length_groups(lengths, overhead=10**6)) == 1  # a forward pass dearer than any padding
