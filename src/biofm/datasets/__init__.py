"""Registered datasets: public source, checksum, licence; fetched through pooch or read from a mirror."""

from biofm.datasets.locate import (
    MIRROR_ENV,
    REFERENCE_PREFIX,
    dataset_path,
    fetch,
    get,
    is_reference,
    mirror_folder,
    resolve,
    resolve_all,
    status,
)
from biofm.datasets.registry import DATASETS, Dataset, RemoteFile

__all__ = [
    "DATASETS",
    "MIRROR_ENV",
    "REFERENCE_PREFIX",
    "Dataset",
    "RemoteFile",
    "dataset_path",
    "fetch",
    "get",
    "is_reference",
    "mirror_folder",
    "resolve",
    "resolve_all",
    "status",
]
