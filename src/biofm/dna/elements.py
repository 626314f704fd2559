"""Labelled windows of genomic elements, drawn from a genome and its GFF3 annotation (`biofm analyze`).

`biofm analyze --annotation GFF --fasta FASTA` asks where in the network a DNA model tells a coding
window from an intron, a promoter or a tRNA. That needs windows whose label is beyond doubt, so every
base of the genome first gets one class, and a window is used only when all its bases carry the class
of the feature it was cut from:

* classes, from the feature types: CDS; rRNA; tRNA; ncRNA (the small and long non-coding RNA types);
  5'UTR; 3'UTR; intron; promoter = the `window_bp` bases directly upstream of a gene's 5' end on its
  strand; intergenic = bases in no annotated feature and more than `upstream_clear_bp` upstream of every
  gene (so intergenic windows are not unannotated promoters). A class the annotation lacks is absent.
* overlaps are resolved by priority, first wins: CDS > rRNA > tRNA > ncRNA > 5'UTR > 3'UTR > intron >
  promoter > intergenic. Annotated bases of no class (pseudogenes, mobile elements, exons of transcripts
  without CDS/UTR detail, gene spans between their parts) and the clear zone upstream of genes are
  `other`: they block every window and are never sampled.
* candidate windows tile each feature of a class (non-overlapping, centred in the feature) and each
  intergenic stretch; a promoter has one candidate per gene. A feature is read on its own strand
  (reverse-complemented on '-'); stranded classes skip features without a strand; intergenic windows
  get a seeded random strand. Pseudogenes (`pseudo=true`, pseudogene types) give no windows.
* sampling: classes in priority order; each class's valid candidates (every base of that class, only
  A/C/G/T) in a seeded random order, a window taken unless it overlaps a window already taken (of any
  class) or repeats the sequence of one (either strand: rRNA operons hold identical copies); up to
  `per_class` per class. Features past their record's end (origin-spanning genes of a circular genome)
  are skipped and counted.

The per-base class track also labels the tokens of the attention analysis and the features drawn under
the likelihood track, so one rule decides all three.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from biofm.dna.fasta import read_fasta, reverse_complement
from biofm.errors import BiofmError, where
from biofm.io.gff import Feature, read_gff3

__all__ = ["CLASSES", "OTHER", "Elements", "Window", "element_windows"]

# Priority order (first wins where features overlap); a code is the index here, OTHER after them.
CLASSES: tuple[str, ...] = ("CDS", "rRNA", "tRNA", "ncRNA", "5'UTR", "3'UTR", "intron", "promoter", "intergenic")
OTHER = "other"
_CODE = {c: i for i, c in enumerate(CLASSES)}
_OTHER = len(CLASSES)
_PROMOTER, _INTERGENIC = _CODE["promoter"], _CODE["intergenic"]
_ACGT = np.frombuffer(b"ACGT", dtype=np.uint8)

# GFF3 / Sequence Ontology types of each feature class (GFF3 spellings seen at NCBI, Ensembl, WormBase,
# TAIR and FlyBase)
_TYPES: dict[str, str] = {
    "CDS": "CDS",
    "rRNA": "rRNA",
    "tRNA": "tRNA",
    **dict.fromkeys(("ncRNA", "snRNA", "snoRNA", "miRNA", "pre_miRNA", "piRNA", "lnc_RNA", "lncRNA",
                     "antisense_RNA", "tmRNA", "RNase_P_RNA", "RNase_MRP_RNA", "SRP_RNA", "scRNA", "scaRNA",
                     "circular_ncRNA", "nc_primary_transcript", "Y_RNA", "vault_RNA", "telomerase_RNA",
                     "guide_RNA"), "ncRNA"),
    **dict.fromkeys(("five_prime_UTR", "five_prime_utr", "5'UTR", "5UTR"), "5'UTR"),
    **dict.fromkeys(("three_prime_UTR", "three_prime_utr", "3'UTR", "3UTR"), "3'UTR"),
    "intron": "intron",
}
# Whose 5' end has a promoter upstream
_GENE_TYPES = frozenset({"gene"})
# Lines that describe the sequence or evidence points, not an element: they neither label nor block bases
_NOT_ELEMENTS = frozenset({"region", "chromosome", "contig", "supercontig", "scaffold", "sequence_feature",
                           "origin_of_replication", "transcription_end_site", "TSS", "polyA_site",
                           "possible_base_call_error", "base_call_error_correction"})


@dataclass(frozen=True)
class Window:
    """One sampled window: 0-based half-open coordinates on `record`, read on `strand`."""

    record: str
    start: int
    end: int
    strand: str
    label: str
    seq: str  # as read on `strand`
    feature: str  # the GFF line it was cut from ("gene ID" for promoters), "" for intergenic


@dataclass
class Elements:
    """An annotated genome with its per-base classes and the windows sampled from it."""

    fasta: str
    gff: str
    window_bp: int
    per_class: int
    seed: int
    records: dict[str, str]  # name -> upper-case ACGTN sequence, in FASTA order
    codes: dict[str, np.ndarray]  # name -> [len] uint8: index into CLASSES, or len(CLASSES) for `other`
    features: dict[str, list[tuple[int, int, str, str]]]  # name -> (start, end, strand, class), 0-based
    genes: dict[str, list[tuple[int, int, str]]]  # name -> gene spans (start, end, strand), 0-based
    windows: list[Window] = field(default_factory=list)
    available: dict[str, int] = field(default_factory=dict)  # valid candidate windows per class
    skipped: dict[str, int] = field(default_factory=dict)  # features left out, by reason
    rule: str = ""

    @property
    def code_names(self) -> tuple[str, ...]:
        """Names of the codes in `codes`: the classes, then `other`."""
        return (*CLASSES, OTHER)

    @property
    def classes(self) -> list[str]:
        """Classes with at least one sampled window, in priority order."""
        have = {w.label for w in self.windows}
        return [c for c in CLASSES if c in have]

    def counts(self) -> dict[str, int]:
        n = Counter(w.label for w in self.windows)
        return {c: n[c] for c in self.classes}

    def features_in(self, record: str, start: int, end: int) -> list[tuple[int, int, str, str]]:
        """Class features overlapping [start, end) of `record` (to draw under a track)."""
        return [f for f in self.features.get(record, []) if f[0] < end and f[1] > start]

    def default_region(self, length: int) -> tuple[str, int, int]:
        """(record, start, end) of a `length`-bp region of the first record holding the most whole genes
        (ties: the leftmost), starting at a gene's 5'-most base; the record's start if it has no genes."""
        name = next(iter(self.records))
        size = len(self.records[name])
        length = min(length, size)
        spans = sorted(self.genes.get(name, []))
        best, best_n = 0, -1
        ends = np.array([b for _, b, _ in spans], dtype=np.int64)
        starts = np.array([a for a, _, _ in spans], dtype=np.int64)
        for a, _, _ in spans:
            s = min(a, size - length)
            n = int(((starts >= s) & (ends <= s + length)).sum())
            if n > best_n:
                best, best_n = s, n
        return name, best, best + length


def element_windows(fasta: str | Path, gff: str | Path, *, window_bp: int, per_class: int, seed: int,
                    upstream_clear_bp: int = 300) -> Elements:
    """The genome of `fasta`, its per-base classes from `gff`, and up to `per_class` windows of
    `window_bp` bases per class (module docstring: the rule, which is also returned as `rule`)."""
    if window_bp < 1 or per_class < 1:
        raise BiofmError(f"window_bp ({window_bp}) and per_class ({per_class}) must be positive")
    records: dict[str, str] = {}
    for rec in read_fasta(fasta):
        if rec.name in records:
            raise BiofmError(f"{where(fasta, rec.line, rec.name)}: duplicate record name")
        records[rec.name] = rec.seq
    skipped: Counter[str] = Counter()
    kept: list[Feature] = []
    for f in read_gff3(gff):
        if f.seqid not in records:
            known = ", ".join(list(records)[:5]) + (", ..." if len(records) > 5 else "")
            raise BiofmError(f"{where(gff, f.line)}: record {f.seqid!r} is not in {fasta} (its records: {known})")
        if f.type in _NOT_ELEMENTS:
            continue
        if f.end > len(records[f.seqid]):
            skipped[f"{f.type} past its record's end"] += 1
            continue
        kept.append(f)
    els = Elements(str(fasta), str(gff), window_bp, per_class, seed, records, {}, {}, {})
    by_record: dict[str, list[Feature]] = {name: [] for name in records}
    for f in kept:
        by_record[f.seqid].append(f)
    for name, seq in records.items():
        els.codes[name] = _paint(name, seq, by_record[name], window_bp, upstream_clear_bp, els)
    _sample(els, kept, np.random.default_rng(seed), skipped)
    els.skipped = dict(sorted(skipped.items()))
    els.rule = (f"{window_bp}-bp windows, at most {per_class} per class, seed {seed}. Every base gets one class "
                "by priority (CDS > rRNA > tRNA > ncRNA > 5'UTR > 3'UTR > intron > promoter > intergenic; "
                "annotated bases of no class are 'other'); a window is used only if all its bases have its "
                "class and are A/C/G/T. Windows tile each feature (centred), read on the feature's strand; "
                f"promoter = the {window_bp} bp directly upstream of a gene's 5' end, on its strand; intergenic "
                f"= in no annotated feature and over {upstream_clear_bp} bp upstream of every gene, seeded random "
                "strand. Sampled class by class in priority order, in seeded random order, skipping a window "
                "that overlaps one already taken or repeats its sequence (either strand). Pseudogenes give no "
                "windows; features without a strand give no stranded windows.")
    return els


def _is_pseudo(f: Feature) -> bool:
    return f.type.startswith("pseudogen") or f.flag("pseudo") or f.get("gene_biotype") == "pseudogene"


def _paint(name: str, seq: str, feats: list[Feature], window_bp: int, clear_bp: int, els: Elements) -> np.ndarray:
    """[len(seq)] uint8 class codes of one record, painted from the lowest priority up (last paint wins)."""
    size = len(seq)
    codes = np.full(size, _INTERGENIC, dtype=np.uint8)
    genes = [f for f in feats if f.type in _GENE_TYPES and f.strand in "+-" and not _is_pseudo(f)]
    # 5' ends: [p - clear, p) upstream on '+', [p, p + clear) on '-' (0-based, half-open)
    ups = [(f.start - 1, "+") if f.strand == "+" else (f.end, "-") for f in genes]
    for p, s in ups:  # the clear zone first, so the promoter window inside it wins
        a, b = (p - clear_bp, p) if s == "+" else (p, p + clear_bp)
        codes[max(a, 0):min(b, size)] = _OTHER
    for p, s in ups:
        a, b = (p - window_bp, p) if s == "+" else (p, p + window_bp)
        codes[max(a, 0):min(b, size)] = _PROMOTER
    for f in feats:  # every annotated element blocks intergenic and promoter bases
        codes[f.start - 1:f.end] = _OTHER
    labelled: list[tuple[int, int, str, str]] = []
    for code in range(_PROMOTER - 1, -1, -1):  # intron first ... CDS last
        cls = CLASSES[code]
        for f in feats:
            if _TYPES.get(f.type) == cls and not _is_pseudo(f):
                codes[f.start - 1:f.end] = code
                labelled.append((f.start - 1, f.end, f.strand, cls))
    els.features[name] = sorted(set(labelled))
    els.genes[name] = sorted({(f.start - 1, f.end, f.strand) for f in genes})
    return codes


def _tiles(a: int, b: int, w: int) -> np.ndarray:
    """Starts of the non-overlapping w-bp tiles of [a, b), centred (the leftover split at both ends)."""
    n = (b - a) // w
    return a + ((b - a) - n * w) // 2 + w * np.arange(n, dtype=np.int64)


def _sample(els: Elements, feats: list[Feature], rng: np.random.Generator, skipped: Counter[str]) -> None:
    w = els.window_bp
    # candidates per class: (record, start, strand, feature id)
    cands: dict[str, list[tuple[str, int, str, str]]] = {c: [] for c in CLASSES}
    for f in feats:
        cls = _TYPES.get(f.type)
        if cls is None and f.type not in _GENE_TYPES:
            continue
        label = f.get("ID") or f.get("Name") or f"line {f.line}"
        if _is_pseudo(f):
            skipped[f"{f.type} of a pseudogene"] += 1
            continue
        if f.strand not in "+-":
            skipped[f"{f.type} without a strand"] += 1
            continue
        if cls is not None:
            cands[cls] += [(f.seqid, int(s), f.strand, label) for s in _tiles(f.start - 1, f.end, w)]
        else:  # a gene: its promoter window
            s = f.start - 1 - w if f.strand == "+" else f.end
            if s >= 0 and s + w <= len(els.records[f.seqid]):
                cands["promoter"].append((f.seqid, s, f.strand, f"upstream of {label}"))
    for name, codes in els.codes.items():  # intergenic stretches, tiled
        inter = np.concatenate([[False], codes == _INTERGENIC, [False]])
        edges = np.flatnonzero(np.diff(inter.astype(np.int8)))
        for a, b in zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True):
            for s in _tiles(a, b, w).tolist():
                cands["intergenic"].append((name, s, "+", ""))
    not_acgt = {n: ~np.isin(np.frombuffer(s.encode(), np.uint8), _ACGT) for n, s in els.records.items()}
    taken = {n: np.zeros(len(s), dtype=bool) for n, s in els.records.items()}  # bases in a chosen window
    seen: set[str] = set()
    for code, cls in enumerate(CLASSES):
        unique: dict[tuple[str, int, str], str] = {}  # isoforms repeat the same tiles: keep the first feature
        for rec, s, strand, label in cands[cls]:
            unique.setdefault((rec, s, strand), label)
        pool = sorted(unique.items())
        if not pool:
            continue
        keep = np.zeros(len(pool), dtype=bool)
        recs = np.array([k[0] for k, _ in pool], dtype=object)
        starts = np.array([k[1] for k, _ in pool], dtype=np.int64)
        for rec in set(recs.tolist()):  # every base of the class and A/C/G/T: [n, w] views, no copies per base
            rows = np.flatnonzero(recs == rec)
            same = np.lib.stride_tricks.sliding_window_view(els.codes[rec] == code, w)[starts[rows]].all(1)
            clean = ~np.lib.stride_tricks.sliding_window_view(not_acgt[rec], w)[starts[rows]].any(1)
            keep[rows] = same & clean
        ok = [(k[0], k[1], k[2], label) for (k, label), good in zip(pool, keep.tolist(), strict=True) if good]
        els.available[cls] = len(ok)
        chosen = 0
        for i in rng.permutation(len(ok)).tolist():
            if chosen == els.per_class:
                break
            rec, s, strand, label = ok[i]
            if cls == "intergenic":
                strand = "+" if rng.integers(2) == 0 else "-"
            if taken[rec][s:s + w].any():
                continue
            raw = els.records[rec][s:s + w]
            key = min(raw, reverse_complement(raw))
            if key in seen:
                continue
            seen.add(key)
            taken[rec][s:s + w] = True
            els.windows.append(Window(rec, s, s + w, strand, cls, raw if strand == "+" else reverse_complement(raw),
                                      label))
            chosen += 1
