"""Top-k predictions at masked positions of a sequence."""

from __future__ import annotations

from pathlib import Path

import torch

from biofm.errors import BiofmError
from biofm.models.load import load_masked_lm


def fill_mask(model_path: str | Path, sequence: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """For each `<mask>` in `sequence` (in order), the top-k tokens with their probabilities."""
    model, tok = load_masked_lm(model_path)
    mask = tok.mask_token
    if mask not in sequence:
        raise BiofmError(f"sequence has no {mask} token; write e.g. ACGTAC{mask}GGATTA")
    pieces = sequence.split(mask)
    ids = [tok.cls_token_id] if tok.cls_token_id is not None else []
    text = getattr(model.config, "biofm_modality", "dna") == "text"
    for i, piece in enumerate(pieces):
        # DNA: case and spaces carry nothing. Text (byte-level BPE): a word's token carries its leading
        # space, so the space before a <mask> belongs to the masked token, not to the text before it.
        piece = (piece.rstrip() if i < len(pieces) - 1 else piece) if text else piece.strip().upper()
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
