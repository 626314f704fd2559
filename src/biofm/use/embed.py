"""Per-layer mean-pooled embeddings of sequences, for probes and downstream use."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from biofm.dna.fasta import normalise_sequence
from biofm.errors import BiofmError
from biofm.io.atomic import atomic_path
from biofm.models.load import load_masked_lm
from biofm.models.mlm import layer_embeddings


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


def embed(model_path: str | Path, input_path: str | Path, out: str | Path, batch_size: int = 16,
          max_tokens: int | None = None) -> np.ndarray:
    out = Path(out)
    if out.suffix not in (".npy", ".parquet"):  # before any work: a bad name is known up front
        raise BiofmError(f"{out}: output must end in .npy or .parquet")
    ids, seqs = read_sequences(input_path)  # input faults are reported before the model is loaded
    # the model folder is checked (config.json, complete safetensors weights matching it): one-line errors
    model, tok = load_masked_lm(model_path)
    limit = max_tokens or getattr(model.config, "max_position_embeddings", 2048)
    chunks = []
    with torch.inference_mode():
        for i in range(0, len(seqs), batch_size):
            enc = tok(seqs[i:i + batch_size], padding=True, truncation=True, max_length=limit, return_tensors="pt")
            chunks.append(layer_embeddings(model, enc["input_ids"], enc["attention_mask"]).float().numpy())
    emb = np.concatenate(chunks)  # [n, n_layers + 1, hidden]
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
