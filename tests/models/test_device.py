"""`--device`: resolution, scoping, and the CPU plumbing (the CUDA path runs where a GPU is present)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from biofm.errors import BiofmError
from biofm.eval.batching import pad_batches
from biofm.models.device import autocast, current_device, on_device, resolve_device
from biofm.use.embed import sequence_embeddings

CUDA = torch.cuda.is_available()


def test_auto_picks_the_best_device_present() -> None:
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    expected = "cuda" if CUDA else "mps" if mps else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("CPU").type == "cpu"


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "cpu:1", "tpu"])
def test_an_unknown_device_is_one_line(name: str) -> None:
    with pytest.raises(BiofmError, match="expected auto"):
        resolve_device(name)


@pytest.mark.skipif(CUDA, reason="a CUDA GPU is present")
def test_cuda_without_a_gpu_says_so() -> None:
    with pytest.raises(BiofmError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_scopes_nest_and_restore() -> None:
    assert current_device().type == "cpu"  # outside any scope: the CPU, as before --device existed
    with on_device("cpu") as dev:
        assert current_device() == dev
        ids = [[1, 2, 3], [4]]
        _, x, mask = next(pad_batches(ids, np.arange(2), 0, 2))
        assert x.device == dev and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert current_device().type == "cpu"


def test_autocast_is_bf16_only_on_cuda() -> None:
    with autocast(torch.device("cpu")):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.float32
    if CUDA:
        with autocast(torch.device("cuda")):
            z = torch.ones(2, 2, device="cuda") @ torch.ones(2, 2, device="cuda")
        assert z.dtype == torch.bfloat16


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, make_model) -> Path:
    return make_model(tmp_path_factory.mktemp("device") / "model", max_len=32)


SEQS = ["ACGTACGTAC", "TTGACA" * 3, "GATTACA"]


def test_cpu_scope_gives_the_embeddings_of_no_scope(model_dir: Path) -> None:
    plain = sequence_embeddings(model_dir, SEQS)
    with on_device("cpu"):
        scoped = sequence_embeddings(model_dir, SEQS)
    assert np.array_equal(plain["mean"], scoped["mean"]) and np.array_equal(plain["cls"], scoped["cls"])


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_cuda_embeddings_match_cpu_within_bf16(model_dir: Path) -> None:
    cpu = sequence_embeddings(model_dir, SEQS)["mean"]
    with on_device("cuda"):
        gpu = sequence_embeddings(model_dir, SEQS)["mean"]
    assert gpu.dtype == np.float32
    np.testing.assert_allclose(gpu, cpu, atol=5e-2, rtol=5e-2)
