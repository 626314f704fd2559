import gzip
import hashlib
import math
import random
from pathlib import Path

import pytest

from biofm.datasets import dataset_path
from biofm.dna.tokenizer import KmerTokenizer
from biofm.dna.variants import NOTE_INDEL, OUTPUT_COLUMNS, read_variants, score_variants
from biofm.dna.vcf import read_vcf
from biofm.errors import BiofmError
from biofm.models.presets import build_config, build_model

HEADER = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"
META = "##fileformat=VCFv4.2\n##contig=<ID=chr1,length=300>\n##INFO=<ID=DP,Number=1,Type=Integer,Description=\"d\">\n"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("run") / "model"
    tok = KmerTokenizer(3, model_max_length=64)
    cfg = build_config("tiny", vocab_size=tok.vocab_size, pad_id=tok.pad_id, mask_id=tok.mask_id,
                       cls_id=tok.cls_id, eos_id=tok.eos_id, max_len=64)
    build_model(cfg, seed=2).save_pretrained(path)
    tok.save(path)
    return path


@pytest.fixture(scope="module")
def chrom() -> str:
    rng = random.Random(3)
    return "".join(rng.choice("ACGT") for _ in range(300))


def other(base: str) -> str:
    return {"A": "C", "C": "G", "G": "T", "T": "A"}[base.upper()]


def vcf_text(records: list[str], meta: str = META, header: str = HEADER) -> str:
    return meta + (header + "\n" if header else "") + "".join(r + "\n" for r in records)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_meta_lines_multiallelic_symbolic_and_indels(tmp_path, chrom):
    c = chrom
    records = [
        f"chr1\t10\trs1\t{c[9].lower()}\t{other(c[9]).lower()}\t50\tPASS\tDP=3",  # case kept in the output
        f"chr1\t20\trs2\t{c[19]}\t{other(c[19])},{other(other(c[19]))},<DEL>\t.\t.\t.",
        f"chr1\t30\t.\t{c[29]}\t{other(c[29])},*",
        f"chr1\t40\tdel1\t{c[39:42]}\t{c[39]}\t.\t.\t.",
        f"chr1\t50\tbnd\t{c[49]}\t{c[49]}]chr1:100]\t.\t.\t.",
        f"chr1\t60\tsbnd\t{c[59]}\t.{c[59]}\t.\t.\t.",
        f"chr1\t70\tmono\t{c[69]}\t.\t.\t.\t.",
        f"chr1\t80\t.\t{c[79]}\t{other(c[79])},{c[79]}TT\t.\t.\t.",
    ]
    path = tmp_path / "calls.vcf"
    path.write_text(vcf_text(records))

    header, variants, summary = read_vcf(path)

    assert header == ["chrom", "pos", "id", "ref", "alt"]
    assert [v.row["id"] for v in variants] == ["rs1", "rs2/1", "rs2/2", ".", "del1", ".", "."]
    assert [v.line for v in variants] == [5, 6, 6, 7, 8, 12, 12]  # 3 meta lines and the header come first
    first = variants[0]
    assert (first.ref, first.alt) == (c[9], other(c[9]))  # scored upper-case
    assert (first.row["ref"], first.row["alt"]) == (c[9].lower(), other(c[9]).lower())  # written as read
    assert variants[2].alt == other(other(c[19]))
    assert (variants[4].ref, variants[4].alt) == (c[39:42], c[39])
    assert (summary.records, summary.variants, summary.multiallelic) == (8, 7, 3)
    assert (summary.indels, summary.symbolic, summary.no_alt) == (2, 4, 1)
    line = summary.line(path)
    assert "\n" not in line and line.startswith(f"note: {path}: 8 VCF record(s) -> 7 variant(s)")
    assert "2 indel(s) kept" in line and "4 symbolic/breakend/'*' allele(s) skipped" in line
    assert "1 record(s) with ALT '.' skipped" in line


def test_gzip_bgzip_and_content_sniffing_read_the_same(tmp_path, chrom):
    text = vcf_text([f"chr1\t{p}\tv{p}\t{chrom[p - 1]}\t{other(chrom[p - 1])}" for p in (5, 15, 25)])
    plain = tmp_path / "a.vcf"
    plain.write_text(text)
    gz = tmp_path / "a.vcf.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    # bgzip writes a series of gzip members; split mid-line to check members are joined
    half = len(text) // 2
    bgz = tmp_path / "a.vcf.bgz"
    bgz.write_bytes(gzip.compress(text[:half].encode()) + gzip.compress(text[half:].encode()))
    sniffed = tmp_path / "calls.txt"  # no .vcf name: the ##fileformat line says what it is
    sniffed.write_text(text)
    expected = [(v.line, v.chrom, v.pos, v.ref, v.alt, v.row) for v in read_vcf(plain)[1]]
    assert len(expected) == 3
    for path in (gz, bgz, sniffed):
        header, variants = read_variants(path, log=lambda _: None)
        assert header == ["chrom", "pos", "id", "ref", "alt"]
        assert [(v.line, v.chrom, v.pos, v.ref, v.alt, v.row) for v in variants] == expected


def test_headerless_five_column_file_is_read_by_position(tmp_path, chrom):
    # the layout of the registry's celegans-slice-vcf: no meta lines, no #CHROM header
    path = tmp_path / "plain.vcf"
    path.write_text(f"chr1\t7\tgk1\t{chrom[6]}\t{other(chrom[6])}\n")
    _, variants, summary = read_vcf(path)
    assert [(v.pos, v.row["id"]) for v in variants] == [(7, "gk1")] and summary.records == 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (vcf_text(["chr1\tten\trs1\tA\tC"]), "line 5: POS 'ten' is not an integer"),
        ("chr1\tpos\tid\tA\tC\n", "line 1: POS 'pos' is not an integer (no '#CHROM' header line"),
        (vcf_text(["chr1\t0\trs1\tA\tC"]), "line 5: POS 0 must be at least 1"),
        (vcf_text(["chr1\t5\trs1\tAR\tC"]), "line 5: REF 'AR' has character(s) 'R'"),
        (vcf_text(["chr1\t5\trs1\t.\tC"]), "line 5: REF '.' has character(s) '.'"),
        (vcf_text(["chr1\t5\trs1\t\tC"]), "line 5: empty REF allele"),
        (vcf_text(["chr1\t5\trs1\tA\tC,X"]), "line 5: ALT 'X' has character(s) 'X'"),
        (vcf_text(["chr1\t5\trs1\tA\tC,"]), "line 5: empty ALT allele"),
        (vcf_text(["chr1\t5\trs1\tA"]), "line 5: expected at least 5 tab-separated columns (CHROM POS ID REF ALT), "
                                         "found 4"),
        (vcf_text(["chr1 5 rs1 A C"]), "found 1 (the line is space-separated"),
        (vcf_text(["\t5\trs1\tA\tC"]), "line 5: empty CHROM"),
        (vcf_text([], header="#CHROM\tPOS\tREF\tALT"), "line 4: header must start with #CHROM\tPOS\tID\tREF\tALT"),
        (vcf_text(["chr1\t5\trs1\tA\tC", "##late=1"]), "line 6: '##' meta line after the first record"),
        (vcf_text([]), "no VCF records"),
        (vcf_text(["chr1\t5\trs1\tA\t<DEL>"]), "no scorable variants (1 VCF record(s) -> 0 variant(s); 1 symbolic"),
    ],
)
def test_bad_record_is_one_line_error_naming_file_line_and_problem(tmp_path, body, expected):
    path = tmp_path / "bad.vcf"
    path.write_text(body)
    with pytest.raises(BiofmError) as err:
        read_vcf(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}") and expected in msg and "\n" not in msg


def test_truncated_gzip_is_one_line_error(tmp_path, chrom):
    path = tmp_path / "cut.vcf.gz"
    data = gzip.compress(vcf_text([f"chr1\t{p}\t.\tA\tC" for p in range(1, 200)]).encode())
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BiofmError, match="truncated or corrupt gzip"):
        read_vcf(path)


def test_scoring_a_vcf_keeps_ids_and_alleles_and_reports_indels(tmp_path, model_dir, chrom, capsys):
    ref_fa = tmp_path / "ref.fa"
    ref_fa.write_text(f">chr1\n{chrom}\n")
    c = chrom
    records = [
        f"chr1\t50\trs1\t{c[49]}\t{other(c[49])},{other(other(c[49]))}\t.\t.\t.",
        f"chr1\t100\tins\t{c[99].lower()}\t{c[99].lower()}ga\t.\t.\t.",
        f"chr1\t150\tsv\t{c[149]}\t<INV>\t.\t.\t.",
    ]
    variants = tmp_path / "calls.vcf.gz"
    variants.write_bytes(gzip.compress(vcf_text(records).encode()))
    before = {p.name: digest(p) for p in tmp_path.iterdir()}
    out = tmp_path / "out" / "scores.tsv"

    rows = score_variants(model_dir, ref_fa, variants, out, cache_dir=tmp_path / "cache")

    assert [r["id"] for r in rows] == ["rs1/1", "rs1/2", "ins"]
    assert all(math.isfinite(r["llr"]) and r["note"] == "" for r in rows[:2])
    assert rows[0]["llr"] != rows[1]["llr"]  # two different alleles at one site
    assert (rows[2]["ref"], rows[2]["alt"]) == (c[99].lower(), c[99].lower() + "ga")
    assert math.isnan(rows[2]["llr"]) and rows[2]["note"] == NOTE_INDEL
    assert math.isfinite(rows[2]["embedding_cosine_distance"])
    lines = out.read_text().splitlines()
    assert lines[0].split("\t") == ["chrom", "pos", "id", "ref", "alt", *OUTPUT_COLUMNS]
    assert lines[3].split("\t")[:5] == ["chr1", "100", "ins", c[99].lower(), c[99].lower() + "ga"]
    err = capsys.readouterr().err
    assert "3 VCF record(s) -> 3 variant(s)" in err and "1 indel(s) kept" in err and "1 symbolic" in err
    # inputs untouched, nothing written beside them (the index lives in the cache)
    assert {p.name: digest(p) for p in tmp_path.iterdir() if p.is_file()} == before


def test_vcf_ref_mismatch_is_listed_once_per_record(tmp_path, model_dir, chrom):
    ref_fa = tmp_path / "ref.fa"
    ref_fa.write_text(f">chr1\n{chrom}\n")
    wrong = other(chrom[9])
    variants = tmp_path / "calls.vcf"
    variants.write_text(vcf_text([f"chr1\t10\trs1\t{wrong}\tA,C,G,T"]))
    with pytest.raises(BiofmError) as err:
        score_variants(model_dir, ref_fa, variants, tmp_path / "o.tsv", cache_dir=tmp_path / "cache")
    msg = str(err.value)
    assert "1 row(s) whose ref does not match" in msg and "--ref-mismatch skip" in msg
    assert f"line 5 (chr1:10 ref {wrong}, reference has {chrom[9]})" in msg


def test_ref_mismatch_skip_scores_the_other_rows(tmp_path, model_dir, chrom, capsys):
    ref_fa = tmp_path / "ref.fa"
    ref_fa.write_text(f">chr1\n{chrom}\n")
    variants = tmp_path / "calls.vcf"
    variants.write_text(vcf_text([f"chr1\t10\tbad\t{other(chrom[9])}\tA,C", f"chr1\t20\tgood\t{chrom[19]}\t"
                                  f"{other(chrom[19])}"]))
    rows = score_variants(model_dir, ref_fa, variants, tmp_path / "o.tsv", cache_dir=tmp_path / "cache",
                          ref_mismatch="skip")
    assert [r["id"] for r in rows] == ["good"]
    assert "skipped 2 variant(s) on 1 row(s) whose ref does not match" in capsys.readouterr().err


def test_real_celegans_vcf_reads_and_first_200_score(tmp_path, mirror, model_dir, capsys):
    vcf = dataset_path("celegans-slice-vcf", mirror=mirror)
    reference = dataset_path("celegans-slice", mirror=mirror)
    header, variants = read_variants(vcf)
    assert len(variants) == 8713 and header == ["chrom", "pos", "id", "ref", "alt"]
    assert "note:" in capsys.readouterr().err
    with gzip.open(vcf, "rt") as fh:
        first = [next(fh) for _ in range(200)]
    subset = tmp_path / "first200.vcf"
    subset.write_text("".join(first))

    rows = score_variants(model_dir, reference, subset, tmp_path / "scores.tsv", batch_size=32,
                          cache_dir=tmp_path / "cache")

    assert [r["id"] for r in rows] == [line.split("\t")[2] for line in first]
    assert rows[0]["id"] == variants[0].row["id"]
    assert all(math.isfinite(r["llr"]) and r["note"] == "" for r in rows)  # all SNVs on ACGT bases
    assert len({round(r["llr"], 6) for r in rows}) > 50  # scores depend on the site, not a constant
