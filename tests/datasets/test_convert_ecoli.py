"""The E. coli genomic-element conversions: exact windows on a synthetic genome + GFF3, the fold rule, byte
determinism, and (with the mirror) the registered tables, their checksums and their loading as tasks."""

from __future__ import annotations

import csv
import gzip
import hashlib
import itertools
import random
from pathlib import Path

import numpy as np
import pytest

from biofm.datasets import DATASETS, convert, dataset_path
from biofm.errors import BiofmError

SIZE = 36_000
UNIT = 6_000
TASKS = Path(convert.__file__).resolve().parents[1] / "tasks"
_COMP = str.maketrans("ACGT", "TGCA")


def _rc(seq: str) -> str:
    return seq.translate(_COMP)[::-1]


def _gene(start: int, end: int, strand: str, tag: str, biotype: str = "protein_coding",
          cds: list[tuple[int, int]] | None = None, kind: str = "gene") -> list[str]:
    """GFF3 lines (1-based inclusive) of a gene and its CDS lines (default: one CDS over the whole gene)."""
    extra = ";pseudo=true" if kind == "pseudogene" else ""
    lines = [f"chr\tT\t{kind}\t{start}\t{end}\t.\t{strand}\t.\tID=gene-{tag};locus_tag={tag};"
             f"gene_biotype={biotype}{extra}"]
    if biotype == "protein_coding" and kind == "gene":
        for a, b in cds or [(start, end)]:
            lines.append(f"chr\tT\tCDS\t{a}\t{b}\t.\t{strand}\t0\tID=cds-{tag};Parent=gene-{tag}")
    return lines


def _layout() -> list[str]:
    """Five repeated units (one per fold block) and one unit of special cases; see the comments."""
    lines = ["##gff-version 3"]
    for u in range(5):
        o = u * UNIT
        lines += _gene(o + 1001, o + 1900, "+", f"P{u}")  # upstream o+901..o+1000 is free
        lines += _gene(o + 1951, o + 2850, "+", f"Q{u}")  # operon: its upstream lies inside P -> skipped
        lines += _gene(o + 3001, o + 3900, "-", f"M{u}")  # minus: upstream = rc of o+3901..o+4000
        lines += _gene(o + 4101, o + 4176, "-", f"T{u}", biotype="tRNA")  # an RNA gene has an upstream, no CDS
    o = 5 * UNIT
    lines += _gene(o + 501, o + 800, "-", "PS", kind="pseudogene")  # skipped, but its start still blocks
    lines += _gene(o + 1201, o + 1800, "-", "D1")  # divergent pair: upstream windows overlap, D1's is kept
    lines += _gene(o + 1951, o + 2850, "+", "D2")
    lines += _gene(o + 3001, o + 3900, "+", "S", cds=[(o + 3001, o + 3450), (o + 3450, o + 3900)])  # slippage
    lines.append(f"chr\tT\tmobile_genetic_element\t{o + 4001}\t{o + 5000}\t.\t+\t.\tID=is1")
    lines += _gene(o + 4101, o + 4910, "+", "I")  # inside an insertion sequence: no window
    lines += _gene(o + 5001, o + 5400, "+", "X")  # CDS of 400 bp is not whole codons; upstream inside I
    lines += _gene(o + 5901, o + 6100, "+", "E")  # past the genome's end: skipped
    return lines


N_RUN = (2 * UNIT + 5000, 2 * UNIT + 5300)  # 0-based span of Ns inside an intergenic stretch


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    folder = tmp_path_factory.mktemp("ecoli")
    rng = random.Random(5)
    genome = "".join(rng.choice("ACGT") for _ in range(SIZE))
    genome = genome[: N_RUN[0]] + "N" * (N_RUN[1] - N_RUN[0]) + genome[N_RUN[1]:]
    fa = folder / "g.fna.gz"
    fa.write_bytes(gzip.compress((">chr synthetic\n" + "\n".join(genome[i:i + 80] for i in range(0, SIZE, 80))
                                  + "\n").encode()))
    gff = folder / "g.gff"
    gff.write_text("\n".join(_layout()) + "\n")
    return {"ecoli-k12": [fa], "ecoli-k12-gff": [gff]}


def _genome(inputs: dict[str, list[Path]]) -> str:
    text = gzip.decompress(inputs["ecoli-k12"][0].read_bytes()).decode()
    return "".join(text.splitlines()[1:])


def _rows(path: Path) -> list[dict[str, str]]:
    with gzip.open(path, "rt") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _run(fn, inputs: dict[str, list[Path]], out: Path) -> tuple[list[dict[str, str]], dict[str, int]]:
    stats = fn(inputs, out)
    return _rows(out), stats


def _spans(rows: list[dict[str, str]]) -> list[tuple[int, int]]:
    return sorted((int(r["start"]), int(r["end"])) for r in rows)  # 1-based inclusive


def _genes() -> list[tuple[str, int, int, str]]:
    out = []
    for line in _layout()[1:]:
        c = line.split("\t")
        if c[2] in ("gene", "pseudogene") and int(c[4]) <= SIZE:
            out.append((c[8].split(";")[1].removeprefix("locus_tag="), int(c[3]), int(c[4]), c[6]))
    return out


def _check_common(rows: list[dict[str, str]]) -> None:
    spans = _spans(rows)
    assert all(b - a + 1 == convert.WINDOW_BP for a, b in spans)
    assert all(b1 < a2 for (_, b1), (a2, _) in itertools.pairwise(spans)), "overlapping windows"
    assert all(set(r["sequence"]) <= set("ACGT") for r in rows)
    # a gene, its 300 bp upstream zone and every window touching them sit in one fold
    for _, a, b, strand in _genes():
        lo, hi = (a - convert.UPSTREAM_CLEAR_BP, b) if strand == "+" else (a, b + convert.UPSTREAM_CLEAR_BP)
        folds = {r["fold"] for r in rows if int(r["start"]) <= hi and int(r["end"]) >= lo}
        assert len(folds) <= 1, (a, b, folds)
    order = sorted(rows, key=lambda r: int(r["start"]))
    assert [int(r["fold"]) for r in order] == sorted(int(r["fold"]) for r in rows)  # contiguous blocks


def test_elements_windows_follow_the_rules(inputs: dict[str, list[Path]], tmp_path: Path) -> None:
    genome = _genome(inputs)
    rows, stats = _run(convert.ecoli_elements, inputs, tmp_path / "e.tsv.gz")
    _check_common(rows)
    assert {r["fold"] for r in rows} == {"0", "1", "2", "3", "4"}  # one unit per fifth of the genome
    by = {lab: [r for r in rows if r["label"] == lab] for lab in ("upstream", "cds", "intergenic")}
    assert {k: len(v) for k, v in by.items()} == {"upstream": 17, "cds": 17, "intergenic": 17}
    up = {r["gene"]: r for r in by["upstream"]}
    # P, M, T in every unit, D1 (not D2: overlapping divergent windows) and S; never Q (inside P), I (IS element)
    assert sorted(up) == sorted([f"{g}{u}" for g in "PMT" for u in range(5)] + ["D1", "S"])
    for u in range(5):
        o = u * UNIT
        assert up[f"P{u}"]["sequence"] == genome[o + 900 : o + 1000] and up[f"P{u}"]["strand"] == "+"
        m = up[f"M{u}"]  # minus strand: the 100 bp after the gene's end, reverse-complemented
        assert (int(m["start"]), int(m["end"]), m["strand"]) == (o + 3901, o + 4000, "-")
        assert m["sequence"] == _rc(genome[o + 3900 : o + 4000])
    genes = {tag: (a, b, s) for tag, a, b, s in _genes()}
    assert sorted(r["gene"] for r in by["cds"]) == sorted([f"{g}{u}" for g in "PQM" for u in range(5)] + ["D1", "D2"])
    for r in by["cds"]:
        a, b, strand = genes[r["gene"]]
        s, e = int(r["start"]), int(r["end"])
        assert s - a >= convert.CDS_MARGIN_BP and b - e >= convert.CDS_MARGIN_BP and r["strand"] == strand
        assert r["sequence"] == (genome[s - 1 : e] if strand == "+" else _rc(genome[s - 1 : e]))
    starts = [(a if s == "+" else b, s) for _, a, b, s in _genes()]
    for r in by["intergenic"]:
        s, e = int(r["start"]), int(r["end"])
        assert not any(a <= e and s <= b for _, a, b, _ in _genes()), "intergenic window inside a gene"
        assert not (e >= 5 * UNIT + 4001 and s <= 5 * UNIT + 5000), "intergenic window in the insertion sequence"
        for p, strand in starts:  # never in the 300 bp upstream of a start
            assert (e < p - 300 or s >= p) if strand == "+" else (s > p + 300 or e <= p)
        seq = genome[s - 1 : e]
        assert r["sequence"] == (seq if r["strand"] == "+" else _rc(seq))
    assert stats["per_class"] == 17 and stats["pseudogene"] == 1 and stats["gene_past_genome_end"] == 1
    assert stats["upstream_overlaps_a_gene"] == 6 and stats["upstream_overlaps_another_upstream"] == 1
    assert stats["cds_not_one_line"] == 1 and stats["upstream_window_in_mobile_element"] == 1
    assert stats["cds_window_in_mobile_element"] == 1 and stats["intergenic_window_not_acgt"] >= 3
    assert stats["cds_odd_coordinates"] == 1


def test_cds_strand_windows_and_labels(inputs: dict[str, list[Path]], tmp_path: Path) -> None:
    genome = _genome(inputs)
    rows, stats = _run(convert.ecoli_cds_strand, inputs, tmp_path / "s.tsv.gz")
    _check_common(rows)
    assert stats["per_class"] == 8 and [r["label"] for r in rows].count("1") == 8 == len(rows) // 2
    assert len({r["gene"] for r in rows}) == len(rows)  # one window per gene, one orientation only
    genes = {tag: (a, b, s) for tag, a, b, s in _genes()}
    for r in rows:
        a, b, coding = genes[r["gene"]]
        s, e = int(r["start"]), int(r["end"])
        assert a + convert.CDS_MARGIN_BP <= s and e <= b - convert.CDS_MARGIN_BP
        read_on = coding if r["label"] == "1" else ("-" if coding == "+" else "+")
        assert r["strand"] == read_on
        assert r["sequence"] == (genome[s - 1 : e] if read_on == "+" else _rc(genome[s - 1 : e]))


@pytest.mark.parametrize("fn", [convert.ecoli_elements, convert.ecoli_cds_strand])
def test_two_runs_give_identical_bytes(inputs: dict[str, list[Path]], tmp_path: Path, fn) -> None:
    fn(inputs, tmp_path / "a.tsv.gz")
    fn(inputs, tmp_path / "b.tsv.gz")
    assert (tmp_path / "a.tsv.gz").read_bytes() == (tmp_path / "b.tsv.gz").read_bytes()


def test_annotation_of_another_sequence_is_refused(inputs: dict[str, list[Path]], tmp_path: Path) -> None:
    gff = tmp_path / "other.gff"
    gff.write_text("chrX\tT\tgene\t1\t300\t.\t+\t.\tID=g\n")
    with pytest.raises(BiofmError, match=r"other\.gff, line 1: seqid 'chrX' is not the genome's record 'chr'"):
        convert.ecoli_elements({**inputs, "ecoli-k12-gff": [gff]}, tmp_path / "x.tsv.gz")


# ------------------------------------------------------------------------------------- the real tables


@pytest.mark.parametrize(("name", "yaml", "counts"), [
    ("ecoli-elements", "ecoli_elements.yaml", {"cds": 484, "intergenic": 484, "upstream": 484}),
    ("ecoli-cds-strand", "ecoli_cds_strand.yaml", {"0": 1000, "1": 1000}),
])
def test_registered_tables_reproduce_and_load_as_tasks(mirror: Path, name: str, yaml: str,
                                                       counts: dict[str, int]) -> None:
    from biofm.dna.tasks import load_task
    from biofm.eval.folds import make_folds

    path = dataset_path(name)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == DATASETS[name].output_sha256
    rows = _rows(path)
    spans = _spans(rows)
    assert all(b1 < a2 for (_, b1), (a2, _) in itertools.pairwise(spans))
    genes: dict[str, set[str]] = {}
    for r in rows:
        if r["gene"] != ".":
            genes.setdefault(r["gene"], set()).add(r["fold"])
    assert all(len(f) == 1 for f in genes.values())
    task = load_task(TASKS / yaml)
    assert dict(zip(task.classes or [], np.bincount(task.labels).tolist(), strict=True)) == counts
    folds = make_folds(task)
    assert len(folds) == 5 and sorted(np.concatenate([te for _, te in folds]).tolist()) == list(range(len(rows)))
    for train, test in folds:  # every class in every fold's test set
        assert len(np.unique(task.labels[test])) == len(counts) and len(train) + len(test) == len(rows)
