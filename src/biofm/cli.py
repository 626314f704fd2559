"""The `biofm` command line: one verb per lifecycle stage.

Bad input is reported as one line (`error: FILE, line N: what is wrong`) with a non-zero exit and no
traceback; `--debug` anywhere on the command line shows the traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer
from rich.console import Console

from biofm.errors import BiofmError

app = typer.Typer(
    help="Pretrain, diagnose, evaluate and use transformer foundation models on biological data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
tokenizer_app = typer.Typer(help="Build and apply tokenizers.", no_args_is_help=True)
app.add_typer(tokenizer_app, name="tokenizer")
data_app = typer.Typer(help="Registered datasets: list, fetch (checksummed) and locate them.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()
err_console = Console(stderr=True)

class Interrupted(BiofmError):
    """Ctrl-C: exit 130, and say how to continue."""

    exit_code = 130


SET_HELP = "override a config key, e.g. --set train.steps=200 (repeatable)"
MODALITY_HELP = "read the model as this modality (dna, text, cells, ...); default: inferred from its folder"
PICKLE_HELP = "read a published model's pickled files (Geneformer's gene dictionaries); unpickling can run code"
DEVICE_HELP = "where the model runs: auto (CUDA, else Apple MPS, else CPU) | cpu | cuda | cuda:N | mps"


@app.command()
def pretrain(
    config: Path = typer.Argument(..., help="YAML config (or a run's config.yaml to rerun it)"),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    resume: bool = typer.Option(False, "--resume", help="continue from the run's last checkpoint"),
    overwrite: bool = typer.Option(False, "--overwrite", help="delete an existing run folder first (only a folder "
                                                              "biofm made as a run and that holds none of its inputs)"),
    allow_changes: list[str] = typer.Option([], "--allow-changes", help="with --resume: accept a changed config key "
                                            "(e.g. data, model.overrides, seed); repeatable"),
) -> None:
    """Pretrain a model.  Example: biofm pretrain examples/configs/dna_tiny.yaml --set train.steps=200"""
    from biofm.pretraining import load_config, run

    cfg = load_config(config, set_)
    rerun = config.resolve() == (cfg.resolved_run_dir() / "config.yaml").resolve()
    if rerun and not resume:
        console.print(f"rerunning {cfg.resolved_run_dir()} from its own config.yaml (starting over)")
    try:
        run_dir = run(cfg, resume=resume, overwrite=overwrite or (rerun and not resume), allow_changes=allow_changes)
    except KeyboardInterrupt:
        run_dir = cfg.resolved_run_dir()
        steps = sorted((int(p.name[5:]) for p in (run_dir / "checkpoints").glob("step-*") if p.name[5:].isdigit()
                        and (p / "trainer_state.json").exists()), reverse=True)
        where = f"the last complete checkpoint is step-{steps[0]}" if steps else "no checkpoint was written yet"
        raise Interrupted(f"interrupted; {where}. Continue with: biofm pretrain {run_dir / 'config.yaml'} --resume"
                          ) from None
    _print_outcome(run_dir)


def _print_outcome(run_dir: Path) -> None:
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun / accelerate launch: one report, from rank 0
        return
    summary = json.loads((run_dir / "summary.json").read_text())
    health = summary.get("health", {})
    ref = summary.get("baseline_reference", "unigram")
    others = [k[9:] for k in summary if k.startswith("baseline_") and k[9:] not in (ref, "reference")
              and "_bits_per_" not in k]
    console.print(f"final eval loss {summary['final_eval_loss']:.4f}; {ref} baseline "
                  f"{summary[f'baseline_{ref}']:.4f}; " + "; ".join(f"{o} {summary[f'baseline_{o}']:.4f}"
                                                               for o in others))
    console.print(f"health: [bold]{health.get('verdict', '?')}[/bold]; {summary['tokens_per_s']:,.0f} tokens/s")
    console.print(f"run folder: {run_dir}   report: {run_dir / 'report.html'}")


@app.command()
def doctor(
    run: Path = typer.Argument(..., help="run folder"),
    as_json: bool = typer.Option(False, "--json", help="print the diagnosis as JSON"),
) -> None:
    """Say whether a run is learning; exits 1 for anything but 'learning'.  Example: biofm doctor runs/demo"""
    from biofm.health.doctor import diagnose, load_run

    summary, rows = load_run(run)
    diag = diagnose(summary, rows)
    if as_json:
        console.print_json(json.dumps(diag.to_dict()))
    else:
        console.print(f"verdict: [bold]{diag.verdict}[/bold]")
        for fact in diag.facts:
            console.print(f"  - {fact}")
        if diag.advice:
            console.print("what to try:")
            for a in diag.advice:
                console.print(f"  * {a}")
    raise typer.Exit(0 if diag.ok else 1)


@app.command()
def info(
    model: str = typer.Argument(..., help="a preset name (tiny, 50m, gpt2-tiny, ...) or a model folder"),
    vocab: int | None = typer.Option(None, "--vocab", min=8, help="presets: size the embeddings for N tokens"),
) -> None:
    """Print a model's layers with shapes and parameter counts.  Example: biofm info 50m"""
    from biofm.models.info import print_info

    print_info(model, console, vocab)


@app.command()
def embed(
    model: Path = typer.Option(..., "--model", help="model folder (RUN/model) or run folder"),
    input: Path = typer.Option(..., "--input", help="FASTA(.gz), CSV/TSV with a 'sequence' column, .h5ad (cells), "
                               "or dataset:NAME"),
    out: Path = typer.Option(..., "--out", help="output .npy ([n, layers+1, hidden]) or .parquet; for .h5ad input "
                                                "a NEW .h5ad with obsm['X_biofm'] (mean) and obsm['X_biofm_cls']"),
    batch_size: int = typer.Option(64, "--batch-size", help="rows per batch at most (sequences: also at most "
                                   "16,384 padded tokens)"),
    layer: int = typer.Option(-1, "--layer", help="cells: which layer goes into obsm (0 = embeddings, -1 = last)"),
    h5ad_layer: str | None = typer.Option(None, "--h5ad-layer", help="cells: the h5ad layer holding raw counts"),
    gene_column: str | None = typer.Option(None, "--gene-column", help="cells: var column with the gene ids"),
    pooling: str = typer.Option("mean", "--pooling", help="sequences: mean over tokens, or cls (the summary "
                                "token: <cls>, or the last token of a causal model)"),
    long_sequences: str = typer.Option("error", "--long-sequences", help="sequences longer than the model's "
                                       "context: error, truncate (first window) or windows (mean of windows)"),
    modality: str | None = typer.Option(None, "--modality", help=MODALITY_HELP),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help=PICKLE_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
) -> None:
    """Embeddings of sequences (every layer, mean or cls pooled) or cells (one layer, into a new h5ad).

    Example: biofm embed --model runs/demo-cells --input pbmc.h5ad --out pbmc_biofm.h5ad
    """
    from biofm.datasets import resolve
    from biofm.models.device import on_device

    input = resolve(str(input))  # `dataset:NAME` is a registered dataset
    with on_device(device):
        _embed(model, input, out, batch_size, layer, h5ad_layer, gene_column, pooling, long_sequences, modality,
               allow_pickle)


def _embed(model: Path, input: Path, out: Path, batch_size: int, layer: int, h5ad_layer: str | None,
           gene_column: str | None, pooling: str, long_sequences: str, modality: str | None,
           allow_pickle: bool) -> None:
    if input.suffix == ".h5ad":
        from biofm.modality import get as get_modality
        from biofm.models.load import model_modality

        embed_h5ad = get_modality(model_modality(model, modality)).verb("embed_h5ad")  # cell models embed AnnData
        n, dim, coverage = embed_h5ad(model, input, out, layer=layer, layer_name=h5ad_layer, gene_column=gene_column,
                                      batch_size=batch_size, **({"allow_pickle": True} if allow_pickle else {}))
        console.print(f"wrote {out}: {n} cells × {dim} dims in obsm['X_biofm'] (mean) and obsm['X_biofm_cls']; "
                      f"{coverage:.1%} of the file's features (genes, peaks) are in the model's vocabulary")
        return
    from biofm.use.embed import embed as run_embed

    emb = run_embed(model, input, out, batch_size=batch_size, modality=modality, pooling=pooling,
                    long_sequences=long_sequences)
    console.print(f"wrote {out}: {emb.shape[0]} sequences × {emb.shape[1]} layers × {emb.shape[2]} dims")


@app.command("fill-mask")
def fill_mask(
    model: Path = typer.Option(..., "--model", help="model folder (RUN/model) or run folder"),
    sequence: str = typer.Option(..., "--sequence", help="sequence with <mask> tokens"),
    top_k: int = typer.Option(5, "--top-k"),
    modality: str | None = typer.Option(None, "--modality", help=MODALITY_HELP),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help=PICKLE_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
) -> None:
    """Top-k tokens at each <mask>.  Example: biofm fill-mask --model runs/demo --sequence 'ACGT<mask>TTGA'"""
    from biofm.models.device import on_device
    from biofm.use.fill_mask import fill_mask as run_fill

    with on_device(device):
        found = run_fill(model, sequence, top_k, modality=modality, allow_pickle=allow_pickle)
    for i, preds in enumerate(found):
        console.print(f"<mask> #{i + 1}: " + "  ".join(f"{t} {p:.3f}" for t, p in preds))


@app.command()
def generate(
    model: Path = typer.Option(..., "--model", help="causal model folder (RUN/model) or run folder"),
    prompt: str = typer.Option("", "--prompt", help="text to continue (empty: start a new document)"),
    max_new_tokens: int = typer.Option(50, "--max-new-tokens"),
    temperature: float = typer.Option(1.0, "--temperature", help="0 = greedy"),
    top_k: int = typer.Option(50, "--top-k", help="sample from the k most likely tokens (0 = all)"),
    top_p: float = typer.Option(1.0, "--top-p", help="nucleus sampling mass"),
    seed: int = typer.Option(0, "--seed", help="same seed, same text"),
    n: int = typer.Option(1, "--n", help="number of continuations"),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
) -> None:
    """Continue a prompt with a causal (GPT-2 / Llama) model.

    Example: biofm generate --model runs/demo-text --prompt "The patient was" --max-new-tokens 40 --seed 1
    """
    from biofm.use.generate import generate as run_generate

    texts = run_generate(model, prompt, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                         top_p=top_p, seed=seed, num_return_sequences=n, device=device)
    for i, text in enumerate(texts):
        if n > 1:
            console.print(f"--- {i + 1}", highlight=False)
        console.print(text, markup=False, highlight=False)


@app.command()
def evaluate(
    config: Path | None = typer.Argument(None, help="optional YAML evaluation config"),
    model: str | None = typer.Option(None, "--model", help="model folder (RUN/model) or run folder"),
    task: list[str] = typer.Option([], "--task", help="task YAML, table, FILE.h5ad:LABEL, or a shipped task: "
                                   "splice, promoter, ecoli-elements, ecoli-cds-strand, pubmedqa, pbmc-celltypes "
                                   "(repeatable)"),
    out: Path | None = typer.Option(None, "--out", help="output folder (results.json, results.csv, report.html); "
                                                        "default: RUN/eval beside the model"),
    folds: int | None = typer.Option(None, "--folds", help="cross-validation folds (default 10); a task with "
                                     "its own train/test split is scored on it over seeds instead (--set seeds=N)"),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    modality: str | None = typer.Option(None, "--modality", help=MODALITY_HELP),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help=PICKLE_HELP),
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP + " (default: the config's, else auto)"),
) -> None:
    """Probes, fine-tuning and baselines on the same folds (or a task's own train/validation/test split,
    repeated over seeds), with NT's verdict.

    Example: biofm evaluate --model runs/demo --task splice --task promoter --out runs/demo/eval
    """
    from biofm.api import evaluate_config
    from biofm.eval.evaluate import run_evaluation

    cfg = evaluate_config(model, task, out=out, config=config, set_=[*([f"folds={folds}"] if folds else []), *set_,
                                                                     *([f"modality={modality}"] if modality else []),
                                                                     *(["allow_pickle=true"] if allow_pickle else []),
                                                                     *([f"device={device}"] if device else [])])
    from biofm.demo import print_verdicts

    dest = run_evaluation(cfg)
    print_verdicts(json.loads((dest / "results.json").read_text()))
    console.print(f"results: {dest / 'results.json'}   report: {dest / 'report.html'}")


@app.command()
def sweep(
    config: Path | None = typer.Argument(None, help="optional YAML sweep config (base, grid, out, evaluate)"),
    base: str | None = typer.Option(None, "--base", help="pretraining config every point starts from (YAML), or "
                                                          "demo / demo:MODALITY"),
    grid: list[str] = typer.Option([], "--grid", help="key=v1,v2,... (repeatable; the points are the product)"),
    point_set: list[str] = typer.Option([], "--point-set", help="override a pretraining key for every point"),
    task: list[str] = typer.Option([], "--task", help="evaluate every point on this task (repeatable)"),
    folds: int | None = typer.Option(None, "--folds", help="cross-validation folds of the evaluation"),
    out: Path | None = typer.Option(None, "--out", help="sweep folder (default runs/sweep)"),
    set_: list[str] = typer.Option([], "--set", help="override a sweep config key, e.g. --set fit=false"),
) -> None:
    """A grid of pretraining runs: honest loss, scaling fit, and downstream score against the random-weights twin.

    Example: biofm sweep --base demo --grid train.steps=150,300 --grid model.preset=tiny,small --task ecoli-elements
    """
    from biofm import config as cfgmod
    from biofm.sweep import SweepConfig, parse_grid, run_sweep

    data = cfgmod.read_yaml(config) if config else {}
    if base:
        data["base"] = base
    if grid:
        data["grid"] = {**data.get("grid", {}), **parse_grid(grid)}
    if point_set:
        data["base_set"] = [*data.get("base_set", []), *point_set]
    if task or folds:
        data["evaluate"] = dict(data.get("evaluate") or {})
        if task:
            data["evaluate"]["tasks"] = list(task)
        if folds:
            data["evaluate"]["folds"] = folds
    if out:
        data["out"] = str(out)
    data = cfgmod.apply_overrides(data, set_)
    cfg = cfgmod.build(SweepConfig, data, str(config) if config else "sweep options")
    result = run_sweep(cfg, say=lambda msg: err_console.print(msg, markup=False, highlight=False))
    _print_sweep(result)
    console.print(f"sweep: {Path(cfg.out) / 'sweep.csv'}   report: {Path(cfg.out) / 'report.html'}")


def _print_sweep(result: dict) -> None:
    """One table of the points' honest losses, then one per evaluated task (model, twin, gain, baseline)."""
    from rich.table import Table

    rows = result["points"]
    grid_keys = list(result["config"]["grid"])
    loss = result["loss_key"]
    floor_key = "baseline_bits_per_base" if loss == "bits_per_base" else "baseline"
    table = Table(title="sweep: honest eval loss")
    for col in ["point", *grid_keys, "params", "train min", loss, "floor", "verdict"]:
        table.add_column(col)
    for r in rows:
        table.add_row(r["point"].split("-")[0], *(str(r[k]) for k in grid_keys), f"{r['params'] / 1e6:.2f}M",
                      f"{r['train_minutes']:.1f}", f"{r[loss]:.4f}", f"{r[floor_key]:.4f}", r["verdict"])
    console.print(table)
    for t in sorted({k.split(":")[0] for r in rows for k in r if ":" in k}):
        tab = Table(title=f"sweep: {t} ({rows[0].get(f'{t}:metric', '')})")
        for col in ("point", "model", "random twin", "gain (95% CI)", "best baseline"):
            tab.add_column(col)
        for r in rows:
            tab.add_row(r["point"].split("-")[0], f"{r.get(f'{t}:model', float('nan')):.3f}",
                        f"{r.get(f'{t}:control', float('nan')):.3f}",
                        f"{r.get(f'{t}:pretraining', '')} {r.get(f'{t}:gain_ci', '')}",
                        f"{r.get(f'{t}:baseline', float('nan')):.3f}")
        console.print(tab)
    console.print(result["fit_sentence"])


@app.command()
def analyze(
    config: Path | None = typer.Argument(None, help="optional YAML analyze config (biofm.analyze.AnalyzeConfig)"),
    model: str | None = typer.Option(None, "--model", help="model folder (RUN/model) or run folder"),
    task: list[str] = typer.Option([], "--task", help="labelled sequences for layer maps: task YAML, table or "
                                   "shipped task (repeatable)"),
    annotation: str | None = typer.Option(None, "--annotation", help="GFF3 annotation (or dataset:NAME): element "
                                          "windows, attention by element, likelihood track"),
    fasta: str | None = typer.Option(None, "--fasta", help="the genome the annotation describes (or dataset:NAME)"),
    region: str | None = typer.Option(None, "--region", help="likelihood track region CHR:START-END (1-based)"),
    out: Path | None = typer.Option(None, "--out", help="output folder (analysis.json, report.html, PNGs)"),
    per_class: int | None = typer.Option(None, "--per-class", help="sequences per class (default 200)"),
    seed: int | None = typer.Option(None, "--seed", help="sampling, folds, maps and the control's weights"),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
) -> None:
    """Where the model separates classes (per-layer maps and scores beside its random-weights twin), which heads
    attend to which elements, and its per-position log-likelihood along a region.

    Example: biofm analyze --model runs/demo --annotation dataset:ecoli-k12-gff --fasta dataset:ecoli-k12 --out
    runs/demo/analysis
    """
    from biofm import config as cfgmod
    from biofm.analyze import AnalyzeConfig
    from biofm.analyze import analyze as run_analyze

    data = cfgmod.read_yaml(config) if config else {}
    for key, value in (("model", model), ("annotation", annotation), ("fasta", fasta), ("region", region),
                       ("out", str(out) if out else None), ("per_class", per_class), ("seed", seed)):
        if value is not None:
            data[key] = value
    if task:
        data["tasks"] = list(task)
    data = cfgmod.apply_overrides(data, set_)
    cfg = cfgmod.build(AnalyzeConfig, data, str(config) if config else "analyze options")
    from biofm.models.device import on_device

    with on_device(device):
        dest = run_analyze(cfg, say=lambda msg: err_console.print(msg, markup=False, highlight=False, soft_wrap=True))
    console.print(f"analysis: {dest / 'analysis.json'}   report: {dest / 'report.html'}")


@app.command("score-variants")
def score_variants(
    model: Path = typer.Option(..., "--model", help="model folder (RUN/model) or run folder"),
    reference: Path = typer.Option(..., "--reference", help="reference FASTA(.gz), or dataset:NAME"),
    variants: Path = typer.Option(..., "--variants", help="VCF(.gz) or TSV/CSV with chrom, pos (1-based), ref, alt, "
                                  "or dataset:NAME"),
    out: Path = typer.Option(Path("variant_scores.tsv"), "--out", help="output TSV"),
    ref_mismatch: str = typer.Option("error", "--ref-mismatch", help="rows whose REF differs from the reference: "
                                     "error (list them and stop) or skip (score the others, count them)"),
    modality: str | None = typer.Option(None, "--modality", help=MODALITY_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
) -> None:
    """Zero-shot variant effect: masked-LM log-likelihood ratio and embedding distance.

    Example: biofm score-variants --model runs/demo --reference ref.fa --variants snvs.tsv --out scores.tsv
    """
    from biofm.datasets import resolve
    from biofm.modality import get as get_modality
    from biofm.models.load import model_modality

    run_scores = get_modality(model_modality(model, modality)).verb("score_variants")  # a DNA model's use
    from biofm.models.device import on_device

    with on_device(device):
        rows = run_scores(model, resolve(str(reference)), variants, out, ref_mismatch=ref_mismatch)
    console.print(f"scored {len(rows)} variants: {out}")


@app.command()
def report(run: Path = typer.Argument(..., help="run folder")) -> None:
    """Rebuild a run's loss plot, verdict and report.html.  Example: biofm report runs/demo"""
    from biofm.pretraining import finish_run

    if not run.is_dir():
        raise BiofmError(f"{run}: no such run folder")
    finish_run(run)
    console.print(f"report: {run / 'report.html'}")


@app.command()
def demo(
    modality: str = typer.Option("dna", "--modality", help="a registered modality: dna, text, cells, ..."),
    out: Path | None = typer.Option(None, "--out", help="run folder to write (default runs/demo, runs/demo-cells, "
                                                        "runs/demo-text)"),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    eval_set: list[str] = typer.Option([], "--eval-set", help="override an evaluation setting, e.g. folds=5"),
    no_eval: bool = typer.Option(False, "--no-eval", help="pretrain and diagnose only"),
) -> None:
    """The main job on shipped data, in minutes on a laptop CPU: pretrain a tiny model, diagnose it, evaluate it
    against baselines, write the report.  dna: E. coli genome, splice + promoter tasks.  cells: PBMCs, cell-type
    prediction against PCA/HVG baselines.  text: PubMed abstracts, generation, perplexity, PubMedQA.

    Example: biofm demo --modality text
    """
    from biofm.demo import run_demo
    from biofm.modality import get as get_modality

    default = Path(get_modality(modality).demo_run_dir)
    run_dir = run_demo(out or default, set_, eval_set, evaluate=not no_eval, modality=modality)
    _print_outcome(run_dir)


@tokenizer_app.command("train")
def tokenizer_train(
    out: Path = typer.Option(..., "--out", help="folder to write the Hugging Face tokenizer to"),
    k: int = typer.Option(6, "--k", help="k-mer length"),
) -> None:
    """Build a DNA k-mer tokenizer (a fixed vocabulary).  Example: biofm tokenizer train --k 6 --out tok"""
    from biofm.modality import get as get_modality

    console.print(get_modality("dna").verb("tokenizer_train")(out, k))


@tokenizer_app.command("encode")
def tokenizer_encode(
    tokenizer: Path = typer.Option(..., "--tokenizer", help="tokenizer folder"),
    sequence: str = typer.Argument(...),
) -> None:
    """Show the tokens of a sequence.  Example: biofm tokenizer encode --tokenizer runs/demo/tokenizer ACGTN"""
    from biofm.modality import get as get_modality

    for line in get_modality("dna").verb("tokenizer_encode")(tokenizer, sequence):
        console.print(line, markup=False, highlight=False)


@data_app.command("list")
def data_list(as_json: bool = typer.Option(False, "--json", help="every field of every entry, as JSON")) -> None:
    """Every registered dataset: modality, size, licence, and where it is now (mirror, cached, missing).

    Example: BIOFM_DATA_MIRROR=../shared/data biofm data list
    """
    from dataclasses import asdict

    from rich.table import Table

    from biofm.datasets import DATASETS, status

    if as_json:
        console.print_json(json.dumps([{**asdict(d), "status": status(d.name)} for d in DATASETS.values()]))
        return
    table = Table(show_lines=False)
    table.add_column("name", no_wrap=True)
    table.add_column("modality", no_wrap=True)
    table.add_column("size", no_wrap=True, justify="right")
    table.add_column("here", no_wrap=True)
    table.add_column("source")
    table.add_column("licence")
    notes = []
    for d in DATASETS.values():
        size = f"{d.size / 1e6:,.2f} MB" if d.files else ""
        if d.mirror_only:
            notes.append(f"{d.name}: {d.mirror_only}")
            source = f"mirror-only [{len(notes)}]"
        else:
            source = f"from {', '.join(d.derived_from)}" if d.derived_from else "download"
        table.add_row(d.name, d.modality, size, status(d.name), source, d.licence.split(";")[0])
    console.print(table)
    for i, note in enumerate(notes, 1):
        console.print(f"[{i}] {note}", markup=False, highlight=False)
    console.print("`biofm data show NAME`: URLs, SHA-256, citation.  Mirror: $BIOFM_DATA_MIRROR or --mirror DIR.",
                  markup=False, highlight=False)


@data_app.command("show")
def data_show(name: str = typer.Argument(..., help="dataset name (see `biofm data list`)")) -> None:
    """One entry in full: files with URL, SHA-256 and size; licence; citation; conversion.  Example: biofm data show
    ecoli-k12"""
    from biofm.datasets import get, status

    d = get(name)
    console.print(f"[bold]{d.name}[/bold] ({d.modality}): {d.description}", highlight=False)
    for key, value in (("origin", d.origin), ("licence", d.licence), ("citation", d.citation),
                       ("reads as", d.reads), ("here", status(d.name))):
        console.print(f"  {key}: {value}", highlight=False, markup=False)
    if d.convert:
        sources = ", ".join(d.derived_from) or "its files"
        console.print(f"  conversion: biofm.datasets.convert.{d.convert} from {sources}"
                      + (f", output SHA-256 {d.output_sha256}" if d.output_sha256 else ""), markup=False)
    if d.mirror_only:
        console.print(f"  mirror-only: {d.mirror_only}", markup=False)
    for f in d.files:
        console.print(f"  file {f.mirror_path}: {f.size:,} bytes, SHA-256 {f.sha256}\n    {f.url or '(no public URL)'}",
                      markup=False, highlight=False)


@data_app.command("fetch")
def data_fetch(
    names: list[str] = typer.Argument(None, help="dataset names"),
    all_: bool = typer.Option(False, "--all", help="every dataset that can be fetched (mirror-only ones from the "
                                                   "mirror when it holds them)"),
) -> None:
    """Fetch datasets into the cache (checksummed), or check their mirror copies.  Example: biofm data fetch
    ecoli-k12 uci-splice"""
    from biofm.datasets import DATASETS, fetch, mirror_folder

    if all_:
        mirror = mirror_folder()
        chosen = [d.name for d in DATASETS.values()
                  if not d.mirror_only or (mirror and all((mirror / f.mirror_path).is_file() for f in d.files))]
    else:
        chosen = list(names or [])
    if not chosen:
        raise BiofmError("no dataset named: pass NAME ... or --all (see `biofm data list`)")
    for name in chosen:
        for path in fetch(name):
            console.print(f"{name}: {path}", highlight=False, markup=False, soft_wrap=True)


@data_app.command("path")
def data_path(name: str = typer.Argument(..., help="dataset name")) -> None:
    """Print the local path of a dataset's file(s), fetching it first if needed.  Example: biofm data path
    ecoli-k12"""
    from biofm.datasets import fetch

    for path in fetch(name):
        console.print(str(path), highlight=False, markup=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    # No network at run time, ever; and no library progress bars beside biofm's own.
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_PROGRESS_BARS"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Idle OpenMP threads sleep instead of spinning: on a busy 2-core machine spinning threads made small
    # torch/sklearn operations up to 20x slower; on a quiet one this costs a few percent.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # e.g. "Writing model shards" on every checkpoint
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("BIOFM_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    if not debug:  # a normal run prints biofm's own progress only: load reports and deprecations go to --debug
        import warnings

        for category in (FutureWarning, DeprecationWarning, PendingDeprecationWarning):
            warnings.filterwarnings("ignore", category=category)
        hf_logging.set_verbosity_error()
    try:
        args = _take_mirror(args)
        app(args=args, prog_name="biofm")
    except BiofmError as exc:
        if debug:
            raise
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted", markup=False)
        sys.exit(130)
    except OSError as exc:
        if debug:
            raise
        name = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        err_console.print(f"error: {name}{exc.strerror or exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)


def _take_mirror(args: list[str]) -> list[str]:
    """`--mirror DIR` anywhere on the command line, for every verb: the dataset mirror folder (sets
    BIOFM_DATA_MIRROR for this run)."""
    if not any(a == "--mirror" or a.startswith("--mirror=") for a in args):
        return args
    from biofm.datasets import MIRROR_ENV, mirror_folder

    out: list[str] = []
    it = iter(args)
    for a in it:
        if a == "--mirror" or a.startswith("--mirror="):
            value = a.partition("=")[2] if "=" in a else next(it, "")
            if not value:
                raise BiofmError("--mirror needs a folder")
            os.environ[MIRROR_ENV] = str(mirror_folder(value))
        else:
            out.append(a)
    return out


if __name__ == "__main__":
    main()
