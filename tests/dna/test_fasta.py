from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from biofm.dna.fasta import Interval, Record, bed_records, read_bed, read_fasta, reverse_complement
from biofm.errors import BiofmError


def write(path: Path, text: str | bytes, gz: bool = False) -> Path:
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def records(path: Path) -> list[Record]:
    return list(read_fasta(path))


def fasta_error(path: Path) -> str:
    with pytest.raises(BiofmError) as exc:
        list(read_fasta(path))
    msg = str(exc.value)
    assert "\n" not in msg
    assert path.name in msg
    return msg


# --- reading -------------------------------------------------------------------------------------


def test_multi_record_mixed_widths(tmp_path: Path) -> None:
    p = write(tmp_path / "g.fa", ">chr1 first one\nACGTAC\nGT\nACGTACGTAC\n>chr2\nGGGG\nCC\n")
    recs = records(p)
    assert [r.name for r in recs] == ["chr1", "chr2"]
    assert recs[0].seq == "ACGTACGTACGTACGTAC"
    assert recs[0].description == "chr1 first one"
    assert recs[1].seq == "GGGGCC"
    assert (recs[0].line, recs[1].line) == (1, 5)
    assert recs[0].path == str(p)


def test_single_line_sequence_without_final_newline(tmp_path: Path) -> None:
    p = write(tmp_path / "g.fa", ">x\n" + "ACGT" * 1000)
    assert records(p)[0].seq == "ACGT" * 1000


def test_crlf_blank_lines_and_whitespace(tmp_path: Path) -> None:
    p = write(tmp_path / "g.fa", "\r\n>a desc\r\nAC GT\r\n\r\nAC\tGT\r\n\r\n>b\r\nTT\r\n")
    recs = records(p)
    assert [(r.name, r.description, r.seq) for r in recs] == [("a", "a desc", "ACGTACGT"), ("b", "b", "TT")]


def test_normalisation(tmp_path: Path) -> None:
    p = write(tmp_path / "g.fa", ">x\nacgtACGT\nUu\nRYSWKMBDHVNryswkmbdhvn\n")
    assert records(p)[0].seq == "ACGTACGT" + "TT" + "N" * 22


def test_odd_headers_verbatim(tmp_path: Path) -> None:
    h1 = "gt;FP000970 Tsc22d1_1 :+U EU:NC; range -200 to 50."
    h2 = "ref|NC_001133| [org=Saccharomyces cerevisiae] [chromosome=I]"
    p = write(tmp_path / "g.fa", f">{h1}\nACGT\n>{h2}\nCCCC\n")
    recs = records(p)
    assert recs[0].description == h1
    assert recs[0].name == "gt;FP000970"
    assert recs[1].description == h2
    assert recs[1].name == "ref|NC_001133|"


def test_yeast_header_format(tmp_path: Path) -> None:
    text = (
        ">ref|NC_001133| [org=Saccharomyces cerevisiae] [strain=S288C] [moltype=genomic] [chromosome=I]\n"
        "CCACACCACACCCACACACCCACACACCACACCACACACCACACCACACCCACACACACA\n"
        "CATCCTAACACTACCCTAACACAGCCCTAATCTAACCCTGGCCAACCTGTCTCTCAACTT\n"
        ">ref|NC_001134| [org=Saccharomyces cerevisiae] [strain=S288C] [moltype=genomic] [chromosome=II]\n"
        "AAATAGCCCTCATGTACGTCTCCTCCAAGCCCTGTTGTCTCTTACCCGGATGTTCAACCA\n"
    )
    recs = records(write(tmp_path / "yeast.fsa.gz", text, gz=True))
    assert [r.name for r in recs] == ["ref|NC_001133|", "ref|NC_001134|"]
    assert len(recs[0].seq) == 120
    assert recs[1].description.endswith("[chromosome=II]")


def test_gzip_detected_by_magic_not_extension(tmp_path: Path) -> None:
    p = write(tmp_path / "g.fa", ">a\nacgu\n", gz=True)  # gzip content, no .gz suffix
    assert records(p)[0].seq == "ACGT"
    q = write(tmp_path / "plain.fa.gz", ">a\nACGT\n")  # plain content, .gz suffix
    assert records(q)[0].seq == "ACGT"


def test_gzip_with_crlf(tmp_path: Path) -> None:
    p = write(tmp_path / "g.fa.gz", ">a x\r\nAC\r\nGT\r\n>b\r\nNN\r\n", gz=True)
    recs = records(p)
    assert [(r.name, r.description, r.seq) for r in recs] == [("a", "a x", "ACGT"), ("b", "b", "NN")]


def test_empty_record_skipped(tmp_path: Path) -> None:
    p = write(tmp_path / "g.fa", ">empty\n\n>full\nACGT\n>empty2\n")
    assert [r.name for r in records(p)] == ["full"]


def test_utf8_bom_tolerated(tmp_path: Path) -> None:
    p = write(tmp_path / "g.fa", b"\xef\xbb\xbf>a\nACGT\n")
    assert records(p)[0].name == "a"


def test_reverse_complement() -> None:
    assert reverse_complement("AACGTN") == "NACGTT"
    assert reverse_complement("") == ""


# --- errors --------------------------------------------------------------------------------------


def test_invalid_character_reports_line_column_record(tmp_path: Path) -> None:
    p = write(tmp_path / "genome.fa", ">chr0\nAC\n>chr1\nACGT\nACGT\r\nACGTJ\nJJJ\n")
    msg = fasta_error(p)
    assert msg.startswith(f"{p}, line 6 (record 'chr1'): invalid character 'J' (column 5); ")
    assert "allowed: A C G T U" in msg


def test_invalid_character_gz_column_with_whitespace(tmp_path: Path) -> None:
    p = write(tmp_path / "g.fa.gz", ">x\nAC GT*\n", gz=True)
    msg = fasta_error(p)
    assert "line 2 (record 'x'): invalid character '*' (column 6)" in msg


def test_missing_file(tmp_path: Path) -> None:
    msg = fasta_error(tmp_path / "nope.fa")
    assert "not found" in msg


def test_missing_file_fails_before_iteration(tmp_path: Path) -> None:
    with pytest.raises(BiofmError):
        read_fasta(tmp_path / "nope.fa")


def test_directory(tmp_path: Path) -> None:
    d = tmp_path / "adir"
    d.mkdir()
    assert "directory" in fasta_error(d)


def test_empty_file(tmp_path: Path) -> None:
    assert "empty" in fasta_error(write(tmp_path / "e.fa", ""))


def test_empty_gz(tmp_path: Path) -> None:
    assert "empty" in fasta_error(write(tmp_path / "e.fa.gz", "", gz=True))


def test_only_blank_lines(tmp_path: Path) -> None:
    assert "no FASTA records" in fasta_error(write(tmp_path / "b.fa", "\n\r\n  \n"))


def test_sequence_before_header(tmp_path: Path) -> None:
    msg = fasta_error(write(tmp_path / "s.fa", "\nACGT\n>a\nACGT\n"))
    assert "line 2" in msg
    assert "not a FASTA file" in msg
    assert "binary" not in msg


@pytest.mark.parametrize("data", [b"\x00\x01\x02\x03abc", b"\xff\xfe\x89PNG\r\n", b"PK\x03\x04\x00\x00"])
def test_binary_file(tmp_path: Path, data: bytes) -> None:
    msg = fasta_error(write(tmp_path / "bin.fa", data))
    assert "not a FASTA file (binary data)" in msg


def test_binary_after_header(tmp_path: Path) -> None:
    msg = fasta_error(write(tmp_path / "bin.fa", b">x\nAC\x00\x00GT\n"))
    assert "not a FASTA file (binary data)" in msg
    assert "line 2" in msg


def test_non_ascii_character_reported_as_byte(tmp_path: Path) -> None:
    msg = fasta_error(write(tmp_path / "u.fa", ">x\nACG\xe9\n".encode()))
    assert "byte 0xC3" in msg and "column 4" in msg


def test_truncated_gz(tmp_path: Path) -> None:
    data = gzip.compress((">a\n" + "ACGT" * 5000 + "\n").encode())
    p = write(tmp_path / "genome.fa.gz", data[: len(data) // 2])
    assert fasta_error(p) == f"{p}: truncated or corrupt gzip file"


def test_corrupt_gz(tmp_path: Path) -> None:
    data = bytearray(gzip.compress((">a\n" + "ACGT" * 5000 + "\n").encode()))
    data[20:40] = b"\xff" * 20
    p = write(tmp_path / "genome.fa.gz", bytes(data))
    assert fasta_error(p) == f"{p}: truncated or corrupt gzip file"


def test_all_records_empty(tmp_path: Path) -> None:
    assert "empty sequence" in fasta_error(write(tmp_path / "e.fa", ">a\n\n>b\n"))


def test_header_without_name(tmp_path: Path) -> None:
    assert "line 3" in fasta_error(write(tmp_path / "h.fa", ">a\nAC\n>  \nAC\n"))


# --- BED -----------------------------------------------------------------------------------------

REF = ">chr1 first\nAACCGGTTAC\nGTACGT\n>chr2\nTTTTTGGGGG\n"


def test_read_bed(tmp_path: Path) -> None:
    bed = write(
        tmp_path / "a.bed",
        "track name=x\nbrowser position chr1\n# comment\n\nchr1\t0\t4\n"
        "chr1 2 6 peak1 0 -\r\nchr2\t1\t3\t.\t0\t+\n",
    )
    assert read_bed(bed) == [
        Interval("chr1", 0, 4, None, ".", 5),
        Interval("chr1", 2, 6, "peak1", "-", 6),
        Interval("chr2", 1, 3, None, "+", 7),
    ]


def test_bed_records_extracts_and_reverse_complements(tmp_path: Path) -> None:
    ref = write(tmp_path / "ref.fa.gz", REF, gz=True)
    bed = write(tmp_path / "a.bed", "chr1\t0\t4\nchr1\t8\t12\tmine\t0\t-\nchr2\t5\t10\t.\t.\t+\n")
    recs = list(bed_records(bed, ref))
    assert [(r.name, r.seq) for r in recs] == [
        ("chr1:0-4(.)", "AACC"),
        ("mine", reverse_complement("ACGT")),
        ("chr2:5-10(+)", "GGGGG"),
    ]
    assert recs[1].line == 2
    assert recs[1].path == str(bed)


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("chr1\t5\n", "at least 3 columns"),
        ("chr1\tx\t5\n", "start 'x' is not an integer"),
        ("chr1\t1\t5.5\n", "end '5.5' is not an integer"),
        ("chr1\t-1\t5\n", "negative"),
        ("chr1\t5\t5\n", "greater than start"),
        ("chr1\t1\t5\tn\t0\tx\n", "strand"),
    ],
)
def test_bed_errors(tmp_path: Path, line: str, needle: str) -> None:
    bed = write(tmp_path / "bad.bed", "# header\n" + line)
    with pytest.raises(BiofmError) as exc:
        read_bed(bed)
    msg = str(exc.value)
    assert msg.startswith(f"{bed}, line 2: ")
    assert needle in msg


def test_bed_unknown_chromosome(tmp_path: Path) -> None:
    ref = write(tmp_path / "ref.fa", REF)
    bed = write(tmp_path / "a.bed", "chr1\t0\t4\nchrX\t0\t4\n")
    with pytest.raises(BiofmError) as exc:
        bed_records(bed, ref)
    msg = str(exc.value)
    assert "a.bed, line 2" in msg and "'chrX'" in msg and "chr1, chr2" in msg


def test_bed_beyond_chromosome_end(tmp_path: Path) -> None:
    ref = write(tmp_path / "ref.fa", REF)
    bed = write(tmp_path / "a.bed", "chr2\t5\t11\n")
    with pytest.raises(BiofmError) as exc:
        bed_records(bed, ref)
    msg = str(exc.value)
    assert "a.bed, line 1" in msg and "length 10" in msg


def test_bed_empty(tmp_path: Path) -> None:
    with pytest.raises(BiofmError, match="no BED intervals"):
        read_bed(write(tmp_path / "a.bed", "# only a comment\n"))
