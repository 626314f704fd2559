"""Shared by the `biofm analyze` tests: a tiny freshly initialised DNA model (tests/conftest.py's
`make_model`; no pretraining, so every test runs in seconds), and a small annotated genome."""

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, make_model) -> Path:
    return make_model(tmp_path_factory.mktemp("analyze-model") / "model")


GENOME_FEATURES = [  # (record, type, start, end, strand): GFF's 1-based inclusive coordinates
    ("chrA", "gene", 101, 700, "+"), ("chrA", "five_prime_UTR", 101, 140, "+"), ("chrA", "CDS", 141, 400, "+"),
    ("chrA", "intron", 401, 500, "+"), ("chrA", "CDS", 501, 660, "+"), ("chrA", "three_prime_UTR", 661, 700, "+"),
    ("chrA", "gene", 901, 1300, "-"), ("chrA", "CDS", 901, 1300, "-"),
    ("chrA", "gene", 1501, 1590, "+"), ("chrA", "tRNA", 1501, 1590, "+"),
    ("chrB", "gene", 301, 500, "+"), ("chrB", "CDS", 301, 500, "+"),
]


def write_annotated_genome(folder: Path, extra: tuple = ()) -> tuple[Path, Path]:
    """genome.fa (chrA 2,000 bp, chrB 800 bp, random) and genome.gff3 describing it."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    fasta, gff = folder / "genome.fa", folder / "genome.gff3"
    fasta.write_text("".join(f">{n}\n{''.join(rng.choice(list('ACGT'), size))}\n"
                             for n, size in (("chrA", 2000), ("chrB", 800))))
    lines = [f"{r}\tt\t{k}\t{a}\t{b}\t.\t{s}\t.\tID=f{i}\n" for i, (r, k, a, b, s) in
             enumerate([*GENOME_FEATURES, *extra])]
    gff.write_text("##gff-version 3\n" + "".join(lines))
    return fasta, gff


@pytest.fixture(scope="session")
def annotated_genome(tmp_path_factory) -> tuple[Path, Path]:
    return write_annotated_genome(tmp_path_factory.mktemp("analyze-genome"))


@pytest.fixture(scope="session")
def genome_writer():
    """write_annotated_genome(folder, extra=features) for tests that need a variant of the genome."""
    return write_annotated_genome
