"""Top-k predictions at masked positions of a sequence (DNA, text or any masked LM)."""

from __future__ import annotations

from pathlib import Path

import torch

from biofm.errors import BiofmError
from biofm.modality import modalities
from biofm.models.load import load_masked_lm


def fill_mask(model_path: str | Path, sequence: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """For each `<mask>` in `sequence` (in order), the top-k tokens with their probabilities."""
    model, tok = load_masked_lm(model_path)
    mask = tok.mask_token
    if mask not in sequence:
        raise BiofmError(f"sequence has no {mask} token; write e.g. ACGTAC{mask}GGATTA")
    # the model's modality says how the text between masks is read (DNA: checked and normalised like
    # FASTA; text: BPE spacing); a model of no registered modality gets the pieces stripped
    m = modalities().get(getattr(model.config, "biofm_modality", None) or "")
    if m is not None and "masked_pieces" in m.verbs:
        pieces = m.verb("masked_pieces")(sequence, mask)
    else:
        pieces = [p.strip() for p in sequence.split(mask)]
    ids = [tok.cls_token_id] if tok.cls_token_id is not None else []
    for i, piece in enumerate(pieces):
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
        out.append([(tok.decode([int(i)]) or tok.convert_ids_to_tokens(int(i)), float(v))
                    for v, i in zip(p, idx, strict=True)])
    return out
