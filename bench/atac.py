"""scATAC peak-token throughput: biofm's step against a dense, padded implementation of the same model.

    python bench/atac.py [--data dataset:granja2019-bmmc-14k] [--cells 64] [--steps 5] [--rounds 3] [--json]
    python bench/atac.py --smoke --json        # synthetic cells, seconds on a CPU (the test suite runs it)

Both sides train the same `BertForMaskedLM` (the `tiny` preset unless `--preset`), built once and copied, so
they start from the same weights, with the same AdamW settings on the same batches of cells and the same
masked-peak queries (`biofm.atac` collate), in fp32, in one process:

* biofm: each batch cut into length groups, each padded only to its own longest cell (so a batch costs
  about what its cells hold), the last encoder layer computed only at the query positions
  (`train.sparse_top`) and the head only there;
* dense: every cell padded to one fixed width, what a fixed-width tensor layout reserves for a row:
  `<cls>` + the token budget (`tokenizer.max_peaks`) + the expected negative queries of a cell with no
  accessible peak (r_neg x peaks; a batch with a longer row is padded to that row instead, never cut);
  the whole encoder and the head at every position, the loss masked to the queries: what the same model
  costs without sparse handling.

The first step's two losses must agree (same model, same targets), else the bench stops. Throughput is
*useful* tokens per second: the cells' real tokens (`<cls>`, context and query peaks) processed by training
steps, so both sides are credited the same work. The sides alternate in `--rounds` rounds; each round's
ratio is biofm / dense and the median ratio is reported, of wall time (`atac_ratio`) and of this
process's CPU time (`atac_cpu_ratio`, the steadier on a shared machine). With `--json` the last line is one
JSON object with both.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds tokenize.py, which would shadow the stdlib module of that name: drop bench/ from the path.
_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if (str(Path(p).resolve()) if p else "") != _HERE]

import argparse  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from biofm.atac.objectives import PeakTokenObjective  # noqa: E402
from biofm.models.presets import get_preset  # noqa: E402
from biofm.pretraining import build_config_for  # noqa: E402
from biofm.train.objectives import Batch  # noqa: E402


def synthetic_h5ad(path: Path, n_cells: int = 256, n_peaks: int = 3000, seed: int = 0) -> Path:
    """Cells with a skewed number of accessible peaks (log-normal, median ~60), as scATAC cells have."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    per = np.clip(rng.lognormal(np.log(60), 0.6, n_cells).astype(int), 5, 400)
    rows = np.repeat(np.arange(n_cells), per)
    cols = np.concatenate([rng.choice(n_peaks, k, replace=False) for k in per])
    X = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_cells, n_peaks))
    names = [f"chr{1 + i // 1000}_{(i % 1000) * 5000}_{(i % 1000) * 5000 + 500}" for i in range(n_peaks)]
    ad.AnnData(X, obs=pd.DataFrame(index=[f"c{i}" for i in range(n_cells)]),
               var=pd.DataFrame(index=names)).write_h5ad(path)
    return path


def build(data: str, max_peaks: int, preset: str, run_dir: Path) -> tuple[PeakTokenObjective, Any, int]:
    from biofm.atac.pretrain import prepare

    cfg = build_config_for({"modality": "atac", "design": "peak_tokens", "run_dir": str(run_dir),
                            "data": {"h5ad": [data], "val_fraction": 0.05}, "tokenizer": {"max_peaks": max_peaks},
                            "objectives": {"masked_peak": 1.0}, "model": {"preset": preset},
                            "train": {"mask_prob": 0.3}}, "bench")
    prepared = prepare(cfg, get_preset(preset), max_peaks + 1)
    obj: PeakTokenObjective = prepared.objective  # type: ignore[assignment]
    return obj, prepared.data.train, 1 + max_peaks + int(np.ceil(obj.r_neg * obj.n_peaks))


def dense_loss(obj: PeakTokenObjective, batch: Batch, width: int) -> tuple[torch.Tensor, int]:
    """The same model on fixed-width rows: biofm's length groups put back into one [B, width] batch, the
    full encoder, the head at every position, the loss masked to the queries."""
    groups = obj.groups(batch.tensors, "m")
    width = max([width, *(t["input_ids"].shape[1] for t in groups)])  # never cut a row
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("input_ids", "token_type_ids", "position_ids",
                                                             "attention_mask", "query", "labels")}
    for t in groups:
        b, length = t["input_ids"].shape
        query = torch.zeros(b * length, dtype=torch.bool)
        labels = torch.zeros(b * length)
        if "target_flat" in t:
            query[t["target_flat"]] = True
            labels[t["target_flat"]] = t["target_labels"]
        values = {"input_ids": t["input_ids"], "token_type_ids": t["token_type_ids"],
                  "position_ids": t["position_ids"], "attention_mask": t["attention_mask"],
                  "query": query.view(b, length), "labels": labels.view(b, length)}
        pad_with = {"input_ids": obj.pad_id, "attention_mask": False, "query": False}
        for k, v in values.items():
            parts[k].append(F.pad(v, (0, width - length), value=pad_with.get(k, 0)))
    d = {k: torch.cat(v) for k, v in parts.items()}
    hidden = obj.model.bert(input_ids=d["input_ids"], token_type_ids=d["token_type_ids"],
                            position_ids=d["position_ids"], attention_mask=d["attention_mask"]).last_hidden_state
    peaks = (d["input_ids"] - obj.offset).clamp(0, obj.n_peaks - 1)
    logits = obj.head(hidden).float().squeeze(-1) + obj.peak_logit[peaks]  # [B, W]: every position
    nll = F.binary_cross_entropy_with_logits(logits, d["labels"], reduction="none")
    return (nll * d["query"]).sum(), d["input_ids"].numel()


def step(obj: PeakTokenObjective, opt: torch.optim.Optimizer, batch: Batch, dense_width: int | None) -> float:
    loss = obj(**batch.tensors)["masked_peak"] if dense_width is None else dense_loss(obj, batch, dense_width)[0]
    (loss / batch.counts["masked_peak"]).backward()
    torch.nn.utils.clip_grad_norm_(obj.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(loss.detach()) / batch.counts["masked_peak"]


def timed(obj: PeakTokenObjective, opt: torch.optim.Optimizer, rows: Any, batches: list[np.ndarray],
          dense_width: int | None) -> tuple[float, float]:
    """Useful tokens per second of wall time and of this process's CPU time over `batches` (collate
    included: both sides use the same one). On a machine shared with other work the CPU-time figure is the
    steadier one: it does not count the time other processes held the cores."""
    useful = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for idx in batches:
        batch = obj.collate(rows[idx], idx, honest=False, seed=0)
        step(obj, opt, batch, dense_width)
        useful += batch.tokens
    return useful / (time.perf_counter() - wall), useful / (time.process_time() - cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="dataset:granja2019-bmmc-14k")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--max-peaks", type=int, default=512)
    ap.add_argument("--cells", type=int, default=64, help="cells per step")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per side per round")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--smoke", action="store_true", help="synthetic cells, one short round")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("BIOFM_QUIET", "1")
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if args.smoke:
            data = str(synthetic_h5ad(Path(tmp) / "cells.h5ad", n_cells=128, n_peaks=2000))
            args.max_peaks, args.cells, args.steps, args.rounds, args.warmup = 256, 16, 2, 1, 1
        biofm, rows, width = build(data, args.max_peaks, args.preset, Path(tmp) / "run")
    dense = copy.deepcopy(biofm)
    opts = {name: torch.optim.AdamW([p for p in o.parameters() if p.requires_grad], lr=1e-4)
            for name, o in (("biofm", biofm), ("dense", dense))}
    rng = np.random.default_rng(0)
    n_batches = args.warmup + args.rounds * args.steps
    batches = [rng.choice(len(rows), args.cells, replace=False) for _ in range(n_batches)]
    # the same model: the first batch's losses agree before either side has stepped
    first = biofm.collate(rows[batches[0]], batches[0], honest=False, seed=0)
    with torch.no_grad():
        a = float(biofm(**first.tensors)["masked_peak"])
        b = float(dense_loss(dense, first, width)[0])
    if abs(a - b) > 1e-3 * max(1.0, abs(a)):
        raise SystemExit(f"the two implementations disagree on the first batch: {a} vs {b}")
    for name, obj in (("biofm", biofm), ("dense", dense)):
        for idx in batches[: args.warmup]:
            step(obj, opts[name], obj.collate(rows[idx], idx, honest=False, seed=0),
                 None if name == "biofm" else width)
    rounds = []
    for r in range(args.rounds):
        part = batches[args.warmup + r * args.steps: args.warmup + (r + 1) * args.steps]
        order = (("biofm", biofm), ("dense", dense)) if r % 2 == 0 else (("dense", dense), ("biofm", biofm))
        rate = {name: timed(obj, opts[name], rows, part, None if name == "biofm" else width) for name, obj in order}
        rounds.append({"biofm_tokens_per_s": rate["biofm"][0], "dense_tokens_per_s": rate["dense"][0],
                       "ratio": rate["biofm"][0] / rate["dense"][0],
                       "biofm_tokens_per_cpu_s": rate["biofm"][1], "dense_tokens_per_cpu_s": rate["dense"][1],
                       "cpu_ratio": rate["biofm"][1] / rate["dense"][1]})
        print(f"round {r + 1}: biofm {rate['biofm'][0]:,.0f} tok/s, dense {rate['dense'][0]:,.0f} tok/s, "
              f"ratio {rounds[-1]['ratio']:.2f} (CPU time: {rounds[-1]['cpu_ratio']:.2f})", file=sys.stderr)
    tokens = np.mean([biofm.collate(rows[i], i, honest=False, seed=0).tokens for i in batches[:3]])
    result = {"atac_ratio": float(np.median([r["ratio"] for r in rounds])),
              "atac_cpu_ratio": float(np.median([r["cpu_ratio"] for r in rounds])), "rounds": len(rounds),
              "per_round": rounds, "data": "synthetic" if args.smoke else args.data, "preset": args.preset,
              "cells_per_step": args.cells, "max_peaks": args.max_peaks,
              "biofm_tokens_per_batch": float(tokens), "dense_tokens_per_batch": float(args.cells * width),
              "first_batch_loss": a, "device": "cpu", "torch_threads": torch.get_num_threads(),
              "machine": platform.processor() or platform.machine()}
    print(f"atac peak tokens: biofm / dense = {result['atac_ratio']:.2f}x wall, {result['atac_cpu_ratio']:.2f}x CPU "
          f"time (median of {len(rounds)} rounds; "
          f"{tokens:,.0f} real tokens per batch against {args.cells * width:,} padded)", file=sys.stderr)
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
