"""The modality contract: shared layers import no modality package, and every modality is a plug-in."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from biofm.modality import Modality, modalities

SRC = Path(__file__).resolve().parents[1] / "src" / "biofm"
SHARED = ["train", "eval", "health", "report", "models", "use", "io", "data", "datasets",
          "cli.py", "pretraining.py", "demo.py", "sweep.py", "config.py", "errors.py", "modality.py",
          "analyze", "api.py", "progress.py", "__init__.py"]


def _modality_packages() -> set[str]:
    return {f"biofm.{name}" for name in modalities()}


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def test_shared_layers_import_no_modality_package() -> None:
    packages = _modality_packages()
    bad = []
    for entry in SHARED:
        root = SRC / entry
        assert root.exists(), f"{entry} is listed as shared but is not in src/biofm"  # a rename must update SHARED
        for path in [root] if root.is_file() else sorted(root.rglob("*.py")):
            for line, module in _imports(path):
                if any(module == p or module.startswith(p + ".") for p in packages):
                    bad.append(f"{path.relative_to(SRC)}:{line} imports {module}")
    assert bad == []


def test_the_check_can_fail(tmp_path: Path) -> None:
    """The scan above sees both import forms (a test that cannot fail proves nothing)."""
    f = tmp_path / "m.py"
    f.write_text("import biofm.dna.tasks\nfrom biofm.cells import x\ndef f():\n    from biofm.text.tasks import y\n")
    assert [m for _, m in _imports(f)] == ["biofm.dna.tasks", "biofm.cells", "biofm.text.tasks"]


@pytest.mark.parametrize("name", ["dna", "text", "cells"])
def test_each_modality_is_one_registered_object_whose_references_resolve(name: str) -> None:
    m = modalities()[name]
    assert isinstance(m, Modality) and m.name == name
    from biofm.pretraining import PretrainBase

    assert issubclass(m.resolve(m.pretrain_schema), PretrainBase)
    assert callable(m.resolve(m.prepare))
    hooks = m.hooks()
    for hook in ("embeddings", "model_methods", "baselines", "tables", "shipped_tasks", "recognise_task",
                 "load_task"):
        assert callable(getattr(hooks, hook)), f"{name}: evaluation hook {hook} missing"
    demo = m.resolve(m.demo)
    assert callable(demo.pretrain_settings) and callable(demo.eval_settings)
    for verb in m.verbs:
        assert callable(m.verb(verb)), f"{name}: verb {verb}"
    from biofm.eval.evaluate import EvaluateConfig

    assert m.baseline_key in EvaluateConfig.model_fields


def test_a_text_yaml_without_text_column_is_read_by_the_models_modality(tmp_path: Path) -> None:
    """A task that does not say its modality is read as the model's (it used to be read as DNA)."""
    from biofm.eval.evaluate import load_any_task

    rows = "".join(f"an abstract about gene {i} and its protein\t{'yes' if i % 2 else 'no'}\n" for i in range(20))
    (tmp_path / "t.tsv").write_text("text\tlabel\n" + rows)
    (tmp_path / "t.yaml").write_text("name: t\ntype: classification\ntable: t.tsv\n")
    modality, task = load_any_task(str(tmp_path / "t.yaml"), model_modality="text")
    assert modality == "text" and task.inputs[0].startswith("an abstract")
