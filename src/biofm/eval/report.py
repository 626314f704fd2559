"""Evaluation outputs: results.json, results.csv, the per-layer probing plot, per-task confusion matrices
and embedding maps, and report.html.

Every task's scores carry the protocol they were obtained under (`k-fold CV`, or `fixed split (train N /
validation M / test T, S seeds)`) in each of them -- the JSON, every CSV row, the report's heading -- so
a cross-validated mean is never set beside a test-set score by accident.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from biofm.io.atomic import atomic_path, write_json, write_text
from biofm.report.html import CSS


def _csv(results: dict[str, Any]) -> str:
    buf = io.StringIO()
    rows = []
    for t in results["tasks"]:
        for m in t["methods"]:
            row = {"task": t["task"], "protocol": _protocol(t), "method": m["name"], "kind": m["kind"],
                   "seconds": round(m["seconds"], 3)}
            for metric, s in m["summary"].items():
                row[f"{metric}_mean"], row[f"{metric}_std"] = s["mean"], s["std"]
            rows.append(row)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def plot_probing(results: dict[str, Any], dest: Path) -> bool:
    tasks = [t for t in results["tasks"] if any("per_layer" in m for m in t["methods"])]
    if not tasks:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    cols = min(len(tasks), 2)  # two panels a row: the page is 60em wide
    rows = -(-len(tasks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.9 * rows), dpi=110, squeeze=False)
    for ax in axes.flat[len(tasks):]:
        ax.set_visible(False)
    for ax, t in zip(axes.flat, tasks, strict=False):
        metric = t["headline_metric"]
        for m in t["methods"]:
            if "per_layer" in m:
                layers = sorted(m["per_layer"], key=int)
                mean = [m["per_layer"][k]["mean"] for k in layers]
                std = [m["per_layer"][k]["std"] for k in layers]
                x = [int(k) for k in layers]
                ax.errorbar(x, mean, yerr=std, marker="o", ms=3, capsize=2, label=m["name"])
        base = [m for m in t["methods"] if m["kind"] == "baseline"]
        if base:
            b = max(base, key=lambda m: m["summary"][metric]["mean"])
            ax.axhline(b["summary"][metric]["mean"], color="black", ls="--", label=f"best baseline ({b['name']})")
        ax.set_title(t["task"])
        ax.set_xlabel("layer (0 = embeddings)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # layers are whole numbers
        ax.set_ylabel(f"{metric} (mean ± s.d. over {'seeds' if t.get('seeds') else 'folds'})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return True


def _protocol(t: dict[str, Any]) -> str:
    """A task result's protocol; results written before fixed splits existed were all cross-validated."""
    return t.get("protocol") or "k-fold CV"


def duplicates_sentence(t: dict[str, Any]) -> str | None:
    """What became of the test rows that duplicate a train or validation row (fixed splits), or None."""
    d = t.get("test_duplicates")
    if not d or not d["found"]:
        return None
    if d["removed"]:
        return (f"{d['found']} test row(s) duplicated a train or validation row and were removed before scoring "
                "(keep_test_duplicates: true keeps them).")
    return f"{d['found']} test row(s) duplicate a train or validation row and were kept (keep_test_duplicates: true)."


def _fmt(s: dict[str, float]) -> str:
    if s["mean"] != s["mean"]:
        return "–"
    return f"{s['mean']:.3f} ± {s['std']:.3f}"


def explanations_html(m: dict[str, Any]) -> str:
    """A method's top features per class: one row per class, each feature with its number (mean |SHAP| and
    the sign of the mean SHAP, or the coefficient)."""
    shap = m.get("explanations_kind") == "shap"
    rows = []
    for cls, feats in m["explanations"].items():
        if shap:
            cells = [f"{f['feature']} {f['mean_abs_shap']:.3g} ({'+' if f['mean_shap'] >= 0 else '−'})" for f in feats]
        else:
            cells = [f"{f['feature']} {f['coefficient']:+.3g}" for f in feats]
        rows.append(f"<tr><td>{html.escape(cls)}</td><td>{html.escape(', '.join(cells) or '–')}</td></tr>")
    what = "mean |SHAP| (sign of the mean SHAP)" if shap else "coefficient (not SHAP)"
    return (f"<h4>Top features of {html.escape(m['name'])}: {what}</h4>"
            f"<p>{html.escape(m.get('explanations_note', ''))}</p>"
            f"<table><tr><th>class</th><th>features</th></tr>{''.join(rows)}</table>")


def attributions_html(t: dict[str, Any], folder: Path | None) -> str:
    """The fine-tuned model's per-position attributions: how they were made, and the logo-style PNG when it
    is in `folder`."""
    a = t["attributions"]
    img = ""
    if folder is not None and a.get("png") and (folder / a["png"]).exists():
        data = base64.b64encode((folder / a["png"]).read_bytes()).decode()
        img = f'<img alt="attributions of {html.escape(t["task"])}" src="data:image/png;base64,{data}">'
    return (f"<h4>Per-position attributions of {html.escape(a['method'])} (fold {a['fold']})</h4>"
            f"<p>{html.escape(a['how'])}; {len(a['examples'])} test rows, the surest of each class. Letters above "
            f"the line speak for the row's class, below against it.</p>{img}")


def verdict_table_html(results: dict[str, Any], folder: Path | None = None) -> str:
    """Per task: every method's headline metric (mean ± s.d.) and the verdict in words, the baselines' top
    features and the fine-tuned model's attributions (the PNG embedded when it is in `folder`)."""
    parts = [f"<p><b>Overall: the model {html.escape(results['overall'])} tasks</b> "
             "(paired over the shared folds, or the shared seeds of a fixed split: beats = the 95% interval of "
             "the per-fold difference lies above 0; NT's ±2 s.d. rule is given beside it where it disagrees).</p>"]
    for t in results["tasks"]:
        metric = t["headline_metric"]
        v = t.get("verdict")
        over = f"{t['seeds']} seeds" if t.get("seeds") else f"{t['folds']} folds"
        parts.append(f"<h3>{html.escape(t['task'])} ({t['type']}, n={t['n']}, {html.escape(_protocol(t))})</h3>"
                     f"<p>Protocol: {html.escape(_protocol(t))}; scores are mean ± s.d. over {over}.</p>")
        dup = duplicates_sentence(t)
        if dup:
            parts.append(f"<p>{html.escape(dup)}</p>")
        if v:
            parts.append(f"<p>{html.escape(v['sentence'])}</p>")
        if t.get("control_sentence"):
            parts.append(f"<p>{html.escape(t['control_sentence'])}</p>")
        extra = [k for k in ("accuracy", "macro_f1", "auroc", "r2") if k in t["methods"][0]["summary"]]
        head = "".join(f"<th>{h}</th>" for h in ["method", "kind", metric, *extra, "seconds"])
        rows = []
        for m in sorted(t["methods"], key=lambda m: -_nan0(m["summary"][metric]["mean"])):
            cells = [m["name"], m["kind"], _fmt(m["summary"][metric])] + [_fmt(m["summary"][k]) for k in extra]
            cells.append(f"{m['seconds']:.1f}")
            rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
        parts.append(f"<table><tr>{head}</tr>{''.join(rows)}</table>")
        warnings = [w for m in t["methods"] for w in m.get("warnings", [])]
        if warnings:
            parts.append("<p><b>Warnings</b></p><ul>" + "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
                         + "</ul>")
        if t.get("pretraining_gain"):
            parts.append("<h4>Pretraining gain: model − its random-weights control, same folds</h4>"
                         + rows_html(t["pretraining_gain"]))
        for table in t.get("tables") or []:
            parts.append(f"<h4>{html.escape(table['title'])}</h4>{rows_html(table['rows'])}")
        parts += [explanations_html(m) for m in t["methods"] if m.get("explanations")]
        if t.get("attributions"):
            parts.append(attributions_html(t, folder))
        if t.get("confusion_png"):
            parts.append("<h4>Confusion matrices (share of each true class, pooled over "
                         f"{'seeds' if t.get('seeds') else 'folds'})</h4>"
                         + _img(folder, t["confusion_png"], f"confusion matrices of {t['task']}"))
        if (t.get("embedding_map") or {}).get("png"):
            parts.append("<h4>The model's embeddings, coloured by label</h4>"
                         + _img(folder, t["embedding_map"]["png"], f"embedding map of {t['task']}"))
    return "".join(parts)


def cell_text(v: Any) -> str:
    """A table value: 3 decimals, "–" where undefined (NaN, or None as JSON writes NaN)."""
    if v is None:  # undefined (JSON writes NaN as null)
        return "–"
    if isinstance(v, float):
        return "–" if v != v else f"{v:.3f}"
    return str(v)


def rows_html(rows: list[dict[str, Any]]) -> str:
    """A list of flat dicts (same keys) as an HTML table."""
    if not rows:
        return ""
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell_text(r.get(c)))}</td>" for c in cols) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _nan0(x: float) -> float:
    return -math.inf if x != x else x


def _safe(task: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in task)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_confusion(t: dict[str, Any], dest: Path) -> None:
    """Row-normalised confusion matrices (true class down, predicted across) of the best model method and the
    best baseline side by side, each cell its share of the true class (the count when it fits)."""
    plt = _pyplot()
    mats = t["confusion"]
    classes = t.get("classes") or [str(i) for i in range(len(mats[0]["matrix"]))]
    k = len(classes)
    size = min(6.0, 1.6 + 0.32 * k)
    fig, axes = plt.subplots(1, len(mats), figsize=(size * len(mats) + 0.6, size + 0.4), dpi=100, squeeze=False)
    for ax, c in zip(axes[0], mats, strict=True):
        counts = np.asarray(c["matrix"], dtype=np.float64)
        share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        if k <= 12:
            for i in range(k):
                for j in range(k):
                    ax.text(j, i, f"{share[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if share[i, j] > 0.6 else "black")
        ax.set_xticks(range(k), classes, rotation=90, fontsize=6 if k > 12 else 7)
        ax.set_yticks(range(k), classes, fontsize=6 if k > 12 else 7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(c["method"], fontsize=9)
    fig.tight_layout()
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def draw_embedding_map(t: dict[str, Any], labels: np.ndarray, dest: Path) -> None:
    """The model's embeddings in 2-D (UMAP, else PCA) coloured by label."""
    plt = _pyplot()
    e = t["embedding_map"]
    xy = np.asarray(e["xy"])
    classes = t.get("classes") or [str(i) for i in range(int(labels.max()) + 1)]
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(7.5, 5.2), dpi=100)
    size = max(1.0, min(12.0, 4000 / max(len(xy), 1)))
    for code, name in enumerate(classes):
        mine = labels == code
        if mine.any():
            ax.scatter(xy[mine, 0], xy[mine, 1], s=size, color=cmap(code % cmap.N), label=name, linewidths=0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{t['task']}: {e['projection'].upper()} of layer {e['layer']} ({e['pooling']} pooling; the layer "
                 f"{e['chosen_by']} chose most often)", fontsize=9)
    ax.legend(fontsize=7, markerscale=max(1.0, 6 / size), loc="center left", bbox_to_anchor=(1.0, 0.5),
              frameon=False, ncol=1 if len(classes) <= 18 else 2)
    fig.tight_layout()
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _img(folder: Path | None, name: str | None, alt: str) -> str:
    if folder is None or not name or not (folder / name).exists():
        return ""
    data = base64.b64encode((folder / name).read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def write_outputs(out: Path, results: dict[str, Any], labels: dict[str, np.ndarray] | None = None) -> Path:
    """Write results.json, results.csv, the PNGs and report.html into `out`; `labels` (task -> class codes)
    colour the embedding maps, whose coordinates are drawn and then dropped from results.json."""
    from biofm.eval.explain import draw_attributions, png_name

    out.mkdir(parents=True, exist_ok=True)
    for t in results["tasks"]:
        if t.get("confusion"):
            t["confusion_png"] = f"confusion-{_safe(t['task'])}.png"
            draw_confusion(t, out / t["confusion_png"])
        emap = t.get("embedding_map")
        if emap is not None and "xy" in emap:
            if labels is not None and t["task"] in labels:
                emap["png"] = f"map-{_safe(t['task'])}.png"
                draw_embedding_map(t, np.asarray(labels[t["task"]]), out / emap["png"])
            del emap["xy"]
    for t in results["tasks"]:
        if t.get("attributions") and t["attributions"]["examples"]:
            t["attributions"]["png"] = png_name(t["task"])
            draw_attributions(t["attributions"], t["task"], out / t["attributions"]["png"],
                              results.get("config", {}).get("explain", {}).get("window", 120))
    results["methods"] = [{"task": t["task"], **m} for t in results["tasks"] for m in t["methods"]]
    write_json(out / "results.json", results)
    write_text(out / "results.csv", _csv(results))
    has_plot = plot_probing(results, out / "probing.png")
    img = ""
    if has_plot:
        data = base64.b64encode((out / "probing.png").read_bytes()).decode()
        img = f'<h2>Per-layer probing</h2><img alt="per-layer probing" src="data:image/png;base64,{data}">'
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>biofm evaluation</title><style>{CSS}</style>"
            f"</head><body><h1>biofm evaluation</h1><p>model: {html.escape(str(results.get('model')))}</p>"
            f"{verdict_table_html(results, out)}{img}</body></html>\n")
    write_text(out / "report.html", page)
    return out
