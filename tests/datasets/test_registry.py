"""The registry itself: well-formed entries, every mirror copy matching its checksum, the conversions
reproducing what they must, and no third-party data left in the package."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from biofm.datasets import DATASETS, dataset_path, fetch, status
from biofm.datasets import convert as conversions

ROOT = Path(__file__).resolve().parents[2]


def test_entries_are_complete() -> None:
    paths = set()
    for d in DATASETS.values():
        assert d.modality in {"dna", "cells", "atac", "multiome", "text"}, d.name
        assert d.description and d.licence and d.citation and d.origin, d.name
        assert bool(d.files) or d.convert, f"{d.name}: neither files nor a conversion"
        for f in d.files:
            assert re.fullmatch(r"[0-9a-f]{64}", f.sha256) and f.size > 0, f.mirror_path
            assert f.url is None or f.url.startswith("https://"), f.url
            assert f.url is not None or d.mirror_only, f"{d.name}: a file without URL needs a mirror-only reason"
            assert f.mirror_path not in paths, f"{f.mirror_path} registered twice"
            paths.add(f.mirror_path)
        if d.mirror_only:
            assert any(f.url is None for f in d.files), f"{d.name}: mirror-only yet every file has a URL"
        if d.convert:
            assert callable(getattr(conversions, d.convert)) and d.convert in conversions.VERSIONS and d.output
            assert all(src in DATASETS for src in d.derived_from), d.name


def test_every_mirror_copy_matches_its_checksum(mirror: Path) -> None:
    for d in DATASETS.values():
        for f in d.files:
            path = mirror / f.mirror_path
            assert path.is_file(), f"the mirror lacks {f.mirror_path}"
            assert path.stat().st_size == f.size, f.mirror_path
        assert [p.resolve() for p in fetch(d.name)] == ([(mirror / f.mirror_path).resolve() for f in d.files]
                                                       if not d.convert else [dataset_path(d.name)])
        assert status(d.name) in ("mirror", "cached")


def test_text_conversions_reproduce_their_checksums(mirror: Path) -> None:
    # dataset_path refuses a conversion whose bytes differ from output_sha256; check it held anyway.
    for name in ("pubmedqa", "pubmed-abstracts"):
        digest = hashlib.sha256(dataset_path(name).read_bytes()).hexdigest()
        assert digest == DATASETS[name].output_sha256


def test_pbmc_counts_match_the_mirrors_converted_copy(mirror: Path) -> None:
    """The conversion from scanpy's processed file gives back the counts the mirror holds, exactly."""
    import anndata as ad

    ours = ad.read_h5ad(dataset_path("pbmc700"))
    theirs = ad.read_h5ad(mirror / "cells/pbmc68k_700cells_counts.h5ad")
    assert ours.shape == theirs.shape == (700, 765) and ours.X.dtype == theirs.X.dtype
    assert (ours.X != theirs.X).nnz == 0 and np.issubdtype(ours.X.dtype, np.integer)
    assert list(ours.var_names) == list(theirs.var_names) and list(ours.obs_names) == list(theirs.obs_names)
    assert ours.obs.equals(theirs.obs) and ours.obs["bulk_labels"].nunique() == 10


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")  # mudata's notes on its next release
def test_atac_and_multiome_entries_open(mirror: Path) -> None:
    import h5py
    import mudata

    with h5py.File(dataset_path("granja2019-bmmc-600"), "r") as f:
        assert tuple(f["X"].attrs["shape"]) == (600, 5000)
    snare = mudata.read_h5mu(dataset_path("snareseq-mouse-cortex"))
    assert set(snare.mod) == {"rna", "atac"} and snare.n_obs == 10_309
    tea = mudata.read_h5mu(dataset_path("teaseq-pbmc"))
    assert tea.n_obs == 1262 and "rna" in tea.mod and len(tea.mod) == 2


def test_package_holds_no_data_files() -> None:
    """Third-party data is fetched, never shipped: the package holds code, task YAMLs and docs only."""
    allowed = {".py", ".yaml", ".md", ".typed"}
    found = [p.relative_to(ROOT) for p in (ROOT / "src").rglob("*")
             if p.is_file() and p.suffix not in allowed and "__pycache__" not in p.parts and ".egg-info" not in str(p)]
    assert found == []
