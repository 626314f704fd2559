"""The download path against a real HTTP server on loopback, the mirror, the cache, conversions and the CLI.

Every file served here is synthetic: the registry is extended, for one test, with entries whose URLs
point at a server on 127.0.0.1 (an ephemeral port).
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from biofm.cli import main
from biofm.datasets import convert
from biofm.datasets import locate as fetch
from biofm.datasets.registry import Dataset, RemoteFile
from biofm.errors import BiofmError

BODY = b">toy\n" + b"ACGT" * 5000 + b"\n"
SHA = hashlib.sha256(BODY).hexdigest()


class _Server(http.server.ThreadingHTTPServer):
    files: dict[str, bytes]
    hits: list[str]
    truncate: set[str]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in self.server.truncate:  # promise the whole file, send half, hang up
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.files, srv.hits, srv.truncate = {}, [], set()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache, no mirror, downloads allowed (conftest forbids them elsewhere)."""
    monkeypatch.setenv("BIOFM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("BIOFM_DATA_MIRROR", raising=False)
    monkeypatch.delenv("BIOFM_OFFLINE", raising=False)
    return tmp_path / "cache"


def register(monkeypatch: pytest.MonkeyPatch, srv: _Server | None, name: str = "toy", body: bytes = BODY,
             sha: str = SHA, **kw: object) -> Dataset:
    url = None
    if srv is not None:
        url = f"http://127.0.0.1:{srv.server_address[1]}/files/{name}.fa"
        srv.files[f"/files/{name}.fa"] = body
    ds = Dataset(name, "dna", "a toy genome", "CC0", "nobody", "here",
                 (RemoteFile(f"dna/genomes/{name}.fa", sha, len(body), url),), **kw)  # type: ignore[arg-type]
    monkeypatch.setitem(fetch.DATASETS, name, ds)
    return ds


def one_line_error(fn, *args, **kw) -> str:
    with pytest.raises(BiofmError) as exc:
        fn(*args, **kw)
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------------------------------- downloads


def test_clean_download_is_checked_cached_and_reused(server: _Server, env: Path, monkeypatch) -> None:
    register(monkeypatch, server)
    path = fetch.dataset_path("toy")
    assert path == env / "datasets" / "toy" / "toy.fa" and path.read_bytes() == BODY
    assert sorted(p.name for p in path.parent.iterdir()) == [".toy.fa.verified", "toy.fa"]  # no part file left
    assert fetch.status("toy") == "cached"
    assert fetch.dataset_path("toy") == path and len(server.hits) == 1  # the cache answers the second time


def test_checksum_mismatch_sets_the_file_aside(server: _Server, env: Path, monkeypatch) -> None:
    register(monkeypatch, server, sha="0" * 64)
    msg = one_line_error(fetch.dataset_path, "toy")
    assert "'toy'" in msg and f"SHA-256 {SHA}" in msg and "expected " + "0" * 64 in msg and "set aside" in msg
    folder = env / "datasets" / "toy"
    assert sorted(p.name for p in folder.iterdir()) == ["toy.fa.sha256-mismatch"]  # kept, never under its name
    assert (folder / "toy.fa.sha256-mismatch").read_bytes() == BODY


def test_server_closing_mid_file_leaves_nothing_under_the_final_name(server: _Server, env: Path,
                                                                    monkeypatch) -> None:
    register(monkeypatch, server)
    server.truncate.add("/files/toy.fa")
    msg = one_line_error(fetch.dataset_path, "toy")
    assert "download of http://127.0.0.1" in msg and "put it at $BIOFM_DATA_MIRROR/dna/genomes/toy.fa" in msg
    folder = env / "datasets" / "toy"
    assert not folder.exists() or list(folder.iterdir()) == []
    server.truncate.clear()  # the next try succeeds and is checked as usual
    assert fetch.dataset_path("toy").read_bytes() == BODY


def test_http_error_and_offline_are_one_line(server: _Server, env: Path, monkeypatch) -> None:
    register(monkeypatch, server)
    del server.files["/files/toy.fa"]
    assert "HTTP 404" in one_line_error(fetch.dataset_path, "toy")
    monkeypatch.setenv("BIOFM_OFFLINE", "1")
    msg = one_line_error(fetch.dataset_path, "toy")
    assert "BIOFM_OFFLINE=1" in msg and "/files/toy.fa" in msg and "$BIOFM_DATA_MIRROR/dna/genomes/toy.fa" in msg
    assert server.hits == ["/files/toy.fa"]  # offline never asked the server


def test_corrupted_cache_copy_is_set_aside_and_fetched_again(server: _Server, env: Path, monkeypatch) -> None:
    register(monkeypatch, server)
    path = fetch.dataset_path("toy")
    path.write_bytes(b">toy\nNNNN\n")  # size and mtime change: the stamp no longer vouches for it
    assert fetch.dataset_path("toy").read_bytes() == BODY and len(server.hits) == 2
    assert (path.parent / "toy.fa.sha256-mismatch").read_bytes() == b">toy\nNNNN\n"


# ---------------------------------------------------------------------------------------- mirror


def test_mirror_copy_is_used_in_place_without_download(server: _Server, env: Path, tmp_path: Path,
                                                       monkeypatch) -> None:
    register(monkeypatch, server)
    mirror = tmp_path / "mirror"
    (mirror / "dna/genomes").mkdir(parents=True)
    (mirror / "dna/genomes/toy.fa").write_bytes(BODY)
    monkeypatch.setenv("BIOFM_DATA_MIRROR", str(mirror))
    assert fetch.dataset_path("toy") == (mirror / "dna/genomes/toy.fa").resolve()
    assert fetch.status("toy") == "mirror" and server.hits == [] and not env.exists()


def test_bad_mirror_copy_is_never_used_nor_touched(server: _Server, env: Path, tmp_path: Path,
                                                   monkeypatch) -> None:
    register(monkeypatch, server)
    bad = tmp_path / "mirror/dna/genomes/toy.fa"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b">toy\nA\n")
    msg = one_line_error(fetch.dataset_path, "toy", mirror=tmp_path / "mirror")
    assert "checksum mismatch" in msg and str(bad.resolve()) in msg and "was not used" in msg
    assert bad.read_bytes() == b">toy\nA\n" and server.hits == []


def test_mirror_only_dataset_says_where_to_put_the_file(env: Path, tmp_path: Path, monkeypatch) -> None:
    register(monkeypatch, None, mirror_only="no public original")
    msg = one_line_error(fetch.dataset_path, "toy")
    assert "mirror-only (no public original)" in msg and "$BIOFM_DATA_MIRROR/dna/genomes/toy.fa" in msg
    (tmp_path / "m").mkdir()
    msg = one_line_error(fetch.dataset_path, "toy", mirror=tmp_path / "m")
    assert f"put the file at {(tmp_path / 'm').resolve()}/dna/genomes/toy.fa" in msg
    assert "not found" in one_line_error(fetch.dataset_path, "toy", mirror=tmp_path / "absent")
    assert "known:" in one_line_error(fetch.dataset_path, "no-such-dataset")


# ---------------------------------------------------------------------------------------- conversion


def _gzip_copy(inputs: dict[str, list[Path]], out: Path) -> None:
    out.write_bytes(gzip.compress(inputs["toy"][0].read_bytes(), mtime=0))


def test_conversion_runs_once_and_again_when_its_version_changes(server: _Server, env: Path,
                                                                 monkeypatch) -> None:
    calls: list[Path] = []

    def counted(inputs: dict[str, list[Path]], out: Path) -> None:
        calls.append(out)
        _gzip_copy(inputs, out)

    monkeypatch.setattr(convert, "toy_gzip", counted, raising=False)
    monkeypatch.setitem(convert.VERSIONS, "toy_gzip", 1)
    register(monkeypatch, server)
    expected = hashlib.sha256(gzip.compress(BODY, mtime=0)).hexdigest()
    monkeypatch.setitem(fetch.DATASETS, "toy-gz", Dataset("toy-gz", "dna", "d", "CC0", "c", "o", convert="toy_gzip",
                                                          output="toy.fa.gz", output_sha256=expected,
                                                          derived_from=("toy",)))
    out = fetch.dataset_path("toy-gz")
    assert gzip.decompress(out.read_bytes()) == BODY and fetch.dataset_path("toy-gz") == out and len(calls) == 1
    monkeypatch.setitem(convert.VERSIONS, "toy_gzip", 2)
    assert fetch.dataset_path("toy-gz") == out and len(calls) == 2
    assert fetch.resolve("dataset:toy-gz") == out and fetch.resolve("plain/file.fa") == Path("plain/file.fa")


def test_conversion_that_misses_its_checksum_keeps_nothing(server: _Server, env: Path, monkeypatch) -> None:
    monkeypatch.setattr(convert, "toy_gzip", _gzip_copy, raising=False)
    monkeypatch.setitem(convert.VERSIONS, "toy_gzip", 1)
    register(monkeypatch, server)
    monkeypatch.setitem(fetch.DATASETS, "toy-gz", Dataset("toy-gz", "dna", "d", "CC0", "c", "o", convert="toy_gzip",
                                                          output="toy.fa.gz", output_sha256="f" * 64,
                                                          derived_from=("toy",)))
    assert "the result was not kept" in one_line_error(fetch.dataset_path, "toy-gz")
    assert not (env / "datasets/toy-gz/toy.fa.gz").exists()


# ---------------------------------------------------------------------------------------- CLI


def cli(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return int(exc.value.code or 0)


def test_cli_data_path_and_fetch(server: _Server, env: Path, monkeypatch, capsys) -> None:
    register(monkeypatch, server)
    assert cli(["data", "path", "toy"]) == 0
    assert capsys.readouterr().out.strip() == str(env / "datasets/toy/toy.fa")
    assert cli(["data", "fetch", "toy"]) == 0
    assert capsys.readouterr().out.strip() == f"toy: {env / 'datasets/toy/toy.fa'}"


def test_cli_errors_are_one_line_without_traceback(env: Path, tmp_path: Path, capsys) -> None:
    for argv in (["data", "path", "nope"], ["--mirror", str(tmp_path / "absent"), "data", "list"], ["data", "fetch"]):
        assert cli(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err


def test_cli_list_shows_every_dataset(env: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert cli(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in fetch.DATASETS:
        assert name in out
    assert "mirror-only" in out and "missing" in out
