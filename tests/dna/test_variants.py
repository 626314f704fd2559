import gzip
import hashlib
import math
import os
import random
from pathlib import Path

import pytest
import torch

from biofm.dna.fasta import read_fasta
from biofm.dna.tokenizer import KmerTokenizer
from biofm.dna.variants import (
    NOTE_INDEL,
    NOTE_N_ALLELE,
    OUTPUT_COLUMNS,
    IndexedReference,
    prepare,
    read_variants,
    score_batch,
    score_variants,
    window_bounds,
)
from biofm.errors import BiofmError
from biofm.models.load import load_masked_lm
from biofm.models.presets import build_config, build_model
from biofm.models.published import context_length

K = 3
CHR1_LEN, CHR2_LEN = 400, 150


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("run") / "model"
    tok = KmerTokenizer(K, model_max_length=64)
    cfg = build_config(
        "tiny",
        vocab_size=tok.vocab_size,
        pad_id=tok.pad_id,
        mask_id=tok.mask_id,
        cls_id=tok.cls_id,
        eos_id=tok.eos_id,
        max_len=64,
    )
    build_model(cfg, seed=1).save_pretrained(path)
    tok.save(path)
    return path


@pytest.fixture(scope="module")
def genome() -> dict[str, str]:
    rng = random.Random(0)
    chr1 = list("".join(rng.choice("ACGT") for _ in range(CHR1_LEN)))
    chr1[200:203] = "NNN"  # N run close to the variant at pos 205
    return {"chr1": "".join(chr1), "chr2": "".join(rng.choice("ACGT") for _ in range(CHR2_LEN))}


def write_fasta(path: Path, genome: dict[str, str]) -> Path:
    path.write_text("".join(f">{name} test\n{seq[:60]}\n{seq[60:]}\n" for name, seq in genome.items()))
    return path


def write_table(path: Path, rows: list[tuple], header: str = "id\tchrom\tpos\tref\talt", sep: str = "\t") -> Path:
    lines = [header] + [sep.join(str(c) for c in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def other(base: str) -> str:
    return {"A": "C", "C": "G", "G": "T", "T": "A"}[base]


def snv(genome, chrom: str, pos: int, name: str = "v") -> tuple:
    ref = genome[chrom][pos - 1]
    return (name, chrom, pos, ref, other(ref))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_scores_one_row_per_variant_and_writes_tsv(tmp_path, model_dir, genome):
    ref_fa = write_fasta(tmp_path / "ref.fa", genome)
    g1 = genome["chr1"]
    rows = [
        snv(genome, "chr1", 1, "first_base"),
        snv(genome, "chr1", CHR1_LEN, "last_base"),
        snv(genome, "chr2", 75, "mid_chr2"),
        snv(genome, "chr1", 205, "next_to_N"),
        ("mnv", "chr1", 50, g1[49:52], "".join(other(b) for b in g1[49:52])),
        ("indel", "chr1", 100, g1[99:101], g1[99]),
        ("n_alt", "chr1", 120, g1[119], "N"),
    ]
    variants = write_table(tmp_path / "variants.tsv", rows)
    before = (digest(variants), digest(ref_fa))
    out = tmp_path / "scores.tsv"

    result = score_variants(model_dir, ref_fa, variants, out)

    assert [r["id"] for r in result] == [r[0] for r in rows]
    for r in result[:5]:
        assert math.isfinite(r["llr"]) and r["note"] == ""
        assert r["llr"] == pytest.approx(r["alt_logp"] - r["ref_logp"])
        assert r["ref_logp"] < 0 and r["alt_logp"] < 0
    indel, n_alt = result[5], result[6]
    assert math.isnan(indel["llr"]) and math.isnan(indel["ref_logp"]) and indel["note"] == NOTE_INDEL
    assert math.isnan(n_alt["llr"]) and n_alt["note"] == NOTE_N_ALLELE
    for r in result:
        assert 0.0 <= r["embedding_cosine_distance"] <= 2.0
    assert result[0]["embedding_cosine_distance"] > 0

    lines = out.read_text().splitlines()
    assert lines[0].split("\t") == ["id", "chrom", "pos", "ref", "alt", *OUTPUT_COLUMNS]
    assert len(lines) == 1 + len(rows)
    first = dict(zip(lines[0].split("\t"), lines[1].split("\t"), strict=True))
    assert first["id"] == "first_base" and float(first["llr"]) == pytest.approx(result[0]["llr"], abs=1e-5)
    assert lines[6].split("\t")[5] == "nan"
    assert (digest(variants), digest(ref_fa)) == before


def test_swapping_ref_and_alt_on_the_alt_genome_flips_the_sign(tmp_path, model_dir, genome):
    pos = 77
    ref_base = genome["chr1"][pos - 1]
    alt_base = other(ref_base)
    alt_genome = dict(genome, chr1=genome["chr1"][: pos - 1] + alt_base + genome["chr1"][pos:])
    fwd = score_variants(
        model_dir,
        write_fasta(tmp_path / "ref.fa", genome),
        write_table(tmp_path / "fwd.tsv", [("a", "chr1", pos, ref_base, alt_base)]),
        tmp_path / "fwd_out.tsv",
    )[0]
    back = score_variants(
        model_dir,
        write_fasta(tmp_path / "alt.fa", alt_genome),
        write_table(tmp_path / "back.tsv", [("a", "chr1", pos, alt_base, ref_base)]),
        tmp_path / "back_out.tsv",
    )[0]
    assert fwd["llr"] != 0
    assert back["llr"] == pytest.approx(-fwd["llr"], abs=1e-5)
    assert back["embedding_cosine_distance"] == pytest.approx(fwd["embedding_cosine_distance"], abs=1e-5)


def test_llr_matches_a_direct_forward_pass(tmp_path, model_dir, genome):
    pos, window_bp = 300, 30  # 1-based; window = bases [284, 314) 0-based: 15 bases before the SNV, 14 after
    ref_base = genome["chr1"][pos - 1]
    alt_base = other(ref_base)
    got = score_variants(
        model_dir,
        write_fasta(tmp_path / "ref.fa", genome),
        write_table(tmp_path / "v.tsv", [("a", "chr1", pos, ref_base, alt_base)]),
        tmp_path / "out.tsv",
        window_bp=window_bp,
    )[0]

    model, hf_tok = load_masked_lm(model_dir)
    window = genome["chr1"][284:314]
    offset = pos - 1 - 284
    ids = hf_tok(window, return_tensors="pt")["input_ids"]  # <cls> + ten 3-mers
    assert ids.shape[1] == 1 + window_bp // K
    tok_index = 1 + offset // K
    kmer = window[tok_index * K - K : tok_index * K]
    alt_kmer = kmer[: offset % K] + alt_base + kmer[offset % K + 1 :]
    ref_id, alt_id = hf_tok.convert_tokens_to_ids([kmer, alt_kmer])
    masked = ids.clone()
    masked[0, tok_index] = hf_tok.mask_token_id
    with torch.no_grad():
        logits = model(input_ids=masked, attention_mask=torch.ones_like(masked)).logits[0, tok_index]
    first_real = len(hf_tok.all_special_ids)
    logp = torch.log_softmax(logits[first_real : len(hf_tok)], -1)
    assert got["ref_logp"] == pytest.approx(float(logp[ref_id - first_real]), abs=1e-4)
    assert got["alt_logp"] == pytest.approx(float(logp[alt_id - first_real]), abs=1e-4)
    assert got["llr"] == pytest.approx(float(logp[alt_id - first_real] - logp[ref_id - first_real]), abs=1e-4)


def test_batching_padding_and_large_windows_do_not_change_scores(tmp_path, model_dir, genome):
    ref_fa = write_fasta(tmp_path / "ref.fa", genome)
    # Windows of different token counts in one batch (chr2 is short, chr1 has Ns) exercise padding.
    rows = [snv(genome, "chr1", p, f"v{p}") for p in (3, 150, 207, 390)] + [snv(genome, "chr2", 140, "c2")]
    variants = write_table(tmp_path / "v.tsv", rows)
    one = score_variants(model_dir, ref_fa, variants, tmp_path / "a.tsv", batch_size=1)
    many = score_variants(model_dir, ref_fa, variants, tmp_path / "b.tsv", batch_size=8)
    for a, b in zip(one, many, strict=True):
        assert b["llr"] == pytest.approx(a["llr"], abs=1e-4)
        assert b["embedding_cosine_distance"] == pytest.approx(a["embedding_cosine_distance"], abs=1e-4)
    # A window far beyond the 64-token context is cropped around the variant instead of failing.
    wide = score_variants(model_dir, ref_fa, variants, tmp_path / "c.tsv", window_bp=5000)
    assert all(math.isfinite(r["llr"]) for r in wide)


def test_csv_input_by_extension(tmp_path, model_dir, genome):
    rows = [snv(genome, "chr2", 10, "x")]
    variants = write_table(tmp_path / "v.csv", rows, header="id,chrom,pos,ref,alt", sep=",")
    result = score_variants(model_dir, write_fasta(tmp_path / "ref.fa", genome), variants, tmp_path / "o.tsv")
    assert math.isfinite(result[0]["llr"])


def test_all_ref_mismatches_reported_in_one_error(tmp_path, model_dir, genome):
    ref_fa = write_fasta(tmp_path / "ref.fa", genome)
    good = snv(genome, "chr1", 10)
    bad = []
    for p in (20, 30, 40, 50, 60, 70, 80):
        real = genome["chr1"][p - 1]
        bad.append(("b", "chr1", p, other(real), real))
    variants = write_table(tmp_path / "variants.tsv", [good, *bad])
    out = tmp_path / "out.tsv"
    with pytest.raises(BiofmError) as err:
        score_variants(model_dir, ref_fa, variants, out)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{variants}: 7 row(s) whose ref does not match the reference")
    real20 = genome["chr1"][19]
    assert f"line 3 (chr1:20 ref {other(real20)}, reference has {real20})" in msg
    assert "line 7 (chr1:60" in msg and "line 8 (chr1:70" not in msg and "and 2 more" in msg
    assert not out.exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "empty file"),
        ("id\tchrom\tpos\tref\talt\n", "no variants"),
        ("id\tchrom\tposition\tref\n", "line 1: missing column(s) pos, alt"),
        ("id\tchrom\tpos\tref\talt\na\tchr1\t10\tA\n", "line 2: expected 5 columns"),
        ("id\tchrom\tpos\tref\talt\na\tchr1\t1\t{r1}\tC\nb\tchr1\tten\tA\tC\n", "line 3: pos 'ten' is not an integer"),
        ("id\tchrom\tpos\tref\talt\na\tchr1\t0\tA\tC\n", "line 2: pos 0 must be at least 1"),
        ("id\tchrom\tpos\tref\talt\na\tchr2\t151\tA\tC\n", "line 2: pos 151 is past the end of 'chr2' (length 150 bp)"),
        ("id\tchrom\tpos\tref\talt\na\tchr2\t150\tAC\tGT\n", "line 2: ref 'AC' at pos 150 (ends at 151) is past"),
        ("id\tchrom\tpos\tref\talt\na\tchrX\t5\tA\tC\n", "line 2: chromosome 'chrX' not in"),
        ("id\tchrom\tpos\tref\talt\na\t1\t5\tA\tC\n", "line 2: chromosome '1' not in"),
        ("id\tchrom\tpos\tref\talt\na\tchr1\t5\tA\tR\n", "line 2: alt 'R' has character(s) 'R'"),
        ("id\tchrom\tpos\tref\talt\na\tchr1\t5\tA\t-\n", "line 2: alt '-' has character(s) '-'"),
        ("id\tchrom\tpos\tref\talt\na\tchr1\t5\t\tC\n", "line 2: empty ref allele"),
    ],
)
def test_bad_variants_file_is_one_line_error_naming_file_and_line(tmp_path, model_dir, genome, text, expected):
    ref_fa = write_fasta(tmp_path / "ref.fa", genome)
    variants = tmp_path / "variants.tsv"
    variants.write_text(text.format(r1=genome["chr1"][0]))
    out = tmp_path / "out.tsv"
    with pytest.raises(BiofmError) as err:
        score_variants(model_dir, ref_fa, variants, out)
    msg = str(err.value)
    assert msg.startswith(str(variants)) and expected in msg and "\n" not in msg
    if "chromosome" in expected:
        assert "known: chr1, chr2" in msg
        assert ("did you mean 'chr1'?" in msg) == ("\t1\t" in text)
    assert not out.exists()


def test_window_is_centred_and_shifted_inside_the_chromosome():
    assert window_bounds(50, 1, 1000, 20) == (40, 60)
    assert window_bounds(0, 1, 1000, 20) == (0, 20)
    assert window_bounds(999, 1, 1000, 20) == (980, 1000)
    assert window_bounds(5, 1, 10, 20) == (0, 10)  # chromosome shorter than the window
    assert window_bounds(10, 30, 1000, 20) == (10, 40)  # an MNV longer than the window is kept whole


def _uneven_gz_fasta(path: Path, genome: dict[str, str]) -> Path:
    """The genome as gzip FASTA with lower case, an IUPAC code and lines of uneven length."""
    chr1, chr2 = genome["chr1"], genome["chr2"]
    text = (f">chr1 first\n{chr1[:50].lower()}\n{chr1[50:130]}\n\n{chr1[130:]}\n"
            f">chr2\n{chr2[:10]}R{chr2[11:77]}\n{chr2[77:]}\n")
    path.write_bytes(gzip.compress(text.encode()))
    return path


def test_indexed_reference_scores_equal_the_whole_chromosome_path(tmp_path, model_dir, genome):
    ref_fa = _uneven_gz_fasta(tmp_path / "ref.fa.gz", genome)
    g1 = genome["chr1"]
    rows = [snv(genome, "chr1", p, f"v{p}") for p in (2, 60, 205, 399)] + [snv(genome, "chr2", 9, "c2")]
    mnv = "".join(other(b) for b in g1[49:52])
    rows += [("mnv", "chr1", 50, g1[49:52], mnv), ("del", "chr1", 100, g1[99:101], g1[99])]
    variants = write_table(tmp_path / "v.tsv", rows)

    indexed = score_variants(model_dir, ref_fa, variants, tmp_path / "o.tsv", window_bp=90, device="cpu",
                             cache_dir=tmp_path / "cache")

    # the old path: whole normalised chromosomes in memory, windows cut from the strings
    seqs = {rec.name: rec.seq for rec in read_fasta(ref_fa)}
    tok = KmerTokenizer.load(model_dir)
    model, _ = load_masked_lm(model_dir, modality="dna")
    ctx = max(1, min(model.config.max_position_embeddings - 2, context_length(model.config) - 1))
    _, parsed = read_variants(variants)
    batch = [prepare(tok, v, seqs[v.chrom], 90, ctx) for v in parsed]
    score_batch(model, tok, batch, torch.device("cpu"))
    for row, p in zip(indexed, batch, strict=True):
        for key in ("llr", "ref_logp", "alt_logp", "embedding_cosine_distance"):
            assert row[key] == p.scores[key] or (math.isnan(row[key]) and math.isnan(p.scores[key]))
        assert row["note"] == p.note
    assert math.isnan(indexed[-1]["llr"]) and math.isfinite(indexed[0]["llr"])


def test_reference_index_lives_in_the_cache_and_is_rebuilt_when_the_file_changes(tmp_path, genome):
    inputs = tmp_path / "in"
    inputs.mkdir()
    ref_fa = _uneven_gz_fasta(inputs / "ref.fa.gz", genome)
    cache = tmp_path / "cache"
    with IndexedReference(ref_fa, cache) as ref:
        assert ref.lengths == {"chr1": CHR1_LEN, "chr2": CHR2_LEN}
        assert ref.fetch("chr1", 0, CHR1_LEN) == genome["chr1"]  # lower case normalised
        assert ref.fetch("chr2", 8, 12) == genome["chr2"][8:10] + "N" + genome["chr2"][11]  # IUPAC R -> N
        assert ref["chr1"][395:500] == genome["chr1"][395:]  # slices clip at the end, as on a str
    assert [p.name for p in inputs.iterdir()] == ["ref.fa.gz"]  # nothing written beside the input
    (entry,) = (cache / IndexedReference.SUBDIR).iterdir()
    built = (entry / "reference.fa").stat().st_mtime_ns
    with IndexedReference(ref_fa, cache):
        pass
    assert (entry / "reference.fa").stat().st_mtime_ns == built  # reused, not rebuilt
    st = ref_fa.stat()
    os.utime(ref_fa, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # an edited file gets a new entry
    with IndexedReference(ref_fa, cache):
        pass
    assert len(list((cache / IndexedReference.SUBDIR).iterdir())) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (">chr1\nACGT\n>chr1\nACGT\n", "line 3 (record 'chr1'): duplicate record name (first seen at line 1)"),
        (">chr1\nACGT\nAC!T\n", "line 3"),
    ],
)
def test_bad_reference_fails_before_a_cache_entry_exists(tmp_path, text, expected):
    ref_fa = tmp_path / "ref.fa"
    ref_fa.write_text(text)
    with pytest.raises(BiofmError) as err:
        IndexedReference(ref_fa, tmp_path / "cache")
    assert str(err.value).startswith(str(ref_fa)) and expected in str(err.value) and "\n" not in str(err.value)
    assert list((tmp_path / "cache" / IndexedReference.SUBDIR).iterdir()) == []  # the partial copy was removed
