"""Text inputs of the `use` verbs."""

from __future__ import annotations


def masked_pieces(sequence: str, mask: str) -> list[str]:
    """The text between the masks. Byte-level BPE puts a word's leading space in its token, so the space
    before a <mask> belongs to the masked token, not to the text before it."""
    pieces = sequence.split(mask)
    return [p.rstrip() for p in pieces[:-1]] + pieces[-1:]
