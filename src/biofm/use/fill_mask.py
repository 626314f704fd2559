"""Top-k predictions at masked positions of a sequence."""

from __future__ import annotations

from pathlib import Path

import torch

from biofm.dna.fasta import normalise_sequence
from biofm.dna.tokenizer import CONFIG_KEY as KMER_KEY
from biofm.errors import BiofmError
from biofm.models.load import load_masked_lm

# What a DNA sequence may hold between its <mask> tokens: the bases, U, the IUPAC ambiguity codes (read
# as N, as in FASTA files), any case, and whitespace (ignored).
_NUCLEOTIDE_CHARS = frozenset("ACGTUNRYSWKMBDHV" + "acgtunryswkmbdhv" + " \t\r\n\v\f")
_SHOW_CHARS = 10


def is_dna_model(model, tok) -> bool:
    """A biofm DNA model: its tokenizer says so (tokenizer_config.json's biofm_kmer_k) or its config's
    biofm_modality does. Other models (text, cells, a stock checkpoint, say of proteins) are not checked."""
    kwargs = getattr(tok, "init_kwargs", None) or {}
    return KMER_KEY in kwargs or getattr(model.config, "biofm_modality", None) == "dna"


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


def fill_mask(model_path: str | Path, sequence: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """For each `<mask>` in `sequence` (in order), the top-k tokens with their probabilities."""
    model, tok = load_masked_lm(model_path)
    mask = tok.mask_token
    if mask not in sequence:
        raise BiofmError(f"sequence has no {mask} token; write e.g. ACGTAC{mask}GGATTA")
    text = getattr(model.config, "biofm_modality", "dna") == "text"
    dna = not text and is_dna_model(model, tok)
    if dna:
        check_dna_text(sequence, mask)
    pieces = sequence.split(mask)
    ids = [tok.cls_token_id] if tok.cls_token_id is not None else []
    for i, piece in enumerate(pieces):
        # DNA: case and spaces carry nothing. Text (byte-level BPE): a word's token carries its leading
        # space, so the space before a <mask> belongs to the masked token, not to the text before it.
        if text:
            piece = piece.rstrip() if i < len(pieces) - 1 else piece
        elif dna:  # as FASTA records are read: whitespace dropped, upper case, U -> T, ambiguity codes -> N
            piece = normalise_sequence(piece)
        else:
            piece = piece.strip().upper()
        if piece:
            ids += tok(piece, add_special_tokens=False)["input_ids"]
        if i < len(pieces) - 1:
            ids.append(tok.mask_token_id)
    input_ids = torch.tensor([ids])
    with torch.inference_mode():
        logits = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits[0]
    logits = logits[:, : len(tok)].clone()
    logits[:, tok.all_special_ids] = float("-inf")  # a masked position is never a special token
    probs = logits.softmax(-1)
    out = []
    for pos in (input_ids[0] == tok.mask_token_id).nonzero().flatten().tolist():
        p, idx = probs[pos].topk(top_k)
        name = (lambda i: tok.decode([i])) if text else tok.convert_ids_to_tokens
        out.append([(name(int(i)), float(v)) for v, i in zip(p, idx, strict=True)])
    return out
