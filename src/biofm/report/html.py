"""A self-contained HTML report of a run: curve with baselines, verdict, config, size and speed."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from biofm.io.atomic import write_text

CSS = """body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
.ok{color:#060}.bad{color:#a00}pre{background:#f6f6f6;padding:1em;overflow:auto}img{max-width:100%;height:auto}"""


def _table(rows: list[tuple[str, Any]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.4f}" if abs(v) < 1e4 else f"{v:,.0f}"
        if isinstance(v, int):
            return f"{v:,}"
        return html.escape(str(v))

    return "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{fmt(v)}</td></tr>" for k, v in rows) + "</table>"


def write_report(
    run_dir: str | Path,
    summary: dict[str, Any],
    diagnosis: dict[str, Any],
    config_text: str,
    sections: list[tuple[str, str]] | None = None,
) -> Path:
    """Write RUN/report.html; `sections` are extra (title, html) blocks added by later stages."""
    run_dir = Path(run_dir)
    png = run_dir / "loss.png"
    img = (f'<img alt="loss curve" src="data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}">'
           if png.exists() else "<p>(no loss plot)</p>")
    ok = diagnosis["verdict"] == "learning"
    facts = "".join(f"<li>{html.escape(f)}</li>" for f in diagnosis.get("facts", []))
    advice = "".join(f"<li>{html.escape(a)}</li>" for a in diagnosis.get("advice", []))
    keys = ["params", "steps", "tokens_seen", "final_eval_loss", "baseline_reference"]
    keys += [k for k in summary if k.startswith("baseline_") and k != "baseline_reference" and "bits_per" not in k]
    keys += ["eval_gain", "eval_gain_se", "tokens_per_s", "train_seconds", "global_batch_tokens",
             "accumulation_steps", "world_size", "device"]
    keys += [k for k in summary if "bits_per" in k]
    rows = [(k, summary[k]) for k in keys if k in summary]
    body = [
        f"<h1>biofm run: {html.escape(run_dir.name)}</h1>",
        f'<h2>Health: <span class="{"ok" if ok else "bad"}">{html.escape(diagnosis["verdict"])}</span></h2>',
        f"<ul>{facts}</ul>",
        f"<h3>Advice</h3><ul>{advice}</ul>" if advice else "",
        "<h2>Loss</h2>", img,
        "<p>The eval loss hides every target from the input (no 80/10/10), so copying the input cannot lower "
        "it. The baselines are what a model that ignores context scores on the same targets.</p>",
        "<h2>Summary</h2>", _table(rows),
    ]
    for title, block in sections or []:
        body += [f"<h2>{html.escape(title)}</h2>", block]
    body += ["<h2>Resolved config</h2>", f"<pre>{html.escape(config_text)}</pre>"]
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>biofm {html.escape(run_dir.name)}</title>" \
           f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n"
    dest = run_dir / "report.html"
    write_text(dest, page)
    return dest
