"""DNA inputs of the `use` verbs: sequences to embed, and the text around `<mask>` tokens in fill-mask."""

from __future__ import annotations

import csv
from pathlib import Path

from biofm.dna.fasta import normalise_sequence
from biofm.errors import BiofmError

# What a DNA sequence may hold between its <mask> tokens: the bases, U, the IUPAC ambiguity codes (read
# as N, as in FASTA files), any case, and whitespace (ignored).
_NUCLEOTIDE_CHARS = frozenset("ACGTUNRYSWKMBDHV" + "acgtunryswkmbdhv" + " \t\r\n\v\f")
_SHOW_CHARS = 10


def read_sequences(path: str | Path) -> tuple[list[str], list[str]]:
    """(ids, sequences) from FASTA(.gz) or a CSV/TSV with a `sequence` column (optional `id`)."""
    path = Path(path)
    if not path.exists():
        raise BiofmError(f"{path}: file not found")
    if path.suffix.lower() in {".csv", ".tsv"}:
        delim = "\t" if path.suffix.lower() == ".tsv" else ","
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh, delimiter=delim)
            if not reader.fieldnames or "sequence" not in reader.fieldnames:
                raise BiofmError(f"{path}, line 1: no 'sequence' column (columns: {reader.fieldnames})")
            ids, seqs = [], []
            for n, row in enumerate(reader, 2):
                seq = normalise_sequence(row["sequence"] or "", f"{path}, line {n}")
                if not seq:
                    raise BiofmError(f"{path}, line {n}: empty sequence")
                ids.append(row.get("id") or str(n - 1))
                seqs.append(seq)
        if not seqs:
            raise BiofmError(f"{path}: no sequences")
        return ids, seqs
    from biofm.dna.fasta import read_fasta

    records = list(read_fasta(path))
    return [r.name for r in records], [r.seq for r in records]


def check_dna_text(sequence: str, mask: str) -> None:
    """BiofmError naming every character of `sequence` (outside its masks) that is not a nucleotide."""
    bad: list[str] = []
    for piece in sequence.split(mask):
        for ch in piece:
            if ch not in _NUCLEOTIDE_CHARS and ch not in bad:
                bad.append(ch)
    if not bad:
        return
    shown = " ".join(repr(c) for c in bad[:_SHOW_CHARS]) + (f" (+{len(bad) - _SHOW_CHARS} more)"
                                                           if len(bad) > _SHOW_CHARS else "")
    hint = f"; write masks exactly as {mask}" if "<" in bad or ">" in bad else ""
    raise BiofmError(f"--sequence: not a DNA sequence for this k-mer DNA model: {shown} "
                     f"{'is not a nucleotide' if len(bad) == 1 else 'are not nucleotides'} (allowed: A C G T U, "
                     f"IUPAC codes R Y S W K M B D H V N, any case, spaces, and {mask}){hint}")


def masked_pieces(sequence: str, mask: str) -> list[str]:
    """The text between the masks, as FASTA records are read: whitespace dropped, upper case, U -> T,
    ambiguity codes -> N (after refusing anything that is not a nucleotide)."""
    check_dna_text(sequence, mask)
    return [normalise_sequence(p) for p in sequence.split(mask)]
