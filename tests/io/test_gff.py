"""The GFF3 reader: coordinates, attributes and directives as published, and one-line errors for bad lines."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from biofm.errors import BiofmError
from biofm.io.gff import read_gff3

GFF = (
    "##gff-version 3\n"
    "##sequence-region chr1 1 5000\n"
    "# a comment\n"
    "chr1\tRefSeq\tgene\t190\t255\t.\t+\t.\tID=gene-b0001;Name=thrL;gene_biotype=protein_coding;locus_tag=b0001\n"
    "\n"
    "chr1\tRefSeq\tCDS\t190\t255\t3.5\t+\t0\tID=cds-1;Parent=gene-b0001,gene-b0002;"
    "product=poly-beta-1%2C6-N-acetyl%3Bglucosamine;\n"
    "chr1\tRefSeq\tpseudogene\t300\t400\t.\t-\t.\tID=gene-p;pseudo=true\n"
    "chr1\tRefSeq\tregion\t1\t5000\t.\t?\t.\t.\n"
    "##FASTA\n"
    ">chr1\n"
    "ACGT\tnot\ta\tfeature\n"
)


def _write(tmp_path: Path, text: str, name: str = "a.gff3") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_reads_features_attributes_and_stops_at_fasta(tmp_path: Path) -> None:
    feats = list(read_gff3(_write(tmp_path, GFF)))
    assert [f.type for f in feats] == ["gene", "CDS", "pseudogene", "region"]
    gene, cds, pseudo, region = feats
    assert (gene.seqid, gene.start, gene.end, gene.strand, gene.length, gene.line) == ("chr1", 190, 255, "+", 66, 4)
    assert gene.get("locus_tag") == "b0001" and gene.get("missing") is None and gene.score is None
    assert cds.phase == 0 and cds.score == 3.5
    assert cds.attributes["Parent"] == ("gene-b0001", "gene-b0002")  # a bare comma separates values
    assert cds.get("product") == "poly-beta-1,6-N-acetyl;glucosamine"  # an encoded one does not
    assert pseudo.flag("pseudo") and not gene.flag("pseudo")
    assert region.strand == "?" and region.attributes == {}


def test_gzip_is_recognised_by_content(tmp_path: Path) -> None:
    p = tmp_path / "named_plain.gff"  # gzipped bytes under a plain name
    p.write_bytes(gzip.compress(GFF.encode()))
    assert [(f.type, f.start) for f in read_gff3(p)] == [(f.type, f.start) for f in read_gff3(_write(tmp_path, GFF))]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("chr1\tRefSeq\tgene\t190\t255\t.\t+\t.", "8 tab-separated column(s)"),
        ("chr1\tRefSeq\tgene\t19o\t255\t.\t+\t.\tID=a", "not whole numbers"),
        ("chr1\tRefSeq\tgene\t300\t255\t.\t+\t.\tID=a", "300..255"),
        ("chr1\tRefSeq\tgene\t0\t255\t.\t+\t.\tID=a", "0..255"),
        ("chr1\tRefSeq\tgene\t1\t255\t.\tplus\t.\tID=a", "strand 'plus'"),
        ("chr1\tRefSeq\tCDS\t1\t255\t.\t+\t3\tID=a", "phase '3'"),
        ("chr1\tRefSeq\tCDS\t1\t255\thigh\t+\t0\tID=a", "score 'high'"),
        ("chr1\tRefSeq\tgene\t1\t255\t.\t+\t.\tID=a;gene", "'gene' is not key=value"),
        ("chr1\tRefSeq\tgene\t1\t255\t.\t+\t.\tID=a;ID=b", "'ID' given twice"),
    ],
)
def test_a_bad_line_is_one_error_naming_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    p = _write(tmp_path, "##gff-version 3\n" + line + "\n")
    with pytest.raises(BiofmError, match=rf"a\.gff3, line 2: .*{re.escape(message)}"):
        list(read_gff3(p))


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(BiofmError, match="GFF3 file not found"):
        list(read_gff3(tmp_path / "none.gff"))
    p = tmp_path / "cut.gff.gz"
    p.write_bytes(gzip.compress(GFF.encode())[:-30])
    with pytest.raises(BiofmError, match="truncated or corrupt gzip"):
        list(read_gff3(p))
    (tmp_path / "bin.gff").write_bytes(b"chr1\t\xff\xfe\n")
    with pytest.raises(BiofmError, match="line 1: not UTF-8"):
        list(read_gff3(tmp_path / "bin.gff"))
