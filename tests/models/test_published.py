"""Published checkpoints loaded as published: tiny random-weight models laid out as each repository lays
its files out (config.json with the published architectures and keys, the published kind of vocabulary
files, safetensors weights with the published tensor names), the Hub cache, and the one-line refusals."""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import (
    BertConfig,
    BertForMaskedLM,
    EsmConfig,
    EsmForMaskedLM,
    GPT2Config,
    GPT2LMHeadModel,
    RobertaConfig,
    RobertaForMaskedLM,
)

from biofm import api
from biofm.cli import main
from biofm.dna.published import DnabertTokenizer, VariantKmers, variant_tokenizer
from biofm.dna.tokenizer import KmerTokenizer
from biofm.dna.variants import NOTE_UNKNOWN, Variant, prepare, score_variants
from biofm.errors import BiofmError
from biofm.models.load import load_for_embedding, load_masked_lm, model_modality, resolve_model_dir
from biofm.models.presets import build_config, build_model
from biofm.models.published import context_length, remote_code_refusal

HIDDEN, LAYERS, HEADS = 32, 2, 4
WORDS = ["the", "patient", "was", "treated", "with", "aspirin", "for", "pain", "and", "fever", "after", "surgery",
         "in", "hospital", "gene", "protein", "expression", "cancer", "cell", "tumour", "mutation"]


# ---------------------------------------------------------------------------------------- layouts


def _save(model: torch.nn.Module, folder: Path, cfg: dict, strip: str = "", extra: dict | None = None) -> Path:
    """Weights as the repository publishes them: model.safetensors (tied copies dropped, as save_pretrained
    does; `strip` removes a prefix, as GPT-2's original tensors have none), config.json as published."""
    folder.mkdir(parents=True, exist_ok=True)
    seen: set[int] = set()
    state = {}
    for name, tensor in model.state_dict().items():
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        state[name.removeprefix(strip)] = tensor.contiguous().clone()
    state.update(extra or {})
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(cfg, indent=2))
    return folder


def nt_v1(folder: Path, k: int = 6, seed: int = 1) -> Path:
    """InstaDeepAI/nucleotide-transformer-*: EsmForMaskedLM; vocab.txt = 4 specials, the 4**6 6-mers (ATCG
    order), A T C G N, then <eos> <bos> beyond the model's 4105 embeddings; tokenizer_config.json with
    eos_token null; a legacy esm.embeddings.position_ids tensor in the weights."""
    vocab = ["<unk>", "<pad>", "<mask>", "<cls>", *("".join(p) for p in itertools.product("ATCG", repeat=k)),
             *"ATCGN", "<eos>", "<bos>"]
    cfg = {"architectures": ["EsmForMaskedLM"], "attention_probs_dropout_prob": 0.0, "emb_layer_norm_before": False,
           "esmfold_config": None, "hidden_dropout_prob": 0.0, "hidden_size": HIDDEN, "initializer_range": 0.02,
           "intermediate_size": 2 * HIDDEN, "is_folding_model": False, "layer_norm_eps": 1e-12, "mask_token_id": 2,
           "max_position_embeddings": 1002, "model_type": "esm", "num_attention_heads": HEADS,
           "num_hidden_layers": LAYERS, "pad_token_id": 1, "position_embedding_type": "absolute",
           "tie_word_embeddings": False, "token_dropout": True, "torch_dtype": "float32",
           "transformers_version": "4.29.0.dev0", "use_cache": False, "vocab_list": None, "vocab_size": len(vocab) - 2}
    torch.manual_seed(seed)
    model = EsmForMaskedLM(EsmConfig(**cfg))
    _save(model, folder, cfg, extra={"esm.embeddings.position_ids": torch.arange(1002)[None]})
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"clean_up_tokenization_spaces": True, "eos_token": None, "model_max_length": 1000,
         "tokenizer_class": "EsmTokenizer"}))
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"cls_token": "<cls>", "mask_token": "<mask>", "pad_token": "<pad>", "unk_token": "<unk>"}))
    return folder


def dnabert(folder: Path, k: int = 3, seed: int = 0) -> Path:
    """zhihan1996/DNA_bert_K: BertForMaskedLM; vocab.txt = [PAD] [UNK] [CLS] [SEP] [MASK] + the 4**k k-mers."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *("".join(p) for p in itertools.product("ATCG", repeat=k))]
    cfg = {"architectures": ["BertForMaskedLM"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
           "hidden_dropout_prob": 0.1, "hidden_size": HIDDEN, "initializer_range": 0.02,
           "intermediate_size": 2 * HIDDEN, "layer_norm_eps": 1e-12, "max_position_embeddings": 512,
           "model_type": "bert", "num_attention_heads": HEADS, "num_hidden_layers": LAYERS, "pad_token_id": 0,
           "type_vocab_size": 2, "vocab_size": len(vocab)}
    torch.manual_seed(seed)
    _save(BertForMaskedLM(BertConfig(**cfg)), folder, cfg)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False, "max_len": 512}))
    (folder / "special_tokens_map.json").write_text(json.dumps({"unk_token": "[UNK]", "sep_token": "[SEP]",
                                                                "pad_token": "[PAD]", "cls_token": "[CLS]",
                                                                "mask_token": "[MASK]"}))
    return folder


def bert_text(folder: Path) -> Path:
    """google-bert/bert-base-uncased: BertForMaskedLM with a WordPiece vocab.txt."""
    vocab = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(WORDS)), "##s", ".", ","]
    cfg = {"architectures": ["BertForMaskedLM"], "hidden_size": HIDDEN, "intermediate_size": 2 * HIDDEN,
           "max_position_embeddings": 512, "model_type": "bert", "num_attention_heads": HEADS,
           "num_hidden_layers": LAYERS, "pad_token_id": 0, "type_vocab_size": 2, "vocab_size": len(vocab)}
    torch.manual_seed(0)
    _save(BertForMaskedLM(BertConfig(**cfg)), folder, cfg)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 512}))
    return folder


def _bpe_files(folder: Path, specials: list[str]) -> int:
    """vocab.json + merges.txt of a small byte-level BPE (as GPT-2 and RoBERTa publish them); its size."""
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([" ".join(WORDS)] * 20, vocab_size=300, min_frequency=1, special_tokens=specials,
                            show_progress=False)
    folder.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(folder))
    return bpe.get_vocab_size()


def gpt2(folder: Path) -> Path:
    """openai-community/gpt2: GPT2LMHeadModel, vocab.json + merges.txt, <|endoftext|> only (no padding token),
    tensors named without the `transformer.` prefix, as the original checkpoint."""
    n = _bpe_files(folder, ["<|endoftext|>"])
    eos = json.loads((folder / "vocab.json").read_text())["<|endoftext|>"]
    cfg = {"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "bos_token_id": eos,
           "eos_token_id": eos, "model_type": "gpt2", "n_ctx": 128, "n_embd": HIDDEN, "n_head": HEADS,
           "n_layer": LAYERS, "n_positions": 128, "vocab_size": n}
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(**cfg))
    _save(model.transformer, folder, cfg)
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 128}))
    return folder


def roberta(folder: Path) -> Path:
    """FacebookAI/roberta-base: RobertaForMaskedLM, vocab.json + merges.txt, positions offset by pad + 1."""
    n = _bpe_files(folder, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    cfg = {"architectures": ["RobertaForMaskedLM"], "bos_token_id": 0, "eos_token_id": 2, "hidden_size": HIDDEN,
           "intermediate_size": 2 * HIDDEN, "max_position_embeddings": 130, "model_type": "roberta",
           "num_attention_heads": HEADS, "num_hidden_layers": LAYERS, "pad_token_id": 1, "type_vocab_size": 1,
           "vocab_size": n}
    torch.manual_seed(0)
    _save(RobertaForMaskedLM(RobertaConfig(**cfg)), folder, cfg)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("published")
    return {"nt": nt_v1(root / "nt"), "dnabert": dnabert(root / "dnabert"), "bert": bert_text(root / "bert"),
            "gpt2": gpt2(root / "gpt2"), "roberta": roberta(root / "roberta")}


def _cli_error(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == BiofmError.exit_code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err  # one line, no traceback
    return err


# ---------------------------------------------------------------------------------------- tokenisers


def test_nt_v1_tokenises_non_overlapping_6mers_with_single_nucleotide_fallback(models):
    model, tok = load_for_embedding(models["nt"])
    assert model_modality(models["nt"]) == "dna" and type(tok).__name__ == "EsmTokenizer"
    seq = "ACGTACGGATCC" + "ACGNT" + "TTTTTTA"
    tokens = tok.convert_ids_to_tokens(tok(seq, add_special_tokens=False)["input_ids"])
    assert tokens == ["ACGTAC", "GGATCC", "A", "C", "G", "N", "TTTTTT", "T", "A"]
    # NT's rule is biofm's KmerTokenizer rule: the same token strings for any sequence
    kmer = KmerTokenizer(6)
    rng = random.Random(1)
    for _ in range(20):
        s = "".join(rng.choice("ACGTN" if rng.random() < 0.3 else "ACGT") for _ in range(rng.randint(1, 40)))
        assert tok.convert_ids_to_tokens(tok(s, add_special_tokens=False)["input_ids"]) == \
            kmer.convert_ids_to_tokens(kmer.encode(s))
    # <cls> only (eos_token is null in NT's tokenizer_config.json), ids inside the model's 4105 embeddings
    ids = tok(seq)["input_ids"]
    assert ids[0] == tok.cls_token_id == 3 and max(ids) < model.config.vocab_size


def test_dnabert_writes_a_sequence_as_its_overlapping_kmers(models):
    _, tok = load_for_embedding(models["dnabert"])
    assert isinstance(tok, DnabertTokenizer) and model_modality(models["dnabert"]) == "dna"
    enc = tok("acgTNAC", return_offsets_mapping=True)
    assert tok.convert_ids_to_tokens(enc["input_ids"]) == ["[CLS]", "ACG", "CGT", "[UNK]", "[UNK]", "[UNK]", "[SEP]"]
    assert enc["offset_mapping"] == [(0, 0), (0, 3), (1, 4), (2, 5), (3, 6), (4, 7), (0, 0)]  # bases, not characters
    batch = tok(["ACGTA", "TTT"], add_special_tokens=False)["input_ids"]
    assert [len(b) for b in batch] == [3, 1]
    with pytest.raises(BiofmError, match="at least 3"):
        tok("AC")


@pytest.mark.parametrize("name", ["bert", "roberta", "gpt2"])
def test_text_checkpoints_are_text_models_with_their_published_tokenizer(models, name):
    model, tok = load_for_embedding(models[name])
    assert model_modality(models[name]) == "text"
    ids = tok("the patient was treated with aspirin", add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids and len(ids) >= 3
    assert tok.pad_token_id is not None  # GPT-2 pads with <|endoftext|> (it publishes no padding token)
    if name == "gpt2":
        assert tok.pad_token == "<|endoftext|>" and model.config.model_type == "gpt2"


def test_context_length_counts_the_positions_esm_and_roberta_reserve(models):
    assert context_length(EsmConfig(**json.loads((models["nt"] / "config.json").read_text()))) == 1000
    assert context_length(RobertaConfig(max_position_embeddings=130, pad_token_id=1)) == 128
    assert context_length(BertConfig(max_position_embeddings=512)) == 512
    assert context_length(GPT2Config(n_positions=128)) == 128


# ---------------------------------------------------------------------------------------- uses


# GPT-2 publishes no padding token, so biofm pads with <|endoftext|>, which is also the start token of every
# input: the attention mask must come from the lengths (eval/batching.pad_batches), not from `ids != pad`
@pytest.mark.parametrize("name", ["nt", "dnabert", "bert", "roberta", "gpt2"])
def test_embeddings_are_the_published_weights_forward_pass(models, name):
    """biofm.embed equals the published model's own forward pass on the published tokens (so the weights
    were loaded, not re-initialised), for every layout."""
    texts = ["ACGTACGGATCCAT", "TTGACCA"] if name in ("nt", "dnabert") else ["the patient was treated",
                                                                             "cancer cell mutation"]
    got = api.embed(texts, models[name], pooling="mean")
    assert got.shape == (2, HIDDEN) and np.isfinite(got).all()
    model, tok = load_for_embedding(models[name])
    start = tok.eos_token_id if name == "gpt2" else tok.cls_token_id
    for text, row in zip(texts, got, strict=True):
        ids = torch.tensor([[start, *tok(text, add_special_tokens=False)["input_ids"]]])
        with torch.no_grad():
            out = model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0].mean(0)
        np.testing.assert_allclose(row, out.numpy(), rtol=1e-4, atol=1e-5)


def test_fill_mask_on_nt_dnabert_and_bert(models, capsys):
    main_args = ["fill-mask", "--top-k", "3", "--model"]
    for name, seq in (("nt", "ACGTACGGATCC<mask>TTTTTT"), ("dnabert", "ACGTAC[MASK]GGATTA"),
                      ("dnabert", "ACGTAC<mask>GGATTA"), ("bert", "the patient was [MASK] with aspirin")):
        with pytest.raises(SystemExit) as exc:
            main([*main_args, str(models[name]), "--sequence", seq])
        assert exc.value.code in (0, None)
        line = capsys.readouterr().out.strip().splitlines()[0]
        assert line.startswith("<mask> #1:") and len(line.split()) == 2 + 2 * 3
        if name in ("nt", "dnabert"):  # every prediction is a DNA token of the model's vocabulary
            assert all(set(t) <= set("ACGTN") for t in line.split()[2::2])


def test_hub_id_resolves_from_the_local_cache_and_nothing_else(models, tmp_path, monkeypatch, capsys):
    cache = tmp_path / "hub"
    repo = cache / "models--InstaDeepAI--nucleotide-transformer-tiny"
    snap = repo / "snapshots" / "0123abcd"
    (repo / "blobs").mkdir(parents=True)
    snap.mkdir(parents=True)
    for f in models["nt"].iterdir():  # the cache's layout: snapshot files are links to content blobs
        blob = repo / "blobs" / f"blob-{f.name}"
        blob.write_bytes(f.read_bytes())
        (snap / f.name).symlink_to(Path("../..") / "blobs" / blob.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert resolve_model_dir("InstaDeepAI/nucleotide-transformer-tiny") == snap
    assert resolve_model_dir("InstaDeepAI/nucleotide-transformer-tiny@0123abcd") == snap
    emb = api.embed(["ACGTACGGATCC"], "InstaDeepAI/nucleotide-transformer-tiny")
    np.testing.assert_allclose(emb, api.embed(["ACGTACGGATCC"], models["nt"]), rtol=1e-6)
    err = _cli_error(["embed", "--model", "InstaDeepAI/not-downloaded", "--input", "x.fa", "--out", "y.npy"], capsys)
    assert "not in the local Hugging Face cache" in err and "never downloads" in err
    err = _cli_error(["fill-mask", "--model", "InstaDeepAI/nucleotide-transformer-tiny@ffff",
                      "--sequence", "AC<mask>"], capsys)
    assert "revision ffff" in err


# ---------------------------------------------------------------------------------------- variants


@pytest.fixture(scope="module")
def genome(tmp_path_factory) -> tuple[Path, str]:
    rng = random.Random(3)
    seq = list("".join(rng.choice("ACGT") for _ in range(300)))
    seq[150:151] = "N"
    path = tmp_path_factory.mktemp("ref") / "ref.fa"
    text = "".join(seq)
    path.write_text(f">chr1\n{text}\n")
    return path, text


def test_dnabert_variant_masks_the_k_overlapping_kmers_holding_the_base(models, genome):
    tok = variant_tokenizer(resolve_model_dir(models["dnabert"]))
    assert isinstance(tok, VariantKmers) and tok.k == 3
    _, chrom = genome
    alt = "A" if chrom[99] != "A" else "C"
    p = prepare(tok, Variant(2, "chr1", 100, chrom[99], alt, {}), chrom, 41, 200)
    assert p.note == "" and len(p.masked) == 3  # the three 3-mers that hold base 100
    differ = np.flatnonzero(p.ref_ids != p.alt_ids)
    assert list(differ) == list(p.masked)
    # a k-mer holding the N next to the variant is [UNK]: no ratio, a note instead
    n_near = prepare(tok, Variant(3, "chr1", 152, chrom[151], "A" if chrom[151] != "A" else "C", {}), chrom, 41, 200)
    assert n_near.masked is None and n_near.note == NOTE_UNKNOWN


@pytest.mark.parametrize("name", ["nt", "dnabert"])
def test_score_variants_with_published_vocabularies(models, genome, tmp_path, name):
    ref, chrom = genome
    rows = [(f"v{i}", "chr1", pos, chrom[pos - 1], "G" if chrom[pos - 1] != "G" else "T")
            for i, pos in enumerate((40, 100, 220))]
    variants = tmp_path / "v.tsv"
    variants.write_text("id\tchrom\tpos\tref\talt\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows))
    out = score_variants(models[name], ref, variants, tmp_path / "s.tsv", window_bp=60)
    assert len(out) == 3 and all(math.isfinite(r["llr"]) and r["note"] == "" for r in out)
    # the ratio is the published head's: log p(alt) - log p(ref) over the masked tokens, from a direct pass
    model, _ = load_masked_lm(models[name])
    tok = variant_tokenizer(resolve_model_dir(models[name]))
    pos = 100
    p = prepare(tok, Variant(1, "chr1", pos, chrom[pos - 1], rows[1][4], {}), chrom, 60, 1000)
    ids = torch.tensor(p.ref_ids, dtype=torch.long)[None].clone()
    ids[0, p.masked] = tok.mask_id
    with torch.no_grad():
        logp = model(input_ids=ids).logits[0, :, tok.kmer_offset:len(tok)].log_softmax(-1)
    rows_ = torch.as_tensor(p.masked)
    want = float((logp[rows_, torch.as_tensor(p.alt_ids[p.masked]) - tok.kmer_offset]
                  - logp[rows_, torch.as_tensor(p.ref_ids[p.masked]) - tok.kmer_offset]).sum())
    assert out[1]["llr"] == pytest.approx(want, rel=1e-4, abs=1e-5)


# ---------------------------------------------------------------------------------------- refusals


REMOTE = {
    "Nucleotide Transformer v2": {"architectures": ["EsmForMaskedLM"], "model_type": "esm", "add_bias_fnn": False,
                                  "auto_map": {"AutoConfig": "esm_config.EsmConfig",
                                               "AutoModelForMaskedLM": "modeling_esm.EsmForMaskedLM"}},
    "DNABERT-2": {"architectures": ["BertForMaskedLM"], "model_type": "bert", "alibi_starting_size": 512,
                  "auto_map": {"AutoConfig": "configuration_bert.BertConfig",
                               "AutoModelForMaskedLM": "bert_layers.BertForMaskedLM"}},
    "HyenaDNA": {"architectures": ["HyenaDNAForCausalLM"], "model_type": "hyenadna",
                 "auto_map": {"AutoConfig": "configuration_hyena.HyenaConfig",
                              "AutoModelForCausalLM": "modeling_hyena.HyenaDNAForCausalLM"}},
    "Caduceus": {"architectures": ["CaduceusForMaskedLM"], "model_type": "caduceus",
                 "auto_map": {"AutoConfig": "configuration_caduceus.CaduceusConfig",
                              "AutoModelForMaskedLM": "modeling_caduceus.CaduceusForMaskedLM"}},
}


@pytest.mark.parametrize("family", list(REMOTE))
def test_models_needing_remote_code_are_refused_in_one_line(tmp_path, capsys, family):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(REMOTE[family]))
    save_file({"w": torch.zeros(1)}, str(folder / "model.safetensors"))
    for verb in (["evaluate", "--task", "promoter"], ["embed", "--input", "x.fa", "--out", "e.npy"],
                 ["fill-mask", "--sequence", "AC<mask>"]):
        err = _cli_error([*verb, "--model", str(folder)], capsys)
        assert f"refused: {family} needs code from its model repository" in err and "trust_remote_code" in err


def test_a_plain_known_config_needs_no_remote_code():
    assert remote_code_refusal({"model_type": "esm", "architectures": ["EsmForMaskedLM"]}, True) is None
    assert "auto_map" in (remote_code_refusal({"model_type": "bert", "auto_map": {"AutoModel": "x.Y"}}, True) or "")


def test_weights_only_as_pickle_are_refused_with_the_conversion(models, tmp_path, capsys):
    folder = tmp_path / "dnabert-bin"
    folder.mkdir()
    for f in models["dnabert"].iterdir():
        if f.name != "model.safetensors":
            (folder / f.name).write_bytes(f.read_bytes())
    (folder / "pytorch_model.bin").write_bytes(b"not read")
    err = _cli_error(["embed", "--model", str(folder), "--input", "x.fa", "--out", "e.npy"], capsys)
    assert "pytorch_model.bin: refused" in err and "never unpickles" in err and "model.safetensors" in err


def test_missing_model_type_names_the_line_to_add(models, tmp_path, capsys):
    folder = tmp_path / "old-dnabert"
    folder.mkdir()
    for f in models["dnabert"].iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((folder / "config.json").read_text())
    del cfg["model_type"]  # DNABERT's GitHub configs, written by transformers 2.x, have none
    (folder / "config.json").write_text(json.dumps(cfg))
    err = _cli_error(["fill-mask", "--model", str(folder), "--sequence", "ACG<mask>"], capsys)
    assert '"model_type": "bert"' in err


def test_published_weights_missing_the_encoder_are_refused(models, tmp_path):
    from safetensors.torch import load_file

    folder = tmp_path / "renamed"
    folder.mkdir()
    for f in models["dnabert"].iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    weights = load_file(str(folder / "model.safetensors"))
    save_file({k.replace("bert.", "encoder_of_another_model."): v for k, v in weights.items()},
              str(folder / "model.safetensors"))
    with pytest.raises(BiofmError, match=r"missing encoder tensors .*would be random"):
        load_for_embedding(folder)


def test_modality_flag_overrides_inference_but_not_a_biofm_models_own(models, tmp_path, capsys):
    assert model_modality(models["nt"], "text") == "text"
    with pytest.raises(BiofmError, match="modality 'protein'"):
        model_modality(models["nt"], "protein")
    tok = KmerTokenizer(3, model_max_length=64)
    cfg = build_config("tiny", vocab_size=tok.vocab_size, pad_id=tok.pad_id, mask_id=tok.mask_id, cls_id=tok.cls_id,
                       eos_id=tok.eos_id, max_len=64)
    own = build_model(cfg, seed=0)
    own.config.biofm_modality = "dna"
    own.save_pretrained(tmp_path / "own")
    tok.save(tmp_path / "own")
    err = _cli_error(["fill-mask", "--model", str(tmp_path / "own"), "--sequence", "ACG<mask>", "--modality", "text"],
                     capsys)
    assert "a biofm dna model; --modality text contradicts it" in err


# ---------------------------------------------------------------------------------------- evaluate


def test_evaluate_an_nt_v1_checkpoint_against_the_baselines(models, tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(60):
        s = list(rng.choice(list("ACGT"), 36))
        if i % 2:
            s[12:18] = list("GGGGGG")
        rows.append(f"{''.join(s)},{i % 2}")
    (tmp_path / "motif.csv").write_text("sequence,label\n" + "\n".join(rows) + "\n")
    (tmp_path / "motif.yaml").write_text("name: motif\ntype: classification\ntable: motif.csv\n")
    table = api.evaluate(models["nt"], str(tmp_path / "motif.yaml"), out=tmp_path / "eval", folds=3,
                           probes__kinds=["logreg"], finetune__methods=["ia3"], finetune__epochs=1,
                           baselines__run=["kmer_logreg"], explain__enabled=False, cache_dir=str(tmp_path / "cache"))
    names = set(table["method"])
    assert {"probe-logreg-mean", "probe-logreg-cls", "finetune-ia3", "control-probe-logreg-mean",
            "control-finetune-ia3", "baseline-kmer_logreg"} <= names
    results = table.attrs["results"]
    assert results["tasks"][0]["modality"] == "dna" and results["tasks"][0]["verdict"]["sentence"]
    assert results["config"]["modality"] is None and results["model"] == str(models["nt"])
    by_name = {m["name"]: m for m in results["tasks"][0]["methods"]}
    model, twin = by_name["probe-logreg-mean"], by_name["control-probe-logreg-mean"]  # seed 1 vs the twin's 0
    assert [f["mcc"] for f in model["per_fold"]] != [f["mcc"] for f in twin["per_fold"]]
