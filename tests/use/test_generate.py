import pytest
import torch

from biofm.errors import BiofmError
from biofm.text.tokenizer import train_bpe
from biofm.use.generate import generate, load_causal_lm

CORPUS = [
    "Programmed cell death is the regulated death of cells within an organism.",
    "Naloxone reverses the antihypertensive effect of clonidine in hypertensive rats.",
    "Mitochondrial dynamics were delineated into four categories based on membrane potential.",
] * 5


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = train_bpe(CORPUS, vocab_size=300, min_frequency=2)
    run = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    # vocab padded beyond the tokenizer, as biofm's presets do: those rows must never be emitted
    config = GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=tok.vocab_size + 5, n_positions=64,
                        bos_token_id=tok.eos_id, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)
    GPT2LMHeadModel(config).save_pretrained(run / "model", safe_serialization=True)
    tok.save(run / "model")
    return run


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = train_bpe(CORPUS, vocab_size=300, min_frequency=2)
    path = tmp_path_factory.mktemp("llama") / "model"
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=tok.vocab_size + 3, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                         bos_token_id=tok.eos_id, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)
    LlamaForCausalLM(config).save_pretrained(path, safe_serialization=True)
    tok.save(path)
    return path


def test_same_seed_same_text_and_prompt_kept(run_dir):
    a = generate(run_dir / "model", "Cell death", max_new_tokens=20, seed=3)
    b = generate(run_dir, "Cell death", max_new_tokens=20, seed=3)  # a run folder works too
    assert a == b and len(a) == 1 and a[0].startswith("Cell death") and len(a[0]) > len("Cell death")
    others = {generate(run_dir, "Cell death", max_new_tokens=20, seed=s)[0] for s in range(4, 8)}
    assert len(others | {a[0]}) > 1


def test_sampling_leaves_the_global_rng_alone(run_dir):
    state = torch.random.get_rng_state()
    generate(run_dir, "", max_new_tokens=5, seed=0, num_return_sequences=3)
    assert torch.equal(state, torch.random.get_rng_state())


def test_empty_prompt_and_several_sequences(run_dir):
    texts = generate(run_dir, "", max_new_tokens=10, temperature=1.5, top_k=0, top_p=0.9, seed=1,
                     num_return_sequences=3)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)


@pytest.mark.parametrize("which", ["run_dir", "llama_dir"])
def test_greedy_matches_transformers_generate(which, request):
    path = request.getfixturevalue(which)
    model, tok = load_causal_lm(path)
    ours = generate(path, "The lace plant", max_new_tokens=15, temperature=0, model=model, tokenizer=tok)
    ids = [tok.eos_token_id, *tok("The lace plant", add_special_tokens=False)["input_ids"]]
    banned = [i for i in range(model.config.vocab_size) if i >= len(tok) or
              (i in tok.all_special_ids and i != tok.eos_token_id)]
    ref = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                         max_new_tokens=15, do_sample=False, suppress_tokens=banned,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    new = ref[0, len(ids):].tolist()
    if tok.eos_token_id in new:
        new = new[: new.index(tok.eos_token_id)]
    assert len(new) > 3  # a real check of the cached decoding loop, not two empty strings
    assert ours == ["The lace plant" + tok.decode(new, skip_special_tokens=True)]


def test_refusals(run_dir, tmp_path):
    from transformers import BertConfig, BertForMaskedLM

    bert = BertConfig(vocab_size=300, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=64)
    BertForMaskedLM(bert).save_pretrained(tmp_path / "bert", safe_serialization=True)
    with pytest.raises(BiofmError, match="BertForMaskedLM is a masked language model"):
        generate(tmp_path / "bert", "x")
    (tmp_path / "nosafe").mkdir()
    (tmp_path / "nosafe" / "config.json").write_text((run_dir / "model" / "config.json").read_text())
    with pytest.raises(BiofmError, match=r"no model\.safetensors"):
        generate(tmp_path / "nosafe", "x")
    with pytest.raises(BiofmError, match="exceeds the model's context"):
        generate(run_dir, "cell " * 80, max_new_tokens=10)
    with pytest.raises(BiofmError, match="greedy"):
        generate(run_dir, "x", temperature=0, num_return_sequences=2)
    with pytest.raises(BiofmError, match="top_p"):
        generate(run_dir, "x", top_p=0)
