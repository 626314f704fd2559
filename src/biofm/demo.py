"""`biofm demo`: the whole lifecycle on shipped data, sized for a 2-core laptop CPU.

data → tokenizer → pretraining → health verdict → evaluation against baselines → report, for one
modality. Each modality's settings live in the module its plug-in names (`Modality.demo`): what to
pretrain on, and which shipped tasks to evaluate on; the sequence of stages is shared.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from biofm import config as cfgmod
from biofm.eval.evaluate import EvaluateConfig
from biofm.eval.report import cell_text
from biofm.modality import get as get_modality
from biofm.pretraining import PretrainBase, build_config_for, finish_run, run


def _settings(modality: str) -> Any:
    m = get_modality(modality)
    return m.resolve(m.demo)


def demo_config(out: Path, overrides: list[str] | None = None, modality: str = "dna") -> PretrainBase:
    data = cfgmod.apply_overrides(_settings(modality).pretrain_settings(Path(out)), overrides or [])
    return build_config_for(data, f"{modality} demo config")


def demo_eval_config(run_dir: Path, overrides: list[str] | None = None, modality: str = "dna") -> EvaluateConfig:
    data = cfgmod.apply_overrides(_settings(modality).eval_settings(Path(run_dir)), overrides or [])
    return cfgmod.build(EvaluateConfig, data, f"{modality} demo evaluation config")


def run_demo(out: Path, overrides: list[str] | None = None, eval_overrides: list[str] | None = None,
             evaluate: bool = True, modality: str = "dna") -> Path:
    from biofm.eval.evaluate import run_evaluation
    from biofm.eval.report import verdict_table_html

    out = Path(out)
    settings = _settings(modality)
    run_dir = run(demo_config(out, overrides, modality), overwrite=True)
    sections: list[tuple[str, str]] = []
    if hasattr(settings, "after_pretraining"):  # e.g. generated text samples
        sections += settings.after_pretraining(run_dir)
    if evaluate:
        eval_dir = run_evaluation(demo_eval_config(run_dir, eval_overrides, modality))
        results = json.loads((eval_dir / "results.json").read_text())
        sections.append(("Evaluation against baselines", verdict_table_html(results, eval_dir)))
        print_verdicts(results)
    if sections:
        finish_run(run_dir, sections=sections)
    return run_dir


def print_verdicts(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from biofm.eval.explain import console_line
    from biofm.eval.report import duplicates_sentence

    console = Console()
    for t in results["tasks"]:
        metric = t["headline_metric"]
        extra = [k for k in ("macro_f1", "accuracy") if k != metric and k in t["methods"][0]["summary"]]
        over = f"{t['seeds']} seeds" if t.get("seeds") else f"{t['folds']} folds"
        table = Table(title=f"{t['task']} ({t.get('protocol') or 'k-fold CV'}): mean ± s.d. over {over}")
        for col in ("method", "kind", metric, *extra):
            table.add_column(col)
        for m in sorted(t["methods"], key=lambda m: -(m["summary"][metric]["mean"] or -1)):
            table.add_row(m["name"], m["kind"], *(
                f"{m['summary'][k]['mean']:.3f} ± {m['summary'][k]['std']:.3f}" for k in (metric, *extra)))
        console.print(table)
        for extra_table in t.get("tables") or []:
            rows = extra_table["rows"]
            if rows:
                tab = Table(title=f"{t['task']}: {extra_table['title']}")
                for col in rows[0]:
                    tab.add_column(col)
                for r in rows:
                    tab.add_row(*(cell_text(v) for v in r.values()))
                console.print(tab)
        if duplicates_sentence(t):
            console.print(duplicates_sentence(t))
        for w in (w for m in t["methods"] for w in m.get("warnings", [])):
            console.print(f"warning: {w}")
        if t.get("verdict"):
            console.print(t["verdict"]["sentence"])
        if t.get("control_sentence"):
            console.print(t["control_sentence"])
        line = console_line(t)  # one line; the rest of the explanations are in results.json and the report
        if line:
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    console.print(f"overall: the model {results['overall']} tasks")
