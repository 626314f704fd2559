"""Find a registered dataset's files on this machine: the mirror, the cache, or a checksummed download.

For each public file of a dataset, in order:
1. the **mirror** (`BIOFM_DATA_MIRROR`, or the `mirror` argument / `biofm --mirror`): a folder laid out
   like the registry's `mirror_path`s. A file found there is checksummed and read in place; a mirror is
   never written to. A file there whose SHA-256 differs is never used: the error names both hashes.
2. the **cache** (`<biofm cache>/datasets/<dataset>/`): files downloaded earlier. Each carries a stamp
   (`.<file>.verified`) with its size, mtime and SHA-256, so a large file is hashed once, not per use;
   a changed file is hashed again.
3. a **download** with pooch's HTTP downloader into `.<file>.part-<pid>` beside its final name, then
   checksummed, then renamed: an interrupted download never leaves a file under its final name. A file
   whose checksum differs is set aside as `<file>.sha256-mismatch` (kept for inspection, never used).

A dataset with a conversion (R data, a JSON corpus, ... into what biofm reads) then runs it into the
cache once; the result carries a stamp of its inputs' checksums and the conversion's version, so a
new input or a changed conversion rebuilds it. Every failure is one line naming the dataset, the file,
the URL and where to put the file by hand.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from biofm.datasets import convert
from biofm.datasets.registry import DATASETS, Dataset, RemoteFile
from biofm.errors import BiofmError
from biofm.io.atomic import atomic_path, write_json
from biofm.io.files import cache_root, file_fingerprint
from biofm.progress import progress

MIRROR_ENV = "BIOFM_DATA_MIRROR"
OFFLINE_ENV = "BIOFM_OFFLINE"  # "1": never try a download (a missing file is an error at once)
REFERENCE_PREFIX = "dataset:"  # `dataset:ecoli-k12` in a config or task names a registered dataset
DOWNLOAD_TIMEOUT_S = 60

# Files already hashed by this process, keyed by (path, size, mtime_ns): a mirror file is read-only to
# us, so it gets no stamp; this keeps one process from hashing it twice.
_verified: dict[tuple[str, int, int], str] = {}

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def get(name: str) -> Dataset:
    """The registry entry of `name`; an unknown name is a one-line error listing the known ones."""
    ds = DATASETS.get(name)
    if ds is None:
        raise BiofmError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))} (see `biofm data list`)")
    return ds


def mirror_folder(mirror: str | Path | None = None) -> Path | None:
    """The mirror in use: the argument, else `$BIOFM_DATA_MIRROR`, else none. A named folder must exist."""
    value = str(mirror) if mirror is not None else os.environ.get(MIRROR_ENV, "")
    if not value:
        return None
    folder = Path(value).expanduser().resolve()
    if not folder.is_dir():
        source = "--mirror" if mirror is not None else MIRROR_ENV
        raise BiofmError(f"{folder}: data mirror folder not found (set by {source})")
    return folder


def dataset_root(name: str, cache: str | None = None) -> Path:
    """Where a dataset's downloads and conversions live in the cache."""
    return cache_root(cache) / "datasets" / name


def is_reference(value: str | Path) -> bool:
    return str(value).startswith(REFERENCE_PREFIX)


def resolve(value: str | Path, *, mirror: str | Path | None = None, log: Log | None = None) -> Path:
    """A path as written in a config or task: `dataset:NAME` becomes the dataset's local file; any other
    value is returned as a path, unchanged."""
    text = str(value)
    if not is_reference(text):
        return Path(text)
    return dataset_path(text[len(REFERENCE_PREFIX):], mirror=mirror, log=log)


def resolve_all(values: list[str], **kwargs) -> list[str]:
    """`resolve` for a list of paths as configs hold them (strings)."""
    return [str(resolve(v, **kwargs)) for v in values]


def dataset_path(name: str, *, mirror: str | Path | None = None, cache: str | None = None,
                 log: Log | None = None) -> Path:
    """The one file biofm reads for `name` (fetched, checksummed, converted as needed)."""
    ds = get(name)
    if ds.convert is None and len(ds.files) != 1:
        raise BiofmError(f"dataset {name!r} has {len(ds.files)} files and no single file to read; "
                         f"`biofm data path {name}` lists them")
    return fetch(name, mirror=mirror, cache=cache, log=log)[0]


def fetch(name: str, *, mirror: str | Path | None = None, cache: str | None = None,
          log: Log | None = None) -> list[Path]:
    """Every local file of `name`: its public files, or, for a converted dataset, the converted file."""
    ds = get(name)
    log = log or _stderr
    folder = mirror_folder(mirror)
    if ds.convert is None:
        return [_local_file(ds, f, folder, cache, log) for f in ds.files]
    inputs = {src: fetch(src, mirror=mirror, cache=cache, log=log) for src in ds.derived_from}
    inputs[name] = [_local_file(ds, f, folder, cache, log) for f in ds.files]
    return [_converted(ds, inputs, cache, log)]


def status(name: str, *, mirror: str | Path | None = None, cache: str | None = None) -> str:
    """"mirror", "cached" or "missing": where the dataset's files would come from now (nothing hashed)."""
    ds = get(name)
    folder = mirror_folder(mirror)
    where = []
    for f in ds.files:
        if folder is not None and (folder / f.mirror_path).is_file():
            where.append("mirror")
        elif (dataset_root(ds.name, cache) / f.filename).is_file():
            where.append("cached")
        else:
            where.append("missing")
    where += [status(src, mirror=mirror, cache=cache) for src in ds.derived_from]
    if "missing" in where:
        return "missing"
    return "mirror" if all(w == "mirror" for w in where) else "cached"


# ---------------------------------------------------------------------------------------- one file


def _local_file(ds: Dataset, f: RemoteFile, mirror: Path | None, cache: str | None, log: Log) -> Path:
    if mirror is not None:
        candidate = mirror / f.mirror_path
        if candidate.is_file():
            got = _sha256(candidate)
            if got != f.sha256:
                raise BiofmError(f"{candidate}: checksum mismatch for dataset {ds.name!r} (SHA-256 {got}, expected "
                                 f"{f.sha256}); the file was not used: replace it with the published file "
                                 f"({f.url or 'mirror-only'})")
            return candidate
    dest = dataset_root(ds.name, cache) / f.filename
    if dest.is_file():
        got = _sha256_stamped(dest)
        if got == f.sha256:
            return dest
        _set_aside(dest)
        log(f"{dest}: cached copy of {ds.name!r} has the wrong checksum; set aside as {dest.name}.sha256-mismatch")
    return _download(ds, f, dest, mirror, log)


def _by_hand(ds: Dataset, f: RemoteFile, mirror: Path | None) -> str:
    where = f"{mirror / f.mirror_path}" if mirror is not None else f"$BIOFM_DATA_MIRROR/{f.mirror_path}"
    return f"download it by hand and put it at {where}"


def _download(ds: Dataset, f: RemoteFile, dest: Path, mirror: Path | None, log: Log) -> Path:
    if f.url is None:
        raise BiofmError(f"dataset {ds.name!r} is mirror-only ({ds.mirror_only}); {f.mirror_path} is not in the "
                         f"mirror ({mirror or 'no mirror set: ' + MIRROR_ENV}); put the file at "
                         f"{(mirror / f.mirror_path) if mirror else '$' + MIRROR_ENV + '/' + f.mirror_path}")
    if os.environ.get(OFFLINE_ENV) == "1":
        raise BiofmError(f"dataset {ds.name!r}: {f.filename} is neither in the mirror nor cached and {OFFLINE_ENV}=1 "
                         f"forbids downloading {f.url}; {_by_hand(ds, f, mirror)}")
    import pooch

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f".{dest.name}.part-{os.getpid()}")
    log(f"downloading {ds.name}: {f.url} ({f.size / 1e6:,.1f} MB)")
    try:
        with progress(f"downloading {ds.name} ({f.size / 1e6:,.1f} MB)", None):
            pooch.HTTPDownloader(progressbar=False, timeout=DOWNLOAD_TIMEOUT_S)(f.url, str(part), None)
    except Exception as exc:  # requests raises many kinds (connection, timeout, HTTP status, incomplete read)
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        reason = _why(exc)
        raise BiofmError(f"dataset {ds.name!r}: download of {f.url} failed ({reason}); "
                         f"{_by_hand(ds, f, mirror)}, or set {MIRROR_ENV} to a folder that holds it") from None
    got, size = file_fingerprint(part), part.stat().st_size
    if got != f.sha256:
        aside = dest.with_name(f"{dest.name}.sha256-mismatch")
        os.replace(part, aside)
        raise BiofmError(f"dataset {ds.name!r}: {f.url} gave a file with SHA-256 {got} ({size:,} bytes), expected "
                         f"{f.sha256} ({f.size:,} bytes); it was not used and is set aside as {aside}")
    os.replace(part, dest)
    _write_stamp(dest, got)
    log(f"saved {dest}")
    return dest


def _why(exc: Exception) -> str:
    """A short reason for a failed download (requests' own messages run to several hundred characters)."""
    import requests

    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "the connection closed before the end of the file"
    if isinstance(exc, requests.Timeout):
        return f"no answer within {DOWNLOAD_TIMEOUT_S} s"
    if isinstance(exc, requests.ConnectionError):
        return "could not connect (offline?)"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:120]}" if text else type(exc).__name__


def _set_aside(path: Path) -> None:
    os.replace(path, path.with_name(f"{path.name}.sha256-mismatch"))
    with contextlib.suppress(FileNotFoundError):
        _stamp_path(path).unlink()


def _sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _verified:
        _verified[key] = file_fingerprint(path)
    return _verified[key]


def _stamp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.verified")


def _write_stamp(path: Path, sha: str) -> None:
    st = path.stat()
    write_json(_stamp_path(path), {"sha256": sha, "size": st.st_size, "mtime_ns": st.st_mtime_ns})


def _sha256_stamped(path: Path) -> str:
    """The file's SHA-256, from its stamp when size and mtime still match (else hashed and re-stamped)."""
    st = path.stat()
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        stamp = json.loads(_stamp_path(path).read_text())
        if stamp["size"] == st.st_size and stamp["mtime_ns"] == st.st_mtime_ns:
            return str(stamp["sha256"])
    sha = file_fingerprint(path)
    with contextlib.suppress(OSError):  # a read-only cache still works, it just hashes every time
        _write_stamp(path, sha)
    return sha


# ---------------------------------------------------------------------------------------- conversion


def _converted(ds: Dataset, inputs: dict[str, list[Path]], cache: str | None, log: Log) -> Path:
    assert ds.convert is not None and ds.output is not None
    fn = getattr(convert, ds.convert)
    dest = dataset_root(ds.name, cache) / ds.output
    recipe = {"conversion": ds.convert, "version": convert.VERSIONS[ds.convert],
              "inputs": {k: [_sha256(p) for p in v] for k, v in sorted(inputs.items())}}
    stamp = dest.with_name(f".{dest.name}.recipe.json")
    with contextlib.suppress(OSError, ValueError):
        if dest.is_file() and json.loads(stamp.read_text()) == recipe:
            return dest
    log(f"converting {ds.name} ({ds.convert}) into {dest}")
    with atomic_path(dest) as tmp, progress(f"converting {ds.name}", None):
        fn(inputs, tmp)
        if ds.output_sha256 is not None and (got := file_fingerprint(tmp)) != ds.output_sha256:
            raise BiofmError(f"dataset {ds.name!r}: conversion {ds.convert} gave SHA-256 {got}, expected "
                             f"{ds.output_sha256}; the result was not kept")
    write_json(stamp, recipe)
    return dest
