import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from biofm.errors import BiofmError
from biofm.text.tokenizer import EOS, SPECIAL_TOKENS, TextTokenizer, train_bpe

CORPUS = [
    "Programmed cell death is the regulated death of cells within an organism.",
    "The lace plant produces perforations in its leaves through programmed cell death.",
    "Mitochondrial dynamics were delineated into four categories based on membrane potential.",
    "Naloxone reverses the antihypertensive effect of clonidine in hypertensive rats.",
    "β-catenin mutations cause a common human skin tumour; [Ca2+] rose by 10–20 %.",
] * 4


@pytest.fixture(scope="module")
def tok():
    return train_bpe(iter(CORPUS), vocab_size=400, min_frequency=2)


def test_specials_and_ids(tok):
    assert tok.hf.convert_ids_to_tokens(list(range(5))) == list(SPECIAL_TOKENS)
    assert (tok.eos_id, tok.pad_id, tok.mask_id, tok.cls_id) == (0, 1, 2, 3)
    assert tok.bos_id == tok.eos_id
    assert tok.special_ids == frozenset(range(5))
    assert 261 < tok.vocab_size <= 400 and tok.vocab_size == len(tok.hf)
    ids = tok.encode("cell death")
    assert ids and not set(ids) & tok.special_ids
    assert tok.encode_batch(["cell death", "", "x"]) == [ids, [], tok.encode("x")]


def test_special_token_strings_in_text_stay_text(tok):
    text = f"a {EOS} b <mask> c <pad>"
    ids = tok.encode(text)
    assert not set(ids) & tok.special_ids
    assert tok.decode(ids) == text


@given(st.text(max_size=80))
@settings(max_examples=200, deadline=None)
def test_byte_level_roundtrip_of_any_unicode(tok, text):
    assert tok.decode(tok.encode(text)) == text
    assert tok.token_bytes[tok.encode(text)].sum() == len(text.encode("utf-8"))


def test_save_load_keeps_identity_and_adds_to_an_existing_folder(tok, tmp_path):
    dest = tmp_path / "model"
    dest.mkdir()
    (dest / "config.json").write_text("{}")
    tok.save(dest)
    assert {p.name for p in dest.iterdir()} >= {"config.json", "tokenizer.json", "tokenizer_config.json",
                                                "special_tokens_map.json"}
    again = TextTokenizer.load(dest)
    assert again.identity == tok.identity and again.vocab_size == tok.vocab_size
    assert again.encode(CORPUS[4]) == tok.encode(CORPUS[4])
    fresh = tok.save(tmp_path / "new")
    assert TextTokenizer.load(fresh).identity == tok.identity


def test_autotokenizer_loads_it_without_biofm(tok, tmp_path):
    tok.save(tmp_path / "t")
    text = CORPUS[4]
    script = f"""
import json, sys
from transformers import AutoTokenizer
t = AutoTokenizer.from_pretrained({str(tmp_path / 't')!r})
assert not any(m == "biofm" or m.startswith("biofm.") for m in sys.modules)
ids = t({text!r}, add_special_tokens=False)["input_ids"]
print(json.dumps({{"ids": ids, "eos": t.eos_token, "bos": t.bos_token, "pad": t.pad_token, "mask": t.mask_token,
                  "cls": t.cls_token, "unk": t.unk_token, "n": len(t), "text": t.decode(ids)}}))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["ids"] == tok.encode(text) and got["text"] == text and got["n"] == tok.vocab_size
    assert (got["eos"], got["bos"], got["pad"], got["mask"], got["cls"], got["unk"]) == (
        "<|endoftext|>", "<|endoftext|>", "<pad>", "<mask>", "<cls>", "<unk>")


def test_a_tokenizer_without_some_specials_gets_them(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                        show_progress=False))
    PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>").save_pretrained(tmp_path / "gpt")
    tok = TextTokenizer.load(tmp_path / "gpt")
    assert len({tok.eos_id, tok.pad_id, tok.mask_id, tok.cls_id}) == 4
    assert tok.special_ids >= {tok.eos_id, tok.pad_id, tok.mask_id, tok.cls_id}


def test_errors(tmp_path):
    with pytest.raises(BiofmError, match="at least 261"):
        train_bpe(CORPUS, vocab_size=100)
    with pytest.raises(BiofmError, match="tokenizer folder not found"):
        TextTokenizer.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BiofmError, match=r"no tokenizer\.json"):
        TextTokenizer.load(tmp_path / "empty")
