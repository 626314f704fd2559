"""`biofm embed` on sequences: the evaluation's long-sequence policy, CLS or mean pooling, `--device`."""

from pathlib import Path

import numpy as np
import pytest

from biofm.cli import main
from biofm.errors import BiofmError
from biofm.use.embed import embed, sequence_embeddings


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, make_model) -> Path:
    return make_model(tmp_path_factory.mktemp("embed") / "model", max_len=16)  # 15 tokens after <cls>


LONG = "ACGT" * 10  # 40 single-nucleotide tokens: longer than the context


def test_long_sequences_are_an_error_by_default(model_dir: Path) -> None:
    with pytest.raises(BiofmError, match=r"seqs: 1 of 2 sequences are longer than the model's context \(15 tokens"):
        sequence_embeddings(model_dir, ["ACGT", LONG], source="seqs")


def test_truncate_keeps_the_first_window_and_windows_average_them(model_dir: Path) -> None:
    first = sequence_embeddings(model_dir, [LONG[:15]])["mean"][0]
    truncated = sequence_embeddings(model_dir, [LONG], long_sequences="truncate")["mean"][0]
    np.testing.assert_allclose(truncated, first, rtol=1e-5, atol=1e-6)
    pieces = [LONG[i:i + 15] for i in range(0, len(LONG), 15)]
    each = sequence_embeddings(model_dir, pieces)["mean"]
    windows = sequence_embeddings(model_dir, [LONG], long_sequences="windows")["mean"][0]
    np.testing.assert_allclose(windows, each.mean(0), rtol=1e-5, atol=1e-6)
    with pytest.raises(BiofmError, match="long_sequences 'split'"):
        sequence_embeddings(model_dir, [LONG], long_sequences="split")


def test_cli_embed_writes_cls_or_mean(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fasta = tmp_path / "in.fa"
    fasta.write_text(">a\nACGTACGT\n>b\nTTTTGGGGCC\n")
    for pooling in ("mean", "cls"):
        with pytest.raises(SystemExit) as exc:
            main(["embed", "--model", str(model_dir), "--input", str(fasta), "--out", str(tmp_path / f"{pooling}.npy"),
                  "--pooling", pooling, "--device", "cpu"])
        assert exc.value.code in (0, None)
    mean, cls = np.load(tmp_path / "mean.npy"), np.load(tmp_path / "cls.npy")
    assert mean.shape == cls.shape == (2, 3, mean.shape[2])  # tiny preset: 2 layers + embeddings
    assert not np.allclose(mean, cls)
    ref = embed(model_dir, fasta, tmp_path / "api.npy", pooling="cls")
    np.testing.assert_array_equal(ref, cls)


def test_cli_embed_long_input_is_one_line(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fasta = tmp_path / "long.fa"
    fasta.write_text(f">a\n{LONG}\n")
    with pytest.raises(SystemExit) as exc:
        main(["embed", "--model", str(model_dir), "--input", str(fasta), "--out", str(tmp_path / "x.npy")])
    err = capsys.readouterr().err.strip()
    assert exc.value.code not in (0, None) and len(err.splitlines()) == 1 and "--long-sequences truncate" in err, err
    assert not (tmp_path / "x.npy").exists()
