"""Top-k predictions at masked positions of a sequence (DNA, text or any masked LM)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from biofm.errors import BiofmError
from biofm.modality import modalities
from biofm.models.device import autocast
from biofm.models.load import load_masked_lm, model_modality


def fill_mask(model_path: str | Path, sequence: str, top_k: int = 5, modality: str | None = None,
              allow_pickle: bool = False) -> list[list[tuple[str, float]]]:
    """For each `<mask>` in `sequence` (in order), the top-k tokens with their probabilities. `<mask>` is
    accepted for every model, as well as the model's own spelling (BERT and DNABERT write `[MASK]`); each
    mask is one token of the model's vocabulary (a 6-mer for NT-v1, a k-mer for DNABERT)."""
    name = model_modality(model_path, modality)
    model, tok = load_masked_lm(model_path, modality=name, allow_pickle=allow_pickle)
    if not isinstance(tok, PreTrainedTokenizerBase):  # e.g. Geneformer's gene dictionaries
        raise BiofmError(f"{model_path}: a {name} model reads cells, not a sequence; fill-mask needs a sequence or "
                         f"text model")
    mask = tok.mask_token
    if mask != "<mask>":
        sequence = sequence.replace("<mask>", mask)
    if mask not in sequence:
        raise BiofmError(f"sequence has no {mask} token; write e.g. ACGTAC{mask}GGATTA")
    # the model's modality says how the text between masks is read (DNA: checked and normalised like
    # FASTA; text: BPE spacing); a model of no registered modality gets the pieces stripped
    m = modalities().get(name)
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
    with torch.inference_mode(), autocast(model.device):
        x = input_ids.to(model.device)
        logits = model(input_ids=x, attention_mask=torch.ones_like(x)).logits[0]
    logits = logits[:, : len(tok)].float().cpu().clone()  # (a normal tensor: edited below)
    logits[:, tok.all_special_ids] = float("-inf")  # a masked position is never a special token
    probs = logits.softmax(-1)
    out = []
    for pos in (input_ids[0] == tok.mask_token_id).nonzero().flatten().tolist():
        p, idx = probs[pos].topk(top_k)
        out.append([(tok.decode([int(i)]) or tok.convert_ids_to_tokens(int(i)), float(v))
                    for v, i in zip(p, idx, strict=True)])
    return out
