"""Per-layer embeddings of sequences (mean-pooled, or the <cls> / last token), for downstream use; the
model's modality reads the input file (DNA: FASTA or a table with a `sequence` column). Sequences longer
than the model's context follow the evaluation's policy: an error naming how many, unless the caller
chooses `truncate` (first window) or `windows` (the mean of non-overlapping windows)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from transformers import PreTrainedTokenizerBase

from biofm.errors import BiofmError
from biofm.eval.embeddings import layer_embeddings_all
from biofm.eval.sequence import check_context
from biofm.io.atomic import atomic_path
from biofm.modality import get as get_modality
from biofm.models.load import load_for_embedding, model_modality
from biofm.models.published import context_length

LONG_SEQUENCES = ("error", "truncate", "windows")


def sequence_embeddings(model_path: str | Path, seqs: list[str], *, batch_size: int = 64,
                        max_tokens: int | None = None, modality: str | None = None, long_sequences: str = "error",
                        source: object = "input", allow_pickle: bool = False) -> dict[str, np.ndarray]:
    """{"mean": [n, n_layers + 1, hidden], "cls" (or "last" for causal models): ...} for raw sequences or
    texts, through the evaluation's embedding pass (length-sorted batches, every layer in one pass), tokenised
    as the model was published (NT-v1 6-mers, DNABERT overlapping k-mers, BPE, ...)."""
    if long_sequences not in LONG_SEQUENCES:
        raise BiofmError(f"long_sequences {long_sequences!r}: expected one of {', '.join(LONG_SEQUENCES)}")
    model, tok = load_for_embedding(model_path, modality=model_modality(model_path, modality),
                                    allow_pickle=allow_pickle)
    if not isinstance(tok, PreTrainedTokenizerBase):  # e.g. Geneformer's gene dictionaries
        raise BiofmError(f"{model_path}: this model embeds cells, not sequences; give an .h5ad (or an AnnData)")
    limit = max_tokens or context_length(model.config)
    check_context(list(seqs), source, tok, limit, long_sequences,
                  how="choose --long-sequences truncate (the first window) or windows (the mean of windows)")
    return layer_embeddings_all(model, tok, list(seqs), max_tokens=limit, long_mode=long_sequences,
                                batch_size=batch_size)


def embed(model_path: str | Path, input_path: str | Path, out: str | Path, batch_size: int = 64,
          max_tokens: int | None = None, modality: str | None = None, pooling: str = "mean",
          long_sequences: str = "error") -> np.ndarray:
    """Write [n, layers + 1, hidden] embeddings of the input's sequences (`pooling` "mean", or "cls" /
    "last", the model's summary token) to .npy, or to .parquet with one list column per layer."""
    out = Path(out)
    if out.suffix not in (".npy", ".parquet"):  # before any work: a bad name is known up front
        raise BiofmError(f"{out}: output must end in .npy or .parquet")
    # the model's modality reads the inputs; their faults are reported before the model is loaded
    name = model_modality(model_path, modality)
    ids, seqs = get_modality(name).verb("read_sequences")(input_path)
    # the model folder is checked (config.json, complete safetensors weights matching it): one-line errors
    pooled = sequence_embeddings(model_path, seqs, batch_size=batch_size, max_tokens=max_tokens, modality=name,
                                 long_sequences=long_sequences, source=input_path)
    if pooling == "cls" and "cls" not in pooled:
        pooling = "last"  # a causal model's summary token is its last
    if pooling not in pooled:
        raise BiofmError(f"pooling {pooling!r}: this model offers {', '.join(pooled)}")
    emb = pooled[pooling]
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
