"""`biofm evaluate` end to end on a tiny saved model and a synthetic task."""

import json

import numpy as np
import pytest
import yaml

import biofm.eval.embeddings as embmod
from biofm.cli import main
from biofm.dna.tokenizer import KmerTokenizer
from biofm.models.presets import build_config, build_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evaluate")
    tok = KmerTokenizer(2)
    cfg = build_config("tiny", vocab_size=tok.vocab_size, pad_id=tok.pad_id, mask_id=tok.mask_id,
                       cls_id=tok.cls_id, eos_id=tok.eos_id, max_len=64)
    model = build_model(cfg, seed=0)
    model.save_pretrained(tmp / "model")
    tok.save(tmp / "model")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(120):
        s = list(rng.choice(list("ACGT"), 40))
        if i % 2:
            s[10:16] = list("GGGGGG")
        rows.append(f"{''.join(s)},{i % 2}")
    (tmp / "motif.csv").write_text("sequence,label\n" + "\n".join(rows) + "\n")
    (tmp / "motif.yaml").write_text(yaml.safe_dump({"name": "motif", "type": "classification", "table": "motif.csv"}))
    return tmp


def _evaluate(tmp, out, extra=()):
    args = ["evaluate", "--model", str(tmp / "model"), "--task", str(tmp / "motif.yaml"), "--out", str(out),
            "--folds", "3", "--set", "probes.kinds=[logreg]", "--set", "finetune.methods=[ia3]",
            "--set", "finetune.epochs=1", "--set", "baselines.run=[kmer_logreg,raw_token_logreg]",
            "--set", f"cache_dir={tmp / 'cache'}", *extra]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code in (0, None)
    return json.loads((out / "results.json").read_text())


def test_outputs_and_verdict(setup):
    res = _evaluate(setup, setup / "out")
    names = {m["name"] for m in res["methods"]}
    model_side = {"probe-logreg-mean", "probe-logreg-cls", "finetune-ia3"}
    assert names == model_side | {f"control-{n}" for n in model_side} | {"baseline-kmer_logreg",
                                                                          "baseline-raw_token_logreg"}
    for m in res["methods"]:
        assert m["kind"] in ("probe", "finetune", "baseline", "control") and len(m["per_fold"]) == 3
        assert {"mcc", "accuracy", "macro_f1", "auroc", "auprc"} <= set(m["summary"]) and m["seconds"] >= 0
    probe = next(m for m in res["methods"] if m["name"] == "probe-logreg-mean")
    assert len(probe["per_layer"]) == 3 and len(probe["layers_chosen"]) == 3  # embeddings + 2 layers
    kmer = next(m for m in res["methods"] if m["name"] == "baseline-kmer_logreg")
    assert kmer["summary"]["mcc"]["mean"] > 0.5  # the motif is a 6-mer: k-mer counts find it
    v = res["tasks"][0]["verdict"]
    assert v["outcome"] in ("beats", "matches", "loses") and v["baseline_method"] == "baseline-kmer_logreg"
    assert res["overall"].endswith("of 1")
    for f in ["results.csv", "probing.png", "report.html"]:
        assert (setup / "out" / f).exists()
    assert "baseline-kmer_logreg" in (setup / "out" / "results.csv").read_text()


def test_random_weights_control_of_an_unpretrained_model_shows_no_gain(setup):
    """The fixture's model IS a fresh initialisation with seed 0, so its control (same architecture and
    tokenizer, fresh weights from the same seed) must score exactly the same on every fold."""
    res = _evaluate(setup, setup / "out-control")
    task = res["tasks"][0]
    gains = {g["method"]: g for g in task["pretraining_gain"]}
    best = [m for m in gains if m.startswith("best: ")]
    assert set(gains) - set(best) == {"probe-logreg-mean", "probe-logreg-cls", "finetune-ia3"} and len(best) == 1
    model_best, control_best = best[0].removeprefix("best: ").split(" vs ")
    assert control_best == "control-" + model_best  # identical weights: the best control is the best's own twin
    for g in gains.values():
        assert g["gain"] == 0.0 and g["paired_gain_mean"] == 0.0 and g["outcome"] == "no gain"
    assert "pretraining no gain" in task["control_sentence"] and "only matches" in task["control_sentence"]
    assert task["verdict"]["model_method"].startswith(("probe", "finetune"))  # never a control method
    assert "random-weights control" in (setup / "out-control" / "report.html").read_text()
    off = _evaluate(setup, setup / "out-nocontrol", ["--set", "control=false"])
    assert not [m for m in off["methods"] if m["kind"] == "control"] and off["tasks"][0]["pretraining_gain"] is None


def test_control_differs_from_a_trained_model(setup, tmp_path):
    """A model whose weights differ from its seed's initialisation gets a control that differs too."""
    import torch
    from transformers import AutoModelForMaskedLM

    from biofm.eval.control import make_control_model

    trained = AutoModelForMaskedLM.from_pretrained(setup / "model")
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.01)
    trained.save_pretrained(tmp_path / "trained")
    KmerTokenizer(2).save(tmp_path / "trained")
    control = AutoModelForMaskedLM.from_pretrained(make_control_model(tmp_path / "trained", tmp_path / "c", 0))
    fresh = AutoModelForMaskedLM.from_pretrained(setup / "model")
    for (name, a), b, c in zip(control.state_dict().items(), fresh.state_dict().values(),
                               trained.state_dict().values(), strict=True):
        assert torch.equal(a, b), name  # the control is the seed's initialisation ...
        assert not torch.equal(a, c) or a.numel() == 0, name  # ... not the trained weights
    assert (tmp_path / "c" / "tokenizer.json").exists() or any((tmp_path / "c").glob("*.json"))


def test_embeddings_cached_across_runs(setup, monkeypatch):
    _evaluate(setup, setup / "out1")

    def boom(*a, **k):
        raise AssertionError("embeddings computed again")

    monkeypatch.setattr(embmod, "layer_embeddings_all", boom)
    _evaluate(setup, setup / "out2")


def test_no_task_is_an_error(setup, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--model", str(setup / "model"), "--out", str(setup / "x")])
    assert exc.value.code == 2 and "--task" in capsys.readouterr().err


def test_too_long_sequences_error_then_windows(setup, capsys):
    long_csv = setup / "long.csv"
    rows = [f"{'ACGT' * 40}{'G' * (i % 2)},{i % 2}" for i in range(40)]  # 160+ bp = 80+ 2-mers > 63 tokens
    long_csv.write_text("sequence,label\n" + "\n".join(rows) + "\n")
    task = setup / "long.yaml"
    task.write_text(yaml.safe_dump({"name": "long", "type": "classification", "table": "long.csv"}))
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--model", str(setup / "model"), "--task", str(task), "--out", str(setup / "l"),
              "--folds", "2", "--set", "baselines.run=[kmer_logreg]", "--set", f"cache_dir={setup / 'cache'}"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "long_sequences: windows" in err and "long.yaml" in err
    task.write_text(yaml.safe_dump({"name": "long", "type": "classification", "table": "long.csv",
                                    "long_sequences": "windows"}))
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--model", str(setup / "model"), "--task", str(task), "--out", str(setup / "l"),
              "--folds", "2", "--set", "probes.kinds=[logreg]", "--set", "probes.tune_trials=3",
              "--set", "finetune.methods=[]", "--set", "baselines.run=[kmer_logreg]", "--set", "control=false",
              "--set", f"cache_dir={setup / 'cache'}"])
    assert exc.value.code in (0, None)
    res = json.loads((setup / "l" / "results.json").read_text())
    assert {m["name"] for m in res["methods"]} == {"probe-logreg-mean", "probe-logreg-cls", "baseline-kmer_logreg"}


def test_control_reinitialises_a_modality_extra_weight_file(setup, tmp_path):
    """A modality's extra module (heads, a CNN) saved beside the model must not carry pretrained values
    into the random-weights control; other weight formats are not copied at all."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from biofm.eval.control import make_control_model

    model = tmp_path / "model"
    shutil.copytree(setup / "model", model)
    trained = {"cnn.0.weight": torch.full((4, 2, 3), 7.0), "cnn.0.bias": torch.full((4,), 7.0),
               "norm.weight": torch.full((4,), 7.0)}
    save_file(trained, str(model / "extra_heads.safetensors"))
    (model / "pytorch_model.bin").write_bytes(b"x" * 10)
    control = make_control_model(model, tmp_path / "control", seed=0)
    fresh = load_file(str(control / "extra_heads.safetensors"))
    assert set(fresh) == set(trained) and fresh["cnn.0.weight"].shape == (4, 2, 3)
    assert fresh["cnn.0.weight"].abs().max() <= 1 / 6 ** 0.5 and fresh["cnn.0.weight"].std() > 0
    assert torch.all(fresh["cnn.0.bias"] == 0) and torch.all(fresh["norm.weight"] == 1)
    assert not (control / "pytorch_model.bin").exists() and (control / "tokenizer.json").exists()
