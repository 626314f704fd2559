import pytest
import torch

from biofm.models.presets import PRESETS, build_config, build_model, count_params, padded_vocab

# the vocabulary each published size was counted with: NT's 6-mers, GPT-2's BPE, BERT's WordPiece
PUBLISHED_VOCAB = {"gpt2-small": 50257, "bert-base": 30522}


def _count(name: str) -> int:
    cfg = build_config(name, vocab_size=PUBLISHED_VOCAB.get(name, 4106), pad_id=1, mask_id=2, cls_id=3, eos_id=4)
    with torch.device("meta"):
        return count_params(build_model(cfg))


@pytest.mark.parametrize("name", [n for n, p in PRESETS.items() if p.published_params])
def test_parameter_count_within_3_percent_of_published(name):
    published = PRESETS[name].published_params
    assert abs(_count(name) - published) / published < 0.03


def test_nt_v2_shapes():
    cfg = build_config("100m", vocab_size=4106, pad_id=1, mask_id=2, cls_id=3, eos_id=4)
    shape = (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size)
    assert shape == (22, 512, 16, 2048)
    assert cfg.max_position_embeddings == 2048
    assert not cfg.attention_bias and not cfg.mlp_bias and cfg.hidden_activation == "silu"
    assert set(cfg.layer_types) == {"full_attention"}
    v1 = build_config("nt-v1-500m", vocab_size=4106, pad_id=1, mask_id=2, cls_id=3, eos_id=4)
    assert v1.position_embedding_type == "absolute" and v1.hidden_size == 1280 and v1.num_hidden_layers == 24


def test_vocab_padded_to_multiple_of_64():
    assert padded_vocab(4106) == 4160 and padded_vocab(64) == 64
    assert build_config("tiny", vocab_size=10, pad_id=1, mask_id=2, cls_id=3, eos_id=4).vocab_size == 64
