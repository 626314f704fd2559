"""Per-layer mean-pooled embeddings of sequences, for probes and downstream use; the model's modality
reads the input file (DNA: FASTA or a table with a `sequence` column)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from transformers import PreTrainedTokenizerBase

from biofm.errors import BiofmError
from biofm.eval.embeddings import layer_embeddings_all
from biofm.io.atomic import atomic_path
from biofm.modality import get as get_modality
from biofm.models.load import load_for_embedding, model_modality
from biofm.models.published import context_length


def sequence_embeddings(model_path: str | Path, seqs: list[str], *, batch_size: int = 16,
                        max_tokens: int | None = None, modality: str | None = None) -> dict[str, np.ndarray]:
    """{"mean": [n, n_layers + 1, hidden], "cls" (or "last" for causal models): ...} for raw sequences or
    texts, through the evaluation's embedding pass (length-sorted batches, every layer in one pass), tokenised
    as the model was published (NT-v1 6-mers, DNABERT overlapping k-mers, BPE, ...)."""
    model, tok = load_for_embedding(model_path, modality=model_modality(model_path, modality))
    if not isinstance(tok, PreTrainedTokenizerBase):  # e.g. Geneformer's gene dictionaries
        raise BiofmError(f"{model_path}: this model embeds cells, not sequences; give an .h5ad (or an AnnData)")
    limit = max_tokens or context_length(model.config)
    return layer_embeddings_all(model, tok, list(seqs), max_tokens=limit, long_mode="truncate",
                                batch_size=batch_size)


def embed(model_path: str | Path, input_path: str | Path, out: str | Path, batch_size: int = 16,
          max_tokens: int | None = None, modality: str | None = None) -> np.ndarray:
    out = Path(out)
    if out.suffix not in (".npy", ".parquet"):  # before any work: a bad name is known up front
        raise BiofmError(f"{out}: output must end in .npy or .parquet")
    # the model's modality reads the inputs; their faults are reported before the model is loaded
    name = model_modality(model_path, modality)
    ids, seqs = get_modality(name).verb("read_sequences")(input_path)
    # the model folder is checked (config.json, complete safetensors weights matching it): one-line errors
    emb = sequence_embeddings(model_path, seqs, batch_size=batch_size, max_tokens=max_tokens, modality=name)["mean"]
    if out.suffix == ".npy":
        with atomic_path(out) as tmp, tmp.open("wb") as fh:
            np.save(fh, emb)
    elif out.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        cols = {"id": pa.array(ids)}
        for layer in range(emb.shape[1]):
            cols[f"layer_{layer}"] = pa.array(list(emb[:, layer, :]))
        with atomic_path(out) as tmp:
            pq.write_table(pa.table(cols), tmp)
    return emb
