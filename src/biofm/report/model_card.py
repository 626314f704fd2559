"""RUN/model/README.md: a Hugging Face model card written from what the run folder records.

The front matter is what the Hub and its search read (library_name, license, tags, pipeline_tag,
datasets, base_model when the run continued another model); the body says what the model was trained
on, its health verdict against the context-free baseline, its evaluation against the baselines and its
random-weights twin when the run folder holds one (`RUN/eval/results.json`), and the exact lines that
load it with stock transformers. A modality adds what those lines need (e.g. how cell values enter as
token types) through its `card_usage` verb. Rewritten by every `finish_run` (and `biofm report RUN`),
so it never disagrees with the run's summary.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from biofm.io.atomic import write_text

PIPELINE = {"masked": "fill-mask", "causal": "text-generation"}


def _datasets(config: dict[str, Any]) -> list[str]:
    """Registered datasets (`dataset:NAME`) named anywhere in the run's data settings."""
    found: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, str) and v.startswith("dataset:"):
            found.append(v.split(":")[1])
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(config.get("data", {}))
    return sorted(set(found))


def _evaluation_lines(results: dict[str, Any]) -> list[str]:
    lines = ["## Evaluation", "", f"Overall: the model {results.get('overall', '')} tasks against the best "
             "baselines (paired over the shared folds; NT's ±2 s.d. rule beside it).", ""]
    for t in results.get("tasks", []):
        metric = t["headline_metric"]
        lines += [f"### {t['task']} ({t.get('protocol', 'k-fold CV')}, {metric})", "",
                  f"| method | kind | {metric} |", "| --- | --- | --- |"]
        for m in sorted(t["methods"], key=lambda m: -(m["summary"][metric]["mean"]
                                                      if m["summary"][metric]["mean"] == m["summary"][metric]["mean"]
                                                      else -1.0)):
            s = m["summary"][metric]
            lines.append(f"| {m['name']} | {m['kind']} | {s['mean']:.3f} ± {s['std']:.3f} |")
        lines.append("")
        for key in ("verdict", "control_sentence"):
            sentence = (t.get(key) or {}).get("sentence") if key == "verdict" else t.get(key)
            if sentence:
                lines += [sentence, ""]
    return lines


def model_card(run_dir: Path, summary: dict[str, Any], diagnosis: dict[str, Any]) -> str:
    from biofm.modality import get as get_modality

    model_dir = run_dir / "model"
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").exists() else {}
    model_config = json.loads((model_dir / "config.json").read_text())
    modality = config.get("modality", "dna")
    m = get_modality(modality)
    causal = model_config.get("model_type") in ("gpt2", "llama")
    pipeline = m.pipeline_tag or PIPELINE["causal" if causal else "masked"]
    front: dict[str, Any] = {
        "library_name": "transformers",
        # the weights derive from their training data: see each dataset's licence (`biofm data show NAME`)
        "license": config.get("license") or "other",
        "tags": ["biofm", modality, "causal-lm" if causal else "masked-lm", model_config.get("model_type", "")],
        "pipeline_tag": pipeline,
    }
    datasets = _datasets(config)
    if datasets:
        front["datasets"] = datasets
    base = (config.get("model") or {}).get("init_from")
    if base:
        front["base_model"] = str(base)
    name = config.get("name") or run_dir.name
    auto = "AutoModelForCausalLM" if causal else "AutoModelForMaskedLM"
    lines = ["---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", "", f"# {name}", "",
             f"A {modality} foundation model pretrained with biofm "
             f"({summary.get('params', 0):,} parameters, {summary.get('steps', '?')} steps, "
             f"{summary.get('tokens_seen', 0):,} training tokens, preset `{summary.get('preset', '?')}`).", ""]
    if datasets:
        lines += ["Training data (registered datasets; origin, licence and citation with `biofm data show NAME`): "
                  + ", ".join(f"`{d}`" for d in datasets) + ".", ""]
    lines += ["## Health", "", f"Verdict: **{diagnosis.get('verdict', 'unknown')}**.", ""]
    lines += [f"- {fact}" for fact in diagnosis.get("facts", [])] + [""]
    results_path = run_dir / "eval" / "results.json"
    if results_path.exists():
        lines += _evaluation_lines(json.loads(results_path.read_text()))
    lines += ["## Use", "", "Stock transformers, no remote code:", "", "```python",
              f"from transformers import AutoTokenizer, {auto}", "",
              f'model = {auto}.from_pretrained("{model_dir.as_posix()}")',
              f'tokenizer = AutoTokenizer.from_pretrained("{model_dir.as_posix()}")', "```", ""]
    if "card_usage" in m.verbs:
        lines += [*m.verb("card_usage")(model_dir), ""]
    lines += ["With biofm: `biofm embed --model RUN --input FILE --out OUT`, `biofm evaluate --model RUN --task "
              "TASK`, or `biofm.embed(...)` / `biofm.evaluate(...)` from Python.", ""]
    return "\n".join(lines)


def write_model_card(run_dir: str | Path, summary: dict[str, Any], diagnosis: dict[str, Any]) -> Path | None:
    """Write RUN/model/README.md when the run has a final model; returns its path."""
    run_dir = Path(run_dir)
    if not (run_dir / "model" / "config.json").exists():
        return None
    dest = run_dir / "model" / "README.md"
    write_text(dest, model_card(run_dir, summary, diagnosis))
    return dest
