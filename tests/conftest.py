import os
from pathlib import Path

import pytest

os.environ.setdefault("BIOFM_QUIET", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# as the CLI does: idle OpenMP threads sleep instead of spinning, which on shared cores made small
# forward passes up to 70x slower (set before torch loads its OpenMP runtime)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# Tests never reach the internet: a dataset missing from the mirror is an error, not a download. The
# download path is tested against a server on loopback (tests/datasets/test_fetch.py), which lifts this.
os.environ.setdefault("BIOFM_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def _dataset_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Converted datasets (pbmc700, pubmedqa, ...) go to one cache per test session, not the checkout's."""
    if "BIOFM_CACHE" not in os.environ:
        os.environ["BIOFM_CACHE"] = str(tmp_path_factory.mktemp("biofm-cache"))


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The dataset mirror (real data, laid out as the registry's mirror paths); tests that need it skip
    without it. `make test` and CI set BIOFM_DATA_MIRROR to ../shared/data when that folder exists."""
    value = os.environ.get("BIOFM_DATA_MIRROR", "")
    if not value or not Path(value).is_dir():
        pytest.skip("needs the dataset mirror: set BIOFM_DATA_MIRROR to a folder laid out like the registry's "
                    "mirror paths (make test does when ../shared/data exists)")
    return Path(value)


def save_model(dest: Path, preset: str = "tiny", max_len: int = 64, seed: int = 0) -> Path:
    """A freshly initialised DNA model (single-nucleotide tokens) saved as a model folder: no pretraining,
    so tests that only need a model of the right layout run in seconds."""
    from biofm.dna.tokenizer import KmerTokenizer
    from biofm.models.presets import build_config, build_model

    tok = KmerTokenizer(1)
    cfg = build_config(preset, vocab_size=tok.vocab_size, pad_id=tok.pad_id, mask_id=tok.mask_id,
                       cls_id=tok.cls_id, eos_id=tok.eos_id, max_len=max_len)
    cfg.biofm_modality = "dna"
    build_model(cfg, seed=seed).save_pretrained(dest)
    tok.save(dest)
    return dest


@pytest.fixture(scope="session")
def make_model():
    """save_model(dest, preset=..., max_len=...): a tiny random DNA model folder."""
    return save_model
