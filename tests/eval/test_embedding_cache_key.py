"""The embedding cache's key names everything that decides the embeddings: weights, config, tokenizer."""

import json

from biofm.dna.tokenizer import KmerTokenizer
from biofm.eval.embeddings import tokenizer_fingerprint, weights_fingerprint


def test_tokenizer_fingerprint_follows_the_vocabulary(tmp_path) -> None:
    from biofm.models.load import load_tokenizer

    assert tokenizer_fingerprint(KmerTokenizer(2)) == tokenizer_fingerprint(KmerTokenizer(2))
    assert tokenizer_fingerprint(KmerTokenizer(2)) != tokenizer_fingerprint(KmerTokenizer(3))
    fast = []  # as evaluation loads them: transformers tokenizers from tokenizer.json
    for i, k in enumerate((2, 2, 3)):
        KmerTokenizer(k).save(tmp_path / f"t{i}")
        (tmp_path / f"t{i}" / "config.json").write_text(json.dumps({"model_type": "esm", "biofm_modality": "dna"}))
        fast.append(tokenizer_fingerprint(load_tokenizer(tmp_path / f"t{i}")))
    assert fast[0] == fast[1] != fast[2]


def test_weights_fingerprint_sees_a_changed_config(tmp_path, make_model) -> None:
    model = make_model(tmp_path / "m")
    before = weights_fingerprint(model)
    cfg = json.loads((model / "config.json").read_text())
    cfg["layer_norm_eps"] = 1e-5
    (model / "config.json").write_text(json.dumps(cfg))
    assert weights_fingerprint(model) != before
