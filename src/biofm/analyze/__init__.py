"""`biofm analyze`: where in the network a model tells classes of sequence apart, which heads look at
which elements, and how well it predicts each position.

* layer maps (`layer_maps`): mean-pooled embeddings of labelled sequences at every layer, scored per
  layer (silhouette, cross-validated kNN accuracy) beside the model's random-weights twin, and drawn
  in 2-D. Labels come from tasks (`--task`, any task `biofm evaluate` reads) or from an annotation
  (`--annotation GFF --fasta FASTA`): windows per element class, drawn by the modality's
  `element_windows` verb (DNA: `biofm.dna.elements`, which states its sampling rule).
* attention (`attention`), annotation only: per layer and head, attention mass share / token share of
  each element class, over regions of the model's context centred on sampled windows.
* likelihood track (`likelihood`), annotation only: per-position log-likelihood along `--region`
  (default: the `region_bp` stretch of the first record holding the most whole genes), with the
  annotation drawn under it.

This module is shared: it reaches modality code only through `biofm.modality` (the evaluation hooks
for embeddings and task loading, the `element_windows` verb for annotations). The verb is called as
`element_windows(fasta, gff, window_bp=, per_class=, seed=, upstream_clear_bp=)` and returns an object
with `windows` (record, start, end, strand, label, seq, feature), `classes`, `counts()`, `available`,
`skipped`, `rule`, `records` (name -> sequence), `codes` (name -> class code per position), `code_names`,
`genes`, `features_in(record, start, end)` and `default_region(length)`: see `biofm.dna.elements.Elements`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, NonNegativeInt, PositiveInt

from biofm.config import Schema
from biofm.errors import BiofmError

__all__ = ["AnalyzeConfig", "analyze", "parse_region"]

MAX_REGION_BP = 100_000  # the track hides every position in turn: ~10^5 forward rows is minutes on a CPU


class AnalyzeConfig(Schema):
    """Settings of `biofm analyze` (YAML keys; every one can be given as --set key=value)."""

    model: str = Field(..., description="model folder (RUN/model) or run folder")
    tasks: list[str] = Field(default_factory=list, description="labelled sequences for layer maps: task YAMLs, "
                             "tables or shipped task names (as `biofm evaluate --task`); classification only")
    annotation: str | None = Field(None, description="GFF3 annotation (or dataset:NAME) whose element classes "
                                   "label windows of `fasta`; enables the attention analysis and likelihood track")
    fasta: str | None = Field(None, description="the genome the annotation describes (FASTA, or dataset:NAME)")
    region: str | None = Field(None, description="likelihood track region CHR:START-END (1-based, inclusive); "
                               "default: region_bp of the first record holding the most whole genes")
    region_bp: PositiveInt = Field(2000, le=MAX_REGION_BP, description="length of the default region")
    out: str = Field("analysis", description="output folder: analysis.json, report.html, PNGs, analyze.yaml")
    per_class: PositiveInt = Field(200, description="sequences per class (annotation windows; tasks are "
                                   "subsampled to this many per class)")
    window_bp: PositiveInt | None = Field(
        64, description="annotation window length in bases; null: the model's context. 64 keeps the short "
        "classes: E. coli tRNAs are 74-93 bp, many ncRNAs and UTRs shorter than 100 bp, and a window must lie "
        "wholly inside its feature")
    upstream_clear_bp: NonNegativeInt = Field(300, description="intergenic windows keep this far from every "
                                              "gene's 5' end (so they are not unannotated promoters)")
    seed: int = Field(0, description="window sampling, subsampling, folds, UMAP and the control's weights")
    folds: int = Field(5, ge=2, description="stratified folds of the kNN accuracy")
    knn_k: PositiveInt = Field(10, description="neighbours of the kNN classifier")
    projection: Literal["auto", "umap", "pca"] = Field(
        "auto", description="2-D maps: auto = UMAP when umap-learn is installed (pip install 'biofm[analyze]'), "
        "else PCA")
    control: bool = Field(True, description="also score the layers of the model's random-weights twin (same "
                          "architecture and tokenizer, fresh weights from `seed`)")
    attention: bool = Field(True, description="attention analysis (annotation input only)")
    attention_per_class: PositiveInt = Field(6, description="attention regions centred on this many sampled "
                                             "windows of each class")
    attention_batch_size: PositiveInt = Field(4, description="regions per forward pass (eager attention keeps "
                                              "layers x heads x context^2 weights per region)")
    likelihood: bool = Field(True, description="likelihood track (annotation input only)")
    likelihood_batch_size: PositiveInt = Field(128, description="masked copies per forward pass")
    embed_batch_size: PositiveInt = Field(64, description="sequences per forward pass for embeddings")
    cache_dir: str | None = Field(None, description="embedding cache (default: biofm's cache folder)")


def parse_region(text: str, records: dict[str, str], source: str) -> tuple[str, int, int]:
    """`CHR:START-END` (1-based, inclusive; commas allowed) -> (record, 0-based start, end), checked
    against the records' lengths."""
    name, sep, span = text.rpartition(":")
    a, dash, b = span.replace(",", "").partition("-")
    if not sep or not dash or not a.isdigit() or not b.isdigit():
        raise BiofmError(f"region {text!r}: expected CHR:START-END, e.g. {next(iter(records))}:1001-3000")
    start, end = int(a), int(b)
    if name not in records:
        known = ", ".join(list(records)[:5]) + (", ..." if len(records) > 5 else "")
        raise BiofmError(f"region {text!r}: record {name!r} is not in {source} (its records: {known})")
    size = len(records[name])
    if not 1 <= start <= end:
        raise BiofmError(f"region {text!r}: start and end must satisfy 1 <= START <= END")
    if end > size:
        raise BiofmError(f"region {text!r}: ends past the end of record {name!r} ({size:,} bp) in {source}")
    if end - start + 1 > MAX_REGION_BP:
        raise BiofmError(f"region {text!r}: {end - start + 1:,} bp; the track hides every position in turn, "
                         f"so give at most {MAX_REGION_BP:,} bp")
    return name, start - 1, end


def _rows(task: Any, keep: np.ndarray, **changes: Any) -> Any:
    """The task restricted to rows `keep`: inputs and every per-row array (labels, folds, split, ...)."""
    n = len(task.labels)
    per_row = {f.name: getattr(task, f.name)[keep] for f in dataclasses.fields(task)
               if isinstance(getattr(task, f.name), np.ndarray) and len(getattr(task, f.name)) == n}
    return dataclasses.replace(task, inputs=[task.inputs[i] for i in keep], **{**per_row, **changes})


def _subsample(task: Any, per_class: int, seed: int) -> Any:
    """At most `per_class` rows of each class, seeded, in their original order."""
    rng = np.random.default_rng(seed)
    keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(task.labels == c))[:per_class]
                                   for c in np.unique(task.labels)]))
    return _rows(task, keep)


def _drop_small(task: Any, folds: int) -> tuple[Any, list[str]]:
    """Classes with fewer rows than folds cannot be stratified: leave them out, and say so."""
    counts = np.bincount(task.labels, minlength=len(task.classes))
    small = [i for i, n in enumerate(counts) if n < folds]
    if not small:
        return task, []
    keep = np.flatnonzero(~np.isin(task.labels, small))
    kept = [c for c in range(len(task.classes)) if c not in small]
    recode = np.full(len(task.classes), -1, dtype=np.int64)
    recode[kept] = np.arange(len(kept))
    notes = [f"{task.classes[c]}: {counts[c]} sequence(s), fewer than the {folds} folds" for c in small]
    return _rows(task, keep, labels=recode[task.labels[keep]], classes=[task.classes[c] for c in kept]), notes


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name).strip("-")[:60] or "labels"


def analyze(cfg: AnalyzeConfig, say: Callable[[str], None] = print) -> Path:
    """Run every part the inputs allow; write analysis.json, report.html and the PNGs into cfg.out."""
    from biofm import config as cfgmod
    from biofm.analyze import layer_maps as lm
    from biofm.analyze.report import write_report
    from biofm.datasets import resolve
    from biofm.eval.evaluate import load_any_task
    from biofm.eval.types import Task
    from biofm.io.atomic import write_json
    from biofm.modality import get as get_modality
    from biofm.models.load import load_for_embedding, model_modality, resolve_model_dir

    if not cfg.tasks and not cfg.annotation:
        raise BiofmError("nothing to analyse: give --task TASK and/or --annotation GFF --fasta FASTA")
    if bool(cfg.annotation) != bool(cfg.fasta):
        raise BiofmError("--annotation and --fasta go together: the GFF3 file and the genome it describes")
    if cfg.region and not cfg.annotation:
        raise BiofmError("--region needs --annotation and --fasta (the track is drawn over the annotation)")
    t_all = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cfgmod.save(cfg, out / "analyze.yaml")
    model_dir = resolve_model_dir(cfg.model)
    modality = model_modality(model_dir)
    model, tok = load_for_embedding(model_dir)
    max_tokens = int(getattr(model.config, "max_position_embeddings", 512))
    seconds: dict[str, float] = {}

    # ---- labelled sequences: tasks, then the annotation's windows
    t0 = time.perf_counter()
    label_sets: list[tuple[str, str, Any, dict[str, Any] | None]] = []  # (name, modality, task, sampling)
    for spec in cfg.tasks:
        task_modality, task = load_any_task(spec, modality)
        if task.type != "classification" or not task.classes:
            raise BiofmError(f"{spec}: a {task.type} task; layer maps need class labels")
        label_sets.append((task.name, task_modality, _subsample(task, cfg.per_class, cfg.seed), None))
    elements = None
    region: tuple[str, int, int] | None = None
    if cfg.annotation and cfg.fasta:
        window_bp = cfg.window_bp or _context_bases(tok, max_tokens)
        fasta, gff = resolve(cfg.fasta), resolve(cfg.annotation)
        elements = get_modality(modality).verb("element_windows")(
            fasta, gff, window_bp=window_bp, per_class=cfg.per_class, seed=cfg.seed,
            upstream_clear_bp=cfg.upstream_clear_bp)
        # the region is checked before any work, so a typo fails in seconds
        region = (parse_region(cfg.region, elements.records, str(fasta)) if cfg.region
                  else elements.default_region(cfg.region_bp))
        classes = elements.classes
        if len(classes) < 2:
            raise BiofmError(f"{gff}: windows of {window_bp} bp found for {len(classes)} element class(es) "
                             f"({', '.join(classes) or 'none'}); need 2 (try a smaller window_bp)")
        windows = elements.windows
        n_tokens = max(len(tok(w.seq, add_special_tokens=False)["input_ids"]) for w in windows)
        if n_tokens > max_tokens - 1:
            raise BiofmError(f"window_bp={window_bp} gives {n_tokens} tokens, more than the model's context "
                             f"({max_tokens - 1} after <cls>); set a smaller window_bp")
        task = Task(name=f"elements ({Path(str(gff)).name})", type="classification", inputs=[w.seq for w in windows],
                    labels=np.array([classes.index(w.label) for w in windows], dtype=np.int64), classes=classes,
                    source=str(gff), meta={"long_sequences": "error"})
        sampling = {"rule": elements.rule, "window_bp": window_bp, "per_class": cfg.per_class, "seed": cfg.seed,
                    "available": elements.available, "skipped_features": elements.skipped,
                    "windows": [{"record": w.record, "start": w.start + 1, "end": w.end, "strand": w.strand,
                                 "class": w.label, "feature": w.feature} for w in windows]}
        label_sets.append((task.name, modality, task, sampling))
        unsampled = [c for c in elements.available if c not in classes]
        say(f"annotation: {len(windows)} windows of {window_bp} bp: "
            + ", ".join(f"{c} {n}" for c, n in elements.counts().items())
            + (f" (no usable window: {', '.join(unsampled)})" if unsampled else ""))
    seconds["labels"] = time.perf_counter() - t0

    # ---- layer maps
    control = None
    if cfg.control:
        from biofm.eval.control import make_control_model

        control_dir = make_control_model(model_dir, out / "control-model", cfg.seed)
        control = (control_dir, *load_for_embedding(control_dir))
    maps = []
    for name, task_modality, task, sampling in label_sets:
        t0 = time.perf_counter()
        task, left_out = _drop_small(task, cfg.folds)
        if len(task.classes) < 2:
            raise BiofmError(f"{name}: fewer than 2 classes with {cfg.folds} or more sequences")
        hooks = get_modality(task_modality).hooks()
        emb = np.asarray(hooks.embeddings(task, cfg, model_dir, model, tok)["mean"])  # [n, layers + 1, H]
        scores = lm.layer_scores(emb, task.labels, folds=cfg.folds, k=cfg.knn_k, seed=cfg.seed)
        control_scores = None
        if control is not None:
            c_emb = np.asarray(hooks.embeddings(task, cfg, *control)["mean"])
            control_scores = lm.layer_scores(c_emb, task.labels, folds=cfg.folds, k=cfg.knn_k, seed=cfg.seed)
        method = lm.projection_method(cfg.projection, len(task.labels))
        coords = [lm.project(emb[:, layer], method, cfg.seed) for layer in range(emb.shape[1])]
        slug = _slug(name)
        chance = lm.chance_accuracy(task.labels)
        lm.plot_layer_maps(coords, task.labels, task.classes, scores, method, name, out / f"layer_maps-{slug}.png")
        lm.plot_scores(scores, control_scores, chance, name, out / f"layer_scores-{slug}.png")
        note = ("UMAP (umap-learn; z-scored, PCA to at most 50 dimensions, 15 exact neighbours)" if method == "umap"
                else "PCA of z-scored features (umap-learn not installed, projection=pca, or too few points)")
        maps.append({"name": name, "source": task.source, "classes": task.classes,
                     "counts": {c: int((task.labels == i).sum()) for i, c in enumerate(task.classes)},
                     "n": len(task.labels), "folds": cfg.folds, "knn_k": cfg.knn_k, "chance_accuracy": chance,
                     "scores": scores, "control_scores": control_scores, "projection": method,
                     "projection_note": note, "figure": f"layer_maps-{slug}.png",
                     "scores_figure": f"layer_scores-{slug}.png", "left_out": left_out, "sampling": sampling})
        best = max(scores, key=lambda s: s["knn_accuracy"])
        say(f"[{name}] layer maps ({method}): " + "; ".join(
            f"layer {s['layer']} silhouette {s['silhouette']:.3f} kNN {s['knn_accuracy']:.3f}" for s in scores)
            + f" (chance {chance:.3f}; best kNN at layer {best['layer']})"
            + ("; control kNN " + " ".join(f"{s['knn_accuracy']:.3f}" for s in control_scores)
               if control_scores else ""))
        seconds[f"layer_maps:{name}"] = time.perf_counter() - t0

    result: dict[str, Any] = {"model": str(model_dir), "modality": modality, "layer_maps": maps,
                              "attention": None, "likelihood": None}
    if elements is not None and cfg.attention:
        t0 = time.perf_counter()
        result["attention"] = _attention(cfg, model_dir, tok, elements, max_tokens, out, say)
        seconds["attention"] = time.perf_counter() - t0
    if elements is not None and region is not None and cfg.likelihood:
        t0 = time.perf_counter()
        result["likelihood"] = _likelihood(cfg, model, tok, elements, region, out, say)
        seconds["likelihood"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - t_all
    result["seconds"] = seconds
    result["config"] = cfg.model_dump(mode="json")
    write_json(out / "analysis.json", result)
    write_report(out, result)
    say(f"analysed in {seconds['total']:.1f}s")
    return out


def _context_bases(tok: Any, max_tokens: int, sample: str = "ACGT" * 256) -> int:
    """Letters the model's context holds: tokens after <cls> x letters per token of `sample` (a stretch of the
    annotated genome where one is at hand; k for a k-mer tokenizer, an average for a BPE one)."""
    sample = sample[:4096] or "ACGT" * 256
    per_token = len(sample) / max(len(tok(sample, add_special_tokens=False)["input_ids"]), 1)
    return max(1, int((max_tokens - 1) * per_token))


def _attention(cfg: AnalyzeConfig, model_dir: Path, tok: Any, elements: Any, max_tokens: int, out: Path,
               say: Callable[[str], None]) -> dict[str, Any]:
    """Regions of the model's context centred on the first `attention_per_class` windows of each class (the
    windows are in seeded random order), read on the + strand, with each base's class."""
    from biofm.analyze.attention import attention_enrichment, highlights, plot_enrichment
    from biofm.models.load import load_for_embedding

    span = _context_bases(tok, max_tokens, next(iter(elements.records.values())))
    picked: dict[str, int] = {}
    seqs, codes = [], []
    for w in elements.windows:
        if picked.get(w.label, 0) >= cfg.attention_per_class:
            continue
        picked[w.label] = picked.get(w.label, 0) + 1
        size = len(elements.records[w.record])
        a = max(0, min((w.start + w.end) // 2 - span // 2, size - span))
        b = min(size, a + span)
        seqs.append(elements.records[w.record][a:b])
        codes.append(elements.codes[w.record][a:b])
    model, _ = load_for_embedding(model_dir, attn_implementation="eager")
    names = list(elements.code_names)
    res = attention_enrichment(model, tok, seqs, codes, len(names), batch_size=cfg.attention_batch_size)
    plot_enrichment(res, names, out / "attention.png")
    top = highlights(res, names)
    say("attention: most enriched (layer, head, class): " + "; ".join(
        f"L{h['layer']} H{h['head']} {h['class']} x{h['enrichment']:.2f}" for h in top))
    present = [i for i, s in enumerate(res["token_share"]) if s > 0]
    return {"rule": f"Regions of {span} bp (the model's context) centred on up to {cfg.attention_per_class} sampled "
                    "windows per class, + strand; a token's class is its middle base's; attention renormalised "
                    "over real tokens (the start token's share is sink_share); enrichment = mass share / "
                    "token share; layers numbered from 1.",
            "classes": [names[i] for i in present],
            "token_share": {names[i]: float(res["token_share"][i]) for i in present},
            "enrichment": {names[i]: res["enrichment"][:, :, i].tolist() for i in present},
            "mass_share": {names[i]: res["mass_share"][:, :, i].tolist() for i in present},
            "sink_share": res["sink_share"].tolist(), "n_regions": res["n_regions"], "n_tokens": res["n_tokens"],
            "highlights": top, "figure": "attention.png"}


def _likelihood(cfg: AnalyzeConfig, model: Any, tok: Any, elements: Any, region: tuple[str, int, int], out: Path,
                say: Callable[[str], None]) -> dict[str, Any]:
    from biofm.analyze.likelihood import likelihood_track, plot_track

    record, start, end = region
    seq = elements.records[record]
    track = likelihood_track(model, tok, seq, start, end, batch_size=cfg.likelihood_batch_size)
    names = list(elements.code_names)
    plot_track(track, record, start, end, elements.features_in(record, start, end),
               [g for g in elements.genes.get(record, []) if g[0] < end and g[1] > start], names[:-1],
               out / "likelihood.png")
    ll = np.asarray(track["loglik"])
    mid = (np.asarray(track["token_start"]) + np.asarray(track["token_end"]) - 1) // 2
    token_class = elements.codes[record][mid]
    by_class = {names[c]: {"tokens": int((token_class == c).sum()),
                           "mean_loglik": float(np.nanmean(ll[token_class == c]))}
                for c in range(len(names)) if (token_class == c).any()}
    say(f"likelihood: {record}:{start + 1:,}-{end:,}, {len(ll):,} positions in {track['seconds']:.1f}s "
        f"({track['positions_per_s']:,.0f} positions/s), mean {np.nanmean(ll):.3f} nats; "
        + ", ".join(f"{k} {v['mean_loglik']:.3f}" for k, v in by_class.items()))
    kind = track["kind"]
    rule = (f"Each token hidden in turn, scored from a {track['context_tokens']}-token context centred on it "
            "(shifted inward at the record's ends); log-softmax over the real tokens."
            if kind.startswith("masked") else
            f"Next-token log-likelihood after up to {track['context_tokens'] // 2} tokens of left context.")
    return {"record": record, "start": start + 1, "end": end, "kind": kind, "rule": rule, "positions": len(ll),
            "seconds": track["seconds"], "positions_per_s": track["positions_per_s"],
            "mean_loglik": float(np.nanmean(ll)), "uniform_loglik": track["uniform_loglik"], "by_class": by_class,
            "token_start": (np.asarray(track["token_start"]) + 1).tolist(),
            "token_end": np.asarray(track["token_end"]).tolist(), "loglik": ll.tolist(), "figure": "likelihood.png"}
