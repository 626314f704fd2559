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


def test_batches_keep_to_rows_and_padded_tokens():
    import numpy as np

    from biofm.eval.batching import pad_batches

    ids = [[1] * n for n in (2, 3, 3, 5, 8, 40)]
    got = [(part.tolist(), tuple(x.shape)) for part, x, _ in pad_batches(ids, np.arange(6), 0, 4, max_tokens=16)]
    # 4 rows x 3 tokens fit; then 5 and 8 (2 x 8 = 16); the 40-token row exceeds the budget and runs alone
    assert got == [([0, 1, 2], (3, 3)), ([3, 4], (2, 8)), ([5], (1, 40))]
    assert [p.tolist() for p, _, _ in pad_batches(ids, np.arange(6), 0, 4)] == [[0, 1, 2, 3], [4, 5]]
