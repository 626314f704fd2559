import json

import numpy as np
import pytest

import biofm.text.data as textdata
from biofm.errors import BiofmError
from biofm.text.config import CleaningConfig, TextDataConfig, TextTokenizerConfig
from biofm.text.corpus import Document, clean_documents
from biofm.text.data import build_text_blocks, is_val, prepare_tokenizer
from biofm.text.tokenizer import train_bpe

WORDS = ["cell", "death", "protein", "mutation", "tumour", "receptor", "binding", "kinase", "signal", "pathway",
         "gene", "expression"]


def _corpus(path, n=60, seed=0):
    rng = np.random.default_rng(seed)
    with open(path, "w") as fh:
        for i in range(n):
            words = " ".join(rng.choice(WORDS, size=int(rng.integers(3, 15))))
            fh.write(json.dumps({"text": f"doc{i:03d} {words} [1]."}) + "\n")
        fh.write(json.dumps({"text": "doc000 duplicate-free filler"}) + "\n")
        fh.write(json.dumps({"text": "  "}) + "\n")  # empty after cleaning


def _cfg(tmp_path, **kw):
    kw.setdefault("val_fraction", 0.3)
    return TextDataConfig(paths=[str(tmp_path / "c.jsonl")], cache_dir=str(tmp_path / "cache"), **kw)


@pytest.fixture
def setup(tmp_path):
    _corpus(tmp_path / "c.jsonl")
    cfg = _cfg(tmp_path)
    tok = prepare_tokenizer(cfg, TextTokenizerConfig(vocab_size=300), seed=0)
    return tmp_path, cfg, tok


def _docs(cfg, seed=0):
    from biofm.text.data import iter_split_documents

    return list(iter_split_documents(cfg, seed))


def _stream(tok, docs):
    out = []
    for d in docs:
        out += [*tok.encode(d.text), tok.eos_id]
    return np.array(out)


@pytest.mark.parametrize("add_cls", [False, True])
def test_blocks_are_documents_joined_by_eos_and_cut_exactly(setup, add_cls):
    _tmp_path, cfg, tok = setup
    b = build_text_blocks(cfg, tok, 16, 0, add_cls=add_cls)
    train = b.train[np.arange(len(b.train))]
    assert train.shape == (len(b.train), 16) and len(b.val) > 0
    if add_cls:
        assert (train[:, 0] == tok.cls_id).all()
        train = train[:, 1:]
    assert tok.pad_id not in train and tok.cls_id not in train
    docs = [d for held_out, d in _docs(cfg) if not held_out]
    expected = _stream(tok, docs)
    body = 15 if add_cls else 16
    assert len(expected) == b.meta["train"]["tokens"]
    assert b.meta["train"]["tail_tokens_dropped"] == len(expected) % body
    assert (train.ravel() == expected[: len(train) * body]).all()  # eos between docs, in order, no gaps
    assert b.meta["train"]["documents"] == len(docs)
    assert b.counts.sum() == train.size + (len(train) if add_cls else 0)


def test_tail_pad_versus_drop(setup):
    tmp_path, cfg, tok = setup
    drop = build_text_blocks(cfg, tok, 32, 0, add_cls=False)
    pad = build_text_blocks(_cfg(tmp_path, tail="pad"), tok, 32, 0, add_cls=False)
    tail = drop.meta["train"]["tail_tokens_dropped"]
    assert tail > 0 and len(pad.train) == len(drop.train) + 1
    last = pad.train[len(pad.train) - 1][0]
    assert (last[tail:] == tok.pad_id).all() and tok.pad_id not in last[:tail]
    assert pad.meta["train"]["pad_tokens"] == 32 - tail
    full = pad.train[np.arange(len(pad.train))]
    assert (full[:-1] != tok.pad_id).all()  # padding only ever at the very end


def test_no_document_in_both_splits(setup):
    _tmp_path, cfg, tok = setup
    b = build_text_blocks(cfg, tok, 16, 0, add_cls=False)
    train_text = tok.decode(b.train[np.arange(len(b.train))].ravel())
    val_text = tok.decode(b.val[np.arange(len(b.val))].ravel())
    ids = {f"doc{i:03d}" for i in range(60)}
    in_train = {i for i in ids if i in train_text}
    in_val = {i for i in ids if i in val_text}
    assert in_train and in_val and not (in_train & in_val)
    # and the split is the pure function of the text and the seed
    held = {d.text[:6] for h, d in _docs(cfg) if h}
    assert held == {d.text[:6] for d in clean_documents([Document(d.text, "", 0) for _, d in _docs(cfg)])
                    if is_val(d.digest, 0, 0.3)}


def test_rerun_hits_the_cache_and_changes_miss_it(setup, monkeypatch):
    tmp_path, cfg, tok = setup
    first = build_text_blocks(cfg, tok, 16, 0, add_cls=False)
    assert json.loads((first.path / "cleaning.json").read_text())["documents_read"] == 62
    assert first.cleaning["citation_markers_removed"] == 60

    class Boom:
        def __init__(self, *a, **k):
            raise AssertionError("tokenised again")

    monkeypatch.setattr(textdata, "_Packer", Boom)
    again = build_text_blocks(cfg, tok, 16, 0, add_cls=False)
    assert again.path == first.path and again.meta == first.meta
    for changed in (
        dict(cfg=_cfg(tmp_path, cleaning=CleaningConfig(citations=False))),
        dict(seed=1),
        dict(block=17),
        dict(add_cls=True),
        dict(tok=train_bpe(["other text"] * 3, 270)),
    ):
        args = {"cfg": cfg, "tok": tok, "block": 16, "seed": 0, "add_cls": False, **changed}
        with pytest.raises(AssertionError, match="tokenised again"):
            build_text_blocks(**args)


def test_tokenizer_is_cached_and_sees_training_documents_only(tmp_path, monkeypatch):
    _corpus(tmp_path / "c.jsonl")
    cfg = _cfg(tmp_path)
    seen = []
    real = textdata.train_bpe

    def spy(texts, *a):
        texts = list(texts)
        seen.extend(texts)
        return real(texts, *a)

    monkeypatch.setattr(textdata, "train_bpe", spy)
    tok = prepare_tokenizer(cfg, TextTokenizerConfig(vocab_size=300), seed=0)
    train_texts = [d.text for h, d in _docs(cfg) if not h]
    assert seen == train_texts and len(train_texts) < 61

    def boom(*a, **k):
        raise AssertionError("trained again")

    monkeypatch.setattr(textdata, "train_bpe", boom)
    again = prepare_tokenizer(cfg, TextTokenizerConfig(vocab_size=300), seed=0)
    assert again.identity == tok.identity
    tok.save(tmp_path / "mytok")
    given = prepare_tokenizer(cfg, TextTokenizerConfig(path=str(tmp_path / "mytok")), seed=0)
    assert given.identity == tok.identity


def test_folders_and_validation_off(setup):
    tmp_path, _, tok = setup
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("first document here\nsecond document here\n")
    (folder / "sub" / "b.txt").write_text("third document here\n")
    cfg = TextDataConfig(paths=[str(folder)], cache_dir=str(tmp_path / "cache"), val_fraction=0.0)
    b = build_text_blocks(cfg, tok, 4, 0, add_cls=False)
    assert len(b.val) == 0 and b.meta["train"]["documents"] == 3 and b.meta["inputs"][-1].endswith("b.txt")


def test_errors_name_the_inputs(setup):
    tmp_path, cfg, tok = setup
    short = _cfg(tmp_path, cleaning=CleaningConfig(min_chars=10_000))
    with pytest.raises(BiofmError, match=r"c\.jsonl: no documents left after cleaning \(62 read"):
        build_text_blocks(short, tok, 16, 0, add_cls=False)
    with pytest.raises(BiofmError, match=r"c\.jsonl: no documents left"):
        prepare_tokenizer(short, TextTokenizerConfig(vocab_size=300), 0)
    with pytest.raises(BiofmError, match="no training block of 100000 tokens"):
        build_text_blocks(cfg, tok, 100_000, 0, add_cls=False)
    with pytest.raises(BiofmError, match="not found"):
        build_text_blocks(_cfg(tmp_path.parent / "nowhere"), tok, 16, 0, add_cls=False)
    assert not list((tmp_path / "cache").glob(".text-*"))  # failed builds leave no half-written folder
