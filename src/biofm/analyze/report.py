"""`biofm analyze` outputs: PNG writing, and the HTML section (images inlined) that report.html holds and
that other reports can include as it is (`section_html`)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from biofm.io.atomic import atomic_path, write_text
from biofm.report.html import CSS


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend (no display on servers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, dest: Path) -> None:
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png")


def _img(out: Path, name: str | None, alt: str) -> str:
    if not name or not (out / name).is_file():
        return ""
    data = base64.b64encode((out / name).read_bytes()).decode()
    return f'<p><img alt="{html.escape(alt)}" style="max-width:100%" src="data:image/png;base64,{data}"></p>'


def _num(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else html.escape(str(v))


def _table(head: list[str], rows: list[list[Any]]) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{_num(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def _layer_block(out: Path, lm: dict[str, Any]) -> str:
    control = lm.get("control_scores")
    head = ["layer", "silhouette", "kNN accuracy", "± s.d. (folds)"]
    if control:
        head += ["control silhouette", "control kNN"]
    rows = []
    for i, s in enumerate(lm["scores"]):
        row = [s["layer"], s["silhouette"], s["knn_accuracy"], s["knn_accuracy_std"]]
        if control:
            row += [control[i]["silhouette"], control[i]["knn_accuracy"]]
        rows.append(row)
    counts = ", ".join(f"{html.escape(k)} {v}" for k, v in lm["counts"].items())
    parts = [f"<h3>Layer maps: {html.escape(lm['name'])}</h3>",
             f"<p>{lm['n']} sequences: {counts}. kNN accuracy by stratified {lm['folds']}-fold cross-validation "
             f"(k = {lm['knn_k']}), chance {lm['chance_accuracy']:.3f} (majority class); silhouette of the true "
             f"labels, euclidean on z-scored features. Maps: {html.escape(lm['projection_note'])}.</p>"]
    if lm.get("sampling"):
        parts.append(f"<p><b>Sampling.</b> {html.escape(lm['sampling']['rule'])}</p>")
    if lm.get("left_out"):
        parts.append("<p>Left out: " + html.escape("; ".join(lm["left_out"])) + "</p>")
    parts += [_table(head, rows), _img(out, lm.get("scores_figure"), "class separation per layer"),
              _img(out, lm.get("figure"), "per-layer maps")]
    return "".join(parts)


def _attention_block(out: Path, att: dict[str, Any]) -> str:
    rows = [[h["layer"], h["head"], h["class"], h["enrichment"], h["mass_share"], h["token_share"]]
            for h in att["highlights"]]
    shares = ", ".join(f"{html.escape(k)} {v:.1%}" for k, v in att["token_share"].items() if v > 0)
    return "".join([
        "<h3>Attention by element class</h3>",
        f"<p>{html.escape(att['rule'])} {att['n_regions']} regions, {att['n_tokens']:,} tokens: {shares}.</p>",
        "<p>Most enriched heads (classes with at least 1% of the tokens):</p>",
        _table(["layer", "head", "class", "enrichment", "mass share", "token share"], rows),
        _img(out, att.get("figure"), "attention enrichment heatmaps"),
    ])


def _likelihood_block(out: Path, lk: dict[str, Any]) -> str:
    rows = [[k, v["tokens"], v["mean_loglik"]] for k, v in lk.get("by_class", {}).items()]
    return "".join([
        "<h3>Likelihood track</h3>",
        f"<p>{html.escape(lk['record'])}:{lk['start']:,}-{lk['end']:,} ({lk['end'] - lk['start'] + 1:,} bp), "
        f"{html.escape(lk['kind'])} log-likelihood of {lk['positions']:,} positions in {lk['seconds']:.1f} s "
        f"({lk['positions_per_s']:,.0f} positions/s); mean {lk['mean_loglik']:.3f} nats per token, "
        f"uniform guessing {lk['uniform_loglik']:.3f}. {html.escape(lk['rule'])}</p>",
        _table(["class (token's middle base)", "tokens", "mean log-likelihood"], rows) if rows else "",
        _img(out, lk.get("figure"), "likelihood track"),
    ])


def section_html(result: dict[str, Any], out: Path) -> str:
    """The analysis as one self-contained HTML block (images inlined), for report.html or any other report."""
    parts = ["<section class='biofm-analyze'>", f"<h2>Layer analysis of {html.escape(str(result['model']))}</h2>"]
    for lm in result["layer_maps"]:
        parts.append(_layer_block(out, lm))
    if result.get("attention"):
        parts.append(_attention_block(out, result["attention"]))
    if result.get("likelihood"):
        parts.append(_likelihood_block(out, result["likelihood"]))
    parts.append("</section>")
    return "".join(parts)


def write_report(out: Path, result: dict[str, Any]) -> Path:
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>biofm analyze</title><style>{CSS}</style>"
            f"</head><body>{section_html(result, out)}</body></html>\n")
    dest = out / "report.html"
    write_text(dest, page)
    return dest
