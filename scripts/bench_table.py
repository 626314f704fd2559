"""The README's performance table, generated from bench/results/*.json (written by `make bench`).

    python scripts/bench_table.py [--results bench/results] [--write README.md]

Prints the Markdown table; with `--write` it replaces the text between the `<!-- bench-table:start -->`
and `<!-- bench-table:end -->` markers of that file (atomically) instead. A benchmark whose result file
is missing is left out of the table.
"""

from __future__ import annotations

import argparse
import json
import operator
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"


@dataclass(frozen=True)
class Row:
    bench: str  # bench/results/BENCH.json
    path: str  # what users run
    baseline: str  # the standard recipe it is measured against
    key: str  # the figure in the result's "figures"
    what: str  # how to read the figure
    target: tuple[str, float] | None = None  # (">=" | "<=", value)
    fmt: str = "{:.2f}x"


ROWS = [
    Row("pretrain_text", "Text CLM step (gpt2-tiny, 50k vocab)", "HF Trainer + `run_clm` recipe", "clm_ratio",
        "tokens/s, biofm / HF", (">=", 1.5)),
    Row("pretrain_text", "", "", "clm_rss_ratio", "peak RSS, biofm / HF", ("<=", 0.5)),
    Row("pretrain_cells", "Cell step (mouse 10k, BERT, rank-value)", "HF Trainer, cells padded to `max_genes`",
        "cells_ratio", "cells/s, biofm / HF", (">=", 3.0)),
    Row("embed", "Embedding pass (`biofm embed`, 10k DNA sequences)", '`pipeline("feature-extraction")`',
        "embed_ratio", "sequences/s, biofm / HF", (">=", 2.0)),
    Row("embed", "", "", "max_abs_diff", "max abs. embedding difference", ("<=", 1e-5), "{:.1e}"),
    Row("pretrain_dna", "DNA MLM step (small, fixed 512-token blocks)",
        "HF Trainer + `DataCollatorForLanguageModeling`", "fixed_ratio", "tokens/s, biofm / HF"),
    Row("pretrain_dna", "DNA MLM step (small, 64-512-token sequences)", "", "variable_ratio", "tokens/s, biofm / HF"),
    Row("tokenize", "6-mer tokenisation (6 kb windows)", "HF `tokenizers` (all threads)", "ratio",
        "Mbp/s, biofm / HF"),
    Row("tokenize", "", "", "genome_seconds", "s for a 3.1 Gbp genome, one core", ("<=", 40.0), "{:.1f}"),
    Row("probe", "Layer-wise probes (10 layers x 10 folds)", "scikit-learn loop", "ratio", "time, sklearn / biofm"),
]
OPS = {">=": operator.ge, "<=": operator.le}


def load(results: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(results.glob("*.json"))}


def table(results: Path) -> str:
    data = load(results)
    lines = ["| Path | Standard recipe (same run) | Figure | Measured | Target | Held | biofm MFU (CPU) |",
             "|---|---|---|---:|---|---|---:|"]
    shown: set[str] = set()  # MFU once per benchmark: on its first row
    for row in ROWS:
        if row.bench not in data or row.key not in data[row.bench]["figures"]:
            continue
        figures = data[row.bench]["figures"]
        value = float(figures[row.key])
        target, held = "", ""
        if row.target:
            op, bound = row.target
            target = f"{op} {row.fmt.format(bound)}"
            held = "yes" if OPS[op](value, bound) else "**no**"
        mfu = f"{figures['mfu_cpu']:.1%}" if row.bench not in shown and "mfu_cpu" in figures else ""
        shown.add(row.bench)
        lines.append(f"| {row.path} | {row.baseline} | {row.what} | {row.fmt.format(value)} | {target} | {held} "
                     f"| {mfu} |")
    machine = data.get("machine")
    if machine:
        lines.append("")
        lines.append(f"Measured by `make bench` on {machine['cpu']}, {machine['cores']} cores ({machine['threads']} "
                     f"threads for both sides), torch {machine['torch']}, transformers {machine['transformers']}; "
                     f"fp32 GEMM peak {machine['gemm_peak_gflops']:.0f} GFLOP/s (the MFU reference, re-timed in "
                     f"each benchmark). Commands and every figure: `bench/results/*.json`.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--write", type=Path, help="replace the table between the markers of this file")
    args = ap.parse_args()
    text = table(args.results)
    if not args.write:
        print(text)
        return
    sys.path.insert(0, str(ROOT / "src"))
    from biofm.errors import BiofmError
    from biofm.io.atomic import write_text

    doc = args.write.read_text()
    if START not in doc or END not in doc:
        raise BiofmError(f"{args.write}: no {START} ... {END} markers to put the table between")
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    write_text(args.write, f"{head}{START}\n{text}\n{END}{tail}")


if __name__ == "__main__":
    main()
