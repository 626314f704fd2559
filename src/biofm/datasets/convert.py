"""Turn a public original into the file biofm reads; each function is named by a registry entry.

A conversion gets `inputs` (dataset name -> its local files, in registry order) and writes one file at
`out` (a temporary path the caller renames into place). Text outputs are byte-reproducible (gzip with
no name and a zero timestamp), so the registry can hold their checksum and a test can hold a
conversion to it. Bump a function's entry in `VERSIONS` when its output changes: cached results
are then rebuilt.
"""

from __future__ import annotations

import bisect
import csv
import gzip
import hashlib
import io
import itertools
import json
import re
import warnings
from collections import Counter
from pathlib import Path

from biofm.errors import BiofmError

VERSIONS = {"pubmedqa_table": 1, "pubmed_abstracts": 1, "pbmc_counts": 1, "ecoli_elements": 1, "ecoli_cds_strand": 1}

_WS = re.compile(r"\s+")
_PUBTATOR_TITLE_ABSTRACT = re.compile(r"^(\d+)\|([ta])\|(.*)$")


def _squash(text: str) -> str:
    return _WS.sub(" ", text).strip()


def _write_gz(out: Path, text: str) -> None:
    with open(out, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, compresslevel=9, mtime=0) as gz:
        gz.write(text.encode("utf-8"))


def _pubmedqa(files: list[Path]) -> tuple[dict, dict]:
    ori, truth = files
    return json.loads(ori.read_text(encoding="utf-8")), json.loads(truth.read_text(encoding="utf-8"))


def pubmedqa_table(inputs: dict[str, list[Path]], out: Path) -> None:
    """PubMedQA PQA-L as a TSV.gz with columns id, text, label, split.

    text = the question, a space, and the abstract's contexts joined (its conclusion, PubMedQA's
    LONG_ANSWER, left out: the reasoning-required setting); label = final_decision (yes/no/maybe);
    split = `test` for the 500 ids of the official test set, else `train`.
    """
    data, test = _pubmedqa(inputs["pubmedqa-pqal"])
    rows = []
    for pmid, item in data.items():
        label = item.get("final_decision")
        if label not in ("yes", "no", "maybe"):
            raise BiofmError(f"{inputs['pubmedqa-pqal'][0]}: question {pmid}: final_decision {label!r} is not "
                             "yes/no/maybe")
        if pmid in test and test[pmid] != label:
            raise BiofmError(f"{inputs['pubmedqa-pqal'][1]}: question {pmid}: test label {test[pmid]!r} differs "
                             f"from final_decision {label!r}")
        text = _squash(item["QUESTION"] + " " + " ".join(item["CONTEXTS"]))
        rows.append({"id": pmid, "text": text, "label": label, "split": "test" if pmid in test else "train"})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["id", "text", "label", "split"], delimiter="\t", lineterminator="\n",
                            quoting=csv.QUOTE_MINIMAL)
    writer.writeheader()
    writer.writerows(rows)
    _write_gz(out, buf.getvalue())


def _pubtator_articles(path: Path) -> dict[str, dict[str, str]]:
    """{pmid: {"t": title, "a": abstract}} in file order (annotation lines are skipped)."""
    found: dict[str, dict[str, str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _PUBTATOR_TITLE_ABSTRACT.match(line)
        if m:
            pmid, kind, text = m.groups()
            found.setdefault(pmid, {})[kind] = text
    return found


def pubmed_abstracts(inputs: dict[str, list[Path]], out: Path) -> None:
    """Title + abstract of every NCBI-disease and BC5CDR article as JSONL.gz (`pmid`, `text`, `source`).

    Each PubMed id and each text is kept once (the NCBI corpus repeats PMID 8528200), and every article
    that is in PubMedQA is left out, so a PubMedQA probe never scores text seen in pretraining.
    """
    exclude = set(_pubmedqa(inputs["pubmedqa-pqal"])[0])
    seen_ids: set[str] = set()
    seen_text: set[str] = set()
    lines = []
    for source, key in (("ncbi_disease", "ncbi-disease"), ("bc5cdr", "bc5cdr")):
        for path in inputs[key]:
            for pmid, parts in _pubtator_articles(path).items():
                text = _squash(parts.get("t", "") + " " + parts.get("a", ""))
                if pmid in exclude or pmid in seen_ids or not text or text in seen_text:
                    continue
                seen_ids.add(pmid)
                seen_text.add(text)
                lines.append(json.dumps({"pmid": pmid, "text": text, "source": source}, ensure_ascii=False) + "\n")
    _write_gz(out, "".join(lines))


def pbmc_counts(inputs: dict[str, list[Path]], out: Path) -> None:
    """Integer raw counts from scanpy's pbmc68k_reduced: rint(expm1(raw.X) * obs.n_counts / 1e4).

    scanpy stores the cells log-normalised to 10,000 counts (log1p of count / total * 1e4) in `.raw`
    and each cell's total in `obs.n_counts`; undoing both gives the counts back (the recomputed values
    sit within 0.05 of an integer). obs keeps the labels and QC columns; var keeps the gene names.
    """
    import anndata as ad
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp

    src = inputs["pbmc68k-reduced"][0]
    with warnings.catch_warnings():  # anndata's notes on moving uns['neighbors'] matrices into obsp
        warnings.simplefilter("ignore")
        adata = ad.read_h5ad(src)
    if adata.raw is None or "n_counts" not in adata.obs:
        raise BiofmError(f"{src}: expected scanpy's pbmc68k_reduced (log-normalised .raw and obs.n_counts)")
    raw = adata.raw.X.toarray() if sp.issparse(adata.raw.X) else np.asarray(adata.raw.X)
    counts = np.expm1(raw.astype(np.float64)) * adata.obs["n_counts"].to_numpy(np.float64)[:, None] / 1e4
    rounded = np.rint(counts)
    off = float(np.abs(counts - rounded).max()) if counts.size else 0.0
    if off > 0.5:
        raise BiofmError(f"{src}: .raw does not undo to integer counts (an entry is {off:.2f} from an integer)")
    obs = adata.obs[["bulk_labels", "louvain", "phase", "n_counts", "n_genes", "percent_mito"]].copy()
    result = ad.AnnData(X=sp.csr_matrix(rounded.astype(np.int32)), obs=obs,
                        var=pd.DataFrame(index=adata.raw.var_names.copy()),
                        uns={"origin": "scanpy 10x_pbmc68k_reduced.h5ad; counts = rint(expm1(raw.X) * obs.n_counts "
                                       "/ 1e4)"})
    result.write_h5ad(out)


# ------------------------------------------------------------------------- E. coli genomic-element tasks
#
# Task tables drawn from a genome and its GFF3 annotation (ecoli-k12 + ecoli-k12-gff). The demo pretrains
# on the same genome, so these tasks are transductive (as Nucleotide Transformer's genomic-element maps
# are): they ask whether pretraining taught the model what the genome's own regions look like.
# Randomness is a SHA-256 of a fixed salt and the item's coordinates, not a seeded generator, so the
# tables are identical on every Python / NumPy version and their checksums can be registered.

WINDOW_BP = 100
UPSTREAM_CLEAR_BP = 300  # intergenic windows keep this far from every gene start (its promoter side)
CDS_MARGIN_BP = 100  # a CDS window keeps this far from both ends of its CDS (no start / stop codon context)
PER_CLASS = 1000  # target examples per class (fewer when the genome cannot give them)
N_FOLD_BLOCKS = 5
_SALT = "biofm-ecoli-tasks-v1"
_OCCUPIED = frozenset({"gene", "pseudogene", "CDS", "exon", "tRNA", "rRNA", "ncRNA", "mRNA", "transcript"})
_REPEATS = frozenset({"mobile_genetic_element"})  # insertion sequences: copies elsewhere would leak across folds
_COMPLEMENT = str.maketrans("ACGTN", "TGCAN")

# One window: 0-based half-open genome coordinates, the strand it is read on, its class, the gene it
# belongs to ("." for intergenic) and the sequence as read on that strand.
_Window = tuple[int, int, str, str, str, str]


def _revcomp(seq: str) -> str:
    # biofm.dna.fasta.reverse_complement is the DNA modality's; this layer may not import it
    return seq.translate(_COMPLEMENT)[::-1]


def _hash_int(*parts: object) -> int:
    """A deterministic pseudo-random integer for an item (same on every platform and version)."""
    text = "|".join([_SALT, *(str(p) for p in parts)])
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def _read_genome(path: Path) -> tuple[str, str]:
    """The single record of a (gzipped) FASTA file: (name, upper-case sequence).

    Parsed here because biofm.dna.fasta belongs to the DNA modality, which this shared layer may not
    import; a 4.6 Mbp bacterial chromosome is a few lines of text handling.
    """
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    names: list[str] = []
    parts: list[str] = []
    for n, line in enumerate(raw.decode("ascii", errors="replace").splitlines(), 1):
        if line.startswith(">"):
            names.append(line[1:].split()[0] if line[1:].split() else "")
            if len(names) > 1:
                raise BiofmError(f"{path}, line {n}: a second FASTA record ({names[-1]!r}); expected one chromosome")
        elif line.strip():
            if not names:
                raise BiofmError(f"{path}, line {n}: sequence before the first '>' header")
            parts.append(line.strip())
    if not names or not names[0]:
        raise BiofmError(f"{path}: no named FASTA record")
    seq = "".join(parts).upper()
    bad = set(seq) - set("ACGTRYSWKMBDHVN")
    if bad:
        raise BiofmError(f"{path}: record {names[0]!r} holds non-nucleotide characters {''.join(sorted(bad))!r}")
    return names[0], seq


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, disjoint union of half-open spans."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _hits(merged: list[tuple[int, int]], a: int, b: int) -> bool:
    """Whether [a, b) overlaps any span of a merged list."""
    i = bisect.bisect_right(merged, (b, b)) - 1  # the last span starting before b
    return i >= 0 and merged[i][1] > a and merged[i][0] < b


def _overlapping(by_start: list[tuple[int, int]], longest: int, a: int, b: int) -> list[tuple[int, int]]:
    """The spans (sorted by start, none longer than `longest`) that overlap [a, b)."""
    lo = bisect.bisect_left(by_start, (a - longest, -1))
    hi = bisect.bisect_left(by_start, (b, -1))
    return [s for s in by_start[lo:hi] if s[1] > a]


class _Gene:
    """A usable annotated gene: 0-based half-open span, strand, locus tag, biotype, its CDS lines."""

    __slots__ = ("biotype", "cds", "end", "name", "start", "strand")

    def __init__(self, name: str, start: int, end: int, strand: str, biotype: str) -> None:
        self.name, self.start, self.end, self.strand, self.biotype = name, start, end, strand, biotype
        self.cds: list[tuple[int, int, str]] = []


def _ecoli_candidates(inputs: dict[str, list[Path]]) -> tuple[str, int, dict[str, list[_Window]], Counter[str],
                                                                list[tuple[int, int]]]:
    """Every window the genome offers per class, before balancing, with the reasons genes were skipped.

    Returns (seqid, genome length, {class: windows}, skip counts, spans that fold boundaries may not cut).
    """
    from biofm.io.gff import read_gff3  # neutral reader (biofm.io), shared with `biofm analyze`

    fasta, gff = inputs["ecoli-k12"][0], inputs["ecoli-k12-gff"][0]
    seqid, genome = _read_genome(fasta)
    size = len(genome)
    skips: Counter[str] = Counter()
    occupied: list[tuple[int, int]] = []  # every annotated gene-like span, pseudogenes included
    repeats: list[tuple[int, int]] = []
    starts: list[tuple[int, str]] = []  # (0-based 5' position, strand) of every gene and pseudogene
    genes: dict[str, _Gene] = {}
    cds_lines: list[tuple[str, int, int, str, bool]] = []  # (parent, start, end, strand, pseudo)
    for f in read_gff3(gff):
        if f.seqid != seqid:
            raise BiofmError(f"{gff}, line {f.line}: seqid {f.seqid!r} is not the genome's record {seqid!r} ({fasta})")
        if f.end > size:  # origin-spanning features of a circular genome are written past its end
            skips[f"{f.type}_past_genome_end"] += 1
            continue
        span = (f.start - 1, f.end)
        if f.type in _REPEATS:
            repeats.append(span)
            continue
        pseudo = f.type == "pseudogene" or f.flag("pseudo") or f.get("gene_biotype") == "pseudogene"
        if f.type in _OCCUPIED or pseudo:
            occupied.append(span)
        if f.type in ("gene", "pseudogene") and f.strand in "+-":
            starts.append((f.start - 1 if f.strand == "+" else f.end - 1, f.strand))
        if f.type == "CDS":
            cds_lines.append((f.get("Parent", "") or "", f.start - 1, f.end, f.strand, pseudo))
        if f.type not in ("gene", "pseudogene"):
            continue
        if pseudo:
            skips["pseudogene"] += 1
        elif f.strand not in "+-":
            skips["gene_without_strand"] += 1
        else:
            name = f.get("locus_tag") or f.get("ID") or f"line{f.line}"
            gid = f.get("ID") or name
            genes[gid] = _Gene(name, f.start - 1, f.end, f.strand, f.get("gene_biotype", "") or "")
    for parent, a, b, strand, pseudo in cds_lines:
        if parent in genes and not pseudo:
            genes[parent].cds.append((a, b, strand))
    occupied_m, repeats_m = _merge(occupied), _merge(repeats)
    by_start = sorted(occupied)
    longest = max((b - a for a, b in occupied), default=0)
    clear_zones = [(max(p - UPSTREAM_CLEAR_BP, 0), p) if s == "+" else (p + 1, min(p + 1 + UPSTREAM_CLEAR_BP, size))
                   for p, s in starts]
    pools: dict[str, list[_Window]] = {"upstream": [], "cds": [], "intergenic": []}

    def take(a: int, b: int, strand: str, label: str, gene: str) -> None:
        seq = genome[a:b] if strand == "+" else _revcomp(genome[a:b])
        if set(seq) - set("ACGT"):
            skips[f"{label}_window_not_acgt"] += 1
        elif _hits(repeats_m, a, b):
            skips[f"{label}_window_in_mobile_element"] += 1
        else:
            pools[label].append((a, b, strand, label, gene, seq))

    for gene in sorted(genes.values(), key=lambda g: (g.start, g.end, g.strand, g.name)):
        # upstream: the WINDOW_BP before the 5' end on the gene's strand, wholly outside every annotated gene
        a, b = (gene.start - WINDOW_BP, gene.start) if gene.strand == "+" else (gene.end, gene.end + WINDOW_BP)
        if a < 0 or b > size:
            skips["upstream_off_genome"] += 1
        elif _hits(occupied_m, a, b):
            skips["upstream_overlaps_a_gene"] += 1
        else:
            take(a, b, gene.strand, "upstream", gene.name)
        # cds: one window per protein-coding gene with a single, in-frame CDS line on the gene's strand
        if gene.biotype != "protein_coding":
            continue
        if len(gene.cds) != 1:
            skips["cds_not_one_line"] += 1  # none, several products (dnaX) or ribosomal slippage
            continue
        ca, cb, cstrand = gene.cds[0]
        if cstrand != gene.strand or ca < gene.start or cb > gene.end or (cb - ca) % 3:
            skips["cds_odd_coordinates"] += 1
            continue
        room = (cb - ca) - 2 * CDS_MARGIN_BP - WINDOW_BP  # choices of window start
        if room < 0:
            skips["cds_too_short"] += 1
            continue
        a = ca + CDS_MARGIN_BP + _hash_int("cds-offset", seqid, ca, cb) % (room + 1)
        if any(s not in ((gene.start, gene.end), (ca, cb)) for s in _overlapping(by_start, longest, a, a + WINDOW_BP)):
            skips["cds_window_overlaps_another_gene"] += 1
            continue
        take(a, a + WINDOW_BP, gene.strand, "cds", gene.name)

    # intergenic: tile the sequence outside genes, repeats and every gene's UPSTREAM_CLEAR_BP promoter side
    blocked = _merge(occupied + repeats + clear_zones)
    cursor = 0
    for a, b in [*blocked, (size, size)]:
        gap = a - cursor
        first = cursor + (gap % WINDOW_BP) // 2  # centre the tiling in the gap
        for s in range(first, first + (gap // WINDOW_BP) * WINDOW_BP, WINDOW_BP):
            take(s, s + WINDOW_BP, "+" if _hash_int("strand", seqid, s) % 2 == 0 else "-", "intergenic", ".")
        cursor = max(cursor, b)

    # upstream windows of divergent genes with a short shared promoter overlap: keep the leftmost
    kept: list[_Window] = []
    for w in sorted(pools["upstream"]):
        if kept and w[0] < kept[-1][1]:
            skips["upstream_overlaps_another_upstream"] += 1
        else:
            kept.append(w)
    pools["upstream"] = kept
    # identical sequences (either strand) anywhere in the genome would sit in two folds: keep the first copy
    seen: set[str] = set()
    for label in pools:
        unique = []
        for w in pools[label]:
            key = min(w[5], _revcomp(w[5]))
            if key in seen:
                skips[f"{label}_duplicate_sequence"] += 1
            else:
                seen.add(key)
                unique.append(w)
        pools[label] = unique
    no_cut = _merge(occupied + clear_zones)  # a fold boundary inside a gene or its promoter side would split it
    return seqid, size, pools, skips, no_cut


def _pick(pool: list[_Window], n: int, tag: str) -> list[_Window]:
    """n windows of a pool, chosen by hash order (deterministic, position-independent)."""
    return sorted(pool, key=lambda w: (_hash_int(tag, w[0], w[1], w[2]), w[0]))[:n]


def _fold_boundaries(size: int, no_cut: list[tuple[int, int]], chosen: list[_Window]) -> list[int]:
    """N_FOLD_BLOCKS - 1 cut points near equal fractions of the genome, each moved to the nearest position
    that splits no gene, no gene's promoter side and no chosen window (a cut at p separates p-1 from p)."""
    spans = _merge(no_cut + [(w[0], w[1]) for w in chosen])

    def cuts_nothing(p: int) -> bool:
        i = bisect.bisect_right(spans, (p, size + 1)) - 1
        return i < 0 or not (spans[i][0] < p < spans[i][1])

    cuts: list[int] = []
    for k in range(1, N_FOLD_BLOCKS):
        target = round(k * size / N_FOLD_BLOCKS)
        for d in range(size):
            p = next((q for q in (target - d, target + d) if 0 < q < size and cuts_nothing(q)), None)
            if p is not None:
                break
        else:
            raise BiofmError(f"no position of the {size:,} bp genome lies outside every gene to cut a fold block at")
        cuts.append(p)
    return cuts


def _write_windows(out: Path, seqid: str, size: int, chosen: list[_Window], no_cut: list[tuple[int, int]],
                   label_of: dict[str, str] | None = None) -> list[int]:
    """Write the table (rows in genome order; coordinates 1-based inclusive) and return each row's fold."""
    cuts = _fold_boundaries(size, no_cut, chosen)
    rows = sorted(chosen)
    for prev, cur in itertools.pairwise(rows):
        if cur[0] < prev[1]:  # the pools are disjoint by construction; a failure here is a bug
            raise AssertionError(f"overlapping windows at {prev[0]}..{prev[1]} and {cur[0]}..{cur[1]}")
    buf = io.StringIO()
    buf.write("sequence\tlabel\tfold\tseqid\tstart\tend\tstrand\tgene\n")
    folds = []
    for a, b, strand, label, gene, seq in rows:
        fold = bisect.bisect_right(cuts, a)
        folds.append(fold)
        shown = label_of[label] if label_of else label
        buf.write(f"{seq}\t{shown}\t{fold}\t{seqid}\t{a + 1}\t{b}\t{strand}\t{gene}\n")
    _write_gz(out, buf.getvalue())
    return folds


def ecoli_elements(inputs: dict[str, list[Path]], out: Path) -> dict[str, int]:
    """Three classes of 100 bp E. coli K-12 windows as a TSV.gz (sequence, label, fold, seqid, start, end,
    strand, gene): `upstream`, `cds` and `intergenic`, balanced (PER_CLASS each, fewer if a class runs out).

    * upstream: the 100 bp directly upstream of an annotated gene's 5' end (any biotype), read on the
      gene's strand (reverse-complemented for minus-strand genes) -- the promoter / RBS region. Only
      windows lying wholly outside every annotated gene are used (inside an operon the "upstream" of a
      gene is its neighbour's coding sequence); of two divergent genes whose windows overlap, the left one.
    * cds: one window per protein-coding gene with a single in-frame CDS line, at a hashed offset at
      least 100 bp from both CDS ends, on the coding strand, not overlapping any other gene.
    * intergenic: windows tiled through sequence outside every gene, pseudogene and insertion sequence
      and not within 300 bp upstream of any gene's or pseudogene's start; a hashed strand.

    Skipped: pseudogenes (their spans and starts still count as genes), features past the genome's end,
    genes without a strand, CDS that are not one in-frame line inside their gene, windows with a base
    other than ACGT, windows in insertion sequences, and every window whose sequence (either strand)
    repeats an earlier one. The counts are returned; on ecoli-k12 + ecoli-k12-gff: 145 pseudogenes;
    upstream 2,350 inside a gene, 220 overlapping a divergent neighbour's, 13 in an insertion sequence,
    8 repeated (rRNA / tRNA copies) -> 1,903 usable; CDS 516 shorter than 300 bp, 37 overlapping another
    gene, 26 in an insertion sequence, 10 not one line -> 3,699; intergenic 484, the limit, so 484 per
    class. About a third of the intergenic windows share a 24-mer with a window of another fold: REP /
    BIME repeat families that are what intergenic E. coli sequence is made of, not copies of one locus.

    Folds (no leakage between folds): the chromosome is cut into 5 contiguous blocks near its fifths,
    each cut moved to the nearest position that lies in no gene, in no gene's 300 bp upstream zone and in
    no chosen window; `fold` = the block of a window's start. A gene's upstream and CDS windows, and its
    neighbours', therefore share a fold, and no window or gene straddles two folds. Windows never overlap.
    """
    seqid, size, pools, skips, no_cut = _ecoli_candidates(inputs)
    n = min(PER_CLASS, *(len(p) for p in pools.values()))
    if n < 2:
        raise BiofmError(f"{inputs['ecoli-k12-gff'][0]}: the annotation gives too few windows for a class "
                         f"({', '.join(f'{k} {len(v)}' for k, v in pools.items())})")
    chosen = [w for label, pool in pools.items() for w in _pick(pool, n, label)]
    _write_windows(out, seqid, size, chosen, no_cut)
    return {**{f"available_{k}": len(v) for k, v in pools.items()}, "per_class": n, **dict(sorted(skips.items()))}


def ecoli_cds_strand(inputs: dict[str, list[Path]], out: Path) -> dict[str, int]:
    """100 bp E. coli K-12 CDS windows read on their coding strand (label 1) or reverse-complemented
    (label 0), balanced, as a TSV.gz with the columns of `ecoli_elements`.

    Windows are `ecoli_elements`' CDS candidates (one per protein-coding gene, same rule and offsets);
    2 x PER_CLASS genes are drawn by hash and each contributes one window, in one orientation only, so
    a negative is always a different CDS than any positive. `strand` is the strand the row is read on.
    Folds follow the same 5-block rule as `ecoli_elements`.
    """
    seqid, size, pools, skips, no_cut = _ecoli_candidates(inputs)
    n = min(PER_CLASS, len(pools["cds"]) // 2)
    if n < 2:
        raise BiofmError(f"{inputs['ecoli-k12-gff'][0]}: only {len(pools['cds'])} CDS windows; need at least 4")
    chosen = []
    for i, (a, b, strand, _, gene, seq) in enumerate(_pick(pools["cds"], 2 * n, "cds-strand")):
        if i < n:
            chosen.append((a, b, strand, "coding", gene, seq))
        else:
            chosen.append((a, b, "-" if strand == "+" else "+", "reverse", gene, _revcomp(seq)))
    _write_windows(out, seqid, size, chosen, no_cut, label_of={"coding": "1", "reverse": "0"})
    return {"available_cds": len(pools["cds"]), "per_class": n, **dict(sorted(skips.items()))}
