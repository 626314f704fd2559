"""A broken model folder is one line naming the file and what is wrong, from the loaders and the CLI alike."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from biofm.cli import main
from biofm.dna.tokenizer import KmerTokenizer
from biofm.errors import BiofmError
from biofm.models.info import model_for_info
from biofm.models.load import (
    HINT,
    check_safetensors,
    load_for_embedding,
    load_masked_lm,
    load_pretrained,
    resolve_model_dir,
)
from biofm.models.presets import build_config, build_model
from biofm.use.fill_mask import fill_mask

K = 3
WEIGHTS = "model.safetensors"


def _save_model(path: Path, arch: str | None = None, modality: str = "dna", tok=None) -> Path:
    tok = tok or KmerTokenizer(K, model_max_length=64)
    cfg = build_config("tiny", vocab_size=tok.vocab_size, pad_id=tok.pad_id, mask_id=tok.mask_id,
                       cls_id=tok.cls_id, eos_id=tok.eos_id, max_len=64, arch=arch)
    model = build_model(cfg, seed=1)
    model.config.biofm_modality = modality
    model.save_pretrained(path)
    tok.save(path)
    return path


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """A run folder RUN/model holding a tiny complete DNA masked-LM checkpoint."""
    return _save_model(tmp_path_factory.mktemp("good") / "run" / "model")


@pytest.fixture
def model_dir(good, tmp_path) -> Path:
    dest = tmp_path / "run" / "model"
    shutil.copytree(good, dest)
    return dest


def _rewrite(path: Path, change) -> None:
    weights = load_file(str(path / WEIGHTS))
    change(weights)
    save_file(weights, str(path / WEIGHTS), metadata={"format": "pt"})


def _cut_half(p: Path) -> None:
    data = (p / WEIGHTS).read_bytes()
    (p / WEIGHTS).write_bytes(data[: len(data) // 2])


def _config_edit(p: Path, **changes) -> None:
    cfg = json.loads((p / "config.json").read_text())
    cfg.update(changes)
    (p / "config.json").write_text(json.dumps(cfg))


def _only_bin(p: Path) -> None:
    (p / WEIGHTS).unlink()
    torch.save({"x": torch.zeros(1)}, p / "pytorch_model.bin")


def _shape(w: dict) -> None:
    w["model.final_norm.weight"] = torch.zeros(5)


# fault -> (how to break the folder, the file the message names, what it must say)
FAULTS = {
    "empty_weights": (lambda p: (p / WEIGHTS).write_bytes(b""), WEIGHTS, "empty file (0 bytes)"),
    "half_weights": (_cut_half, WEIGHTS, "truncated ("),
    "garbage_header": (lambda p: (p / WEIGHTS).write_bytes(b"\xff" * 64 + b"not a tensor file" * 10), WEIGHTS,
                       "not a safetensors file or truncated"),
    "header_not_json": (lambda p: (p / WEIGHTS).write_bytes((12).to_bytes(8, "little") + b"{not json!!}"), WEIGHTS,
                        "corrupt header (not JSON"),
    "weights_missing": (lambda p: (p / WEIGHTS).unlink(), WEIGHTS,
                        "missing (the folder has no model.safetensors; biofm loads weights from safetensors only)"),
    "config_missing": (lambda p: (p / "config.json").unlink(), "config.json", "missing, so"),
    "config_not_json": (lambda p: (p / "config.json").write_text("{model_type: modernbert"), "config.json",
                        "not valid JSON ("),
    "config_unknown_type": (lambda p: _config_edit(p, model_type="nope"), "config.json",
                            "unknown model_type 'nope'"),
    "config_bad_value": (lambda p: _config_edit(p, hidden_size="big"), "config.json",
                         "invalid model config (Validation error for field 'hidden_size'"),
    "only_pytorch_bin": (_only_bin, "pytorch_model.bin", "refused; biofm loads weights from safetensors only"),
    "extra_tensor": (lambda p: _rewrite(p, lambda w: w.__setitem__("extra.weight", torch.zeros(3))), WEIGHTS,
                     "does not match config.json (modernbert): unexpected tensors extra.weight;"),
    "missing_tensor": (lambda p: _rewrite(p, lambda w: w.pop("head.norm.weight")), WEIGHTS,
                       "does not match config.json (modernbert): missing tensors head.norm.weight;"),
    "misshaped_tensor": (lambda p: _rewrite(p, _shape), WEIGHTS,
                         "tensor shapes differ (checkpoint vs config): model.final_norm.weight (5,) vs (128,)"),
}
# caught by the cheap checks, before transformers is asked to load anything
EARLY = {k for k in FAULTS if k not in {"extra_tensor", "missing_tensor", "misshaped_tensor", "config_bad_value"}}


def _expected(model_dir: Path, fault: str) -> tuple[str, str]:
    _, name, says = FAULTS[fault]
    return f"{model_dir / name}: ", says


def _check_message(msg: str, model_dir: Path, fault: str) -> None:
    prefix, says = _expected(model_dir, fault)
    assert "\n" not in msg
    assert msg.startswith(prefix), msg
    assert says in msg, msg
    assert HINT in msg, msg


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("loader", [load_masked_lm, load_for_embedding, load_pretrained])
def test_loaders_name_the_file_and_the_fault(model_dir, fault, loader):
    FAULTS[fault][0](model_dir)
    with pytest.raises(BiofmError) as exc:
        loader(model_dir.parent)  # the run folder: resolved to RUN/model, which the message names
    _check_message(str(exc.value), model_dir, fault)


@pytest.mark.parametrize("fault", sorted(EARLY))
def test_resolve_model_dir_checks_before_loading(model_dir, fault):
    FAULTS[fault][0](model_dir)
    with pytest.raises(BiofmError) as exc:
        resolve_model_dir(model_dir)
    _check_message(str(exc.value), model_dir, fault)


def _run_cli(args, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(args)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def _assert_cli_line(code, err, model_dir, fault) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), lines[0]
    _check_message(lines[0][len("error: "):], model_dir, fault)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_cli_info_fill_mask_embed_give_one_line(model_dir, tmp_path, capsys, fault):
    FAULTS[fault][0](model_dir)
    fasta = tmp_path / "q.fa"
    fasta.write_text(">a\nACGTACGTTT\n")
    commands = [
        ["info", str(model_dir)],
        ["fill-mask", "--model", str(model_dir.parent), "--sequence", "ACGT<mask>GTAC"],
        ["embed", "--model", str(model_dir), "--input", str(fasta), "--out", str(tmp_path / "e.npy")],
    ]
    for args in commands:
        code, _, err = _run_cli(args, capsys)
        _assert_cli_line(code, err, model_dir, fault)
    assert not (tmp_path / "e.npy").exists()


def test_good_folder_loads_and_cli_works(good, tmp_path, capsys):
    model, tok = load_masked_lm(good.parent)
    assert model.config.model_type == "modernbert" and tok.mask_token == "<mask>"
    assert load_pretrained(good).config.model_type == "modernbert"
    check_safetensors(good / WEIGHTS)
    code, out, err = _run_cli(["info", str(good)], capsys)
    assert code in (0, None) and "total parameters" in out and not err.strip()


@pytest.mark.parametrize("arch", ["bert", "esm", "gpt2", "llama"])
def test_tied_weights_are_not_missing(tmp_path, arch, capsys):
    """Architectures that tie the decoder to the input embedding save it once; that is not a missing tensor."""
    path = _save_model(tmp_path / "m", arch=arch)
    model = load_pretrained(path)
    assert model.config.model_type == arch
    code, out, err = _run_cli(["info", str(path)], capsys)  # causal models too
    assert code in (0, None) and "total parameters" in out, err


def test_sharded_checkpoint_cut_shard_and_missing_index(tmp_path):
    tok = KmerTokenizer(K, model_max_length=64)
    path = tmp_path / "model"
    cfg = build_config("tiny", vocab_size=tok.vocab_size, pad_id=tok.pad_id, mask_id=tok.mask_id,
                       cls_id=tok.cls_id, eos_id=tok.eos_id, max_len=64)
    build_model(cfg).save_pretrained(path, max_shard_size="500KB")
    tok.save(path)
    shards = sorted(path.glob("model-*.safetensors"))
    assert len(shards) > 1
    load_masked_lm(path)  # complete: loads
    data = shards[-1].read_bytes()
    shards[-1].write_bytes(data[: len(data) - 100])
    with pytest.raises(BiofmError, match=rf"^{shards[-1]}: truncated \("):
        load_masked_lm(path)
    (path / "model.safetensors.index.json").unlink()
    with pytest.raises(BiofmError, match=r"model\.safetensors\.index\.json: missing; the shards"):
        load_masked_lm(path)


def test_folder_or_name_not_found(tmp_path, capsys):
    with pytest.raises(BiofmError, match=r"nope-model: neither a model folder nor a preset \(presets: tiny,"):
        model_for_info(str(tmp_path / "nope-model"))
    code, _, err = _run_cli(["fill-mask", "--model", str(tmp_path / "absent"), "--sequence", "A<mask>"], capsys)
    assert code == 2 and err.strip() == f"error: {tmp_path / 'absent'}: model folder not found"
    (tmp_path / "file.safetensors").write_bytes(b"x")
    with pytest.raises(BiofmError, match="a file, not a model folder"):
        resolve_model_dir(tmp_path / "file.safetensors")


# ---------------------------------------------------------------------------------------- fill-mask text


def test_fill_mask_refuses_prose_for_a_dna_model(good, capsys):
    with pytest.raises(BiofmError) as exc:
        fill_mask(good, "hello <mask> world")
    assert str(exc.value) == (
        "--sequence: not a DNA sequence for this k-mer DNA model: 'e' 'l' 'o' are not nucleotides "
        "(allowed: A C G T U, IUPAC codes R Y S W K M B D H V N, any case, spaces, and <mask>)"
    )  # h, w, r, d are IUPAC ambiguity codes (H = not G, W = A/T, R = A/G, D = not C): nucleotides
    code, out, err = _run_cli(["fill-mask", "--model", str(good), "--sequence", "hello <mask> world"], capsys)
    assert code == 2 and not out.strip() and "Traceback" not in err
    assert err.strip().splitlines() == [f"error: {exc.value}"]


def test_fill_mask_names_one_bad_character_and_a_misspelt_mask(good):
    with pytest.raises(BiofmError, match=r": 'X' is not a nucleotide \(allowed"):
        fill_mask(good, "ACGTX<mask>ACGT")
    with pytest.raises(BiofmError, match=r"'<' '>' are not nucleotides .*; write masks exactly as <mask>$"):
        fill_mask(good, "ACGT<MASK>ACGT <mask>")


def test_fill_mask_accepts_dna_with_case_spaces_and_iupac(good, capsys):
    preds = fill_mask(good, "acgT ACGU\tRYN<mask>GGA TTA<mask>", top_k=3)
    assert len(preds) == 2 and all(len(p) == 3 for p in preds)
    assert all(0 <= prob <= 1 for p in preds for _, prob in p)
    # the sequence is read as FASTA records are: same predictions as its normalised form
    assert preds == fill_mask(good, "ACGTACGTNNN<mask>GGATTA<mask>", top_k=3)
    code, out, err = _run_cli(["fill-mask", "--model", str(good), "--sequence", "ACGT<mask>GTAC", "--top-k", "2"],
                              capsys)
    assert code in (0, None) and out.startswith("<mask> #1: ") and not err.strip()


def test_fill_mask_text_model_still_takes_prose(tmp_path):
    from biofm.text.tokenizer import train_bpe

    lines = ["the cell expresses a kinase", "and the receptor binds the ligand", "in every tissue of the body"]
    tok = train_bpe(lines * 5, vocab_size=300)
    path = _save_model(tmp_path / "text", arch="bert", modality="text", tok=tok)
    preds = fill_mask(path, "hello <mask> world", top_k=2)
    assert len(preds) == 1 and len(preds[0]) == 2
