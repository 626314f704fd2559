"""Bad input: one line naming the file/record/line and what is wrong, non-zero exit, no traceback."""

import gzip
import subprocess
import sys
import textwrap

import pytest

from biofm.cli import main


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def _config(tmp_path, fasta, extra=""):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        name: t
        run_dir: {tmp_path / 'run'}
        data: {{fasta: [{fasta}], cache_dir: {tmp_path / 'cache'}, split: region, region_bp: 1000}}
        tokenizer: {{k: 1}}
        model: {{preset: tiny, block_tokens: 64}}
        train: {{steps: 2, global_batch_tokens: 256, micro_batch_size: 4, eval_every: 2, log_every: 1}}
        """) + extra)
    return cfg


def _assert_one_line(code, err, *needles):
    assert code not in (0, None)
    lines = [x for x in err.strip().splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]


BAD_FASTA = {
    "missing.fa": None,
    "empty.fa": b"",
    "norecords.fa": b"\n\n\n",
    "binary.fa": bytes(range(256)) * 4,
    "iupac.fa": b">r1\nACGTACGT\nACGJACGT\n",
    "notfasta.fa": b"hello world\nthis is text\n",
}


@pytest.mark.parametrize("name", sorted(BAD_FASTA))
def test_bad_fasta_gives_one_line(tmp_path, capsys, name):
    path = tmp_path / name
    if BAD_FASTA[name] is not None:
        path.write_bytes(BAD_FASTA[name])
    code, _, err = run_cli(["pretrain", str(_config(tmp_path, path))], capsys)
    _assert_one_line(code, err, name)


def test_truncated_gz(tmp_path, capsys):
    data = gzip.compress(b">r1\n" + b"ACGT" * 5000 + b"\n")
    path = tmp_path / "cut.fa.gz"
    path.write_bytes(data[: len(data) // 2])
    code, _, err = run_cli(["pretrain", str(_config(tmp_path, path))], capsys)
    _assert_one_line(code, err, "cut.fa.gz")


def test_bed_interval_outside_reference(tmp_path, capsys):
    ref = tmp_path / "ref.fa"
    ref.write_text(">chr1\n" + "ACGT" * 500 + "\n")
    bed = tmp_path / "regions.bed"
    bed.write_text("chr1\t0\t100\nchr1\t1900\t2500\n")
    cfg = _config(tmp_path, ref)
    cfg.write_text(cfg.read_text().replace("split: region", f"split: region, bed: {bed}"))
    code, _, err = run_cli(["pretrain", str(cfg)], capsys)
    _assert_one_line(code, err, "regions.bed", "line 2")


def test_unknown_config_key(tmp_path, capsys):
    cfg = _config(tmp_path, tmp_path / "x.fa", "bogus: 1\n")
    code, _, err = run_cli(["pretrain", str(cfg)], capsys)
    _assert_one_line(code, err, "cfg.yaml", "bogus")


def test_wrong_type_in_override(tmp_path, capsys):
    cfg = _config(tmp_path, tmp_path / "x.fa")
    code, _, err = run_cli(["pretrain", str(cfg), "--set", "train.steps=many"], capsys)
    _assert_one_line(code, err, "train.steps")


def test_missing_config(tmp_path, capsys):
    code, _, err = run_cli(["pretrain", str(tmp_path / "nope.yaml")], capsys)
    _assert_one_line(code, err, "nope.yaml")


def test_debug_shows_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "biofm", "pretrain", str(tmp_path / "nope.yaml"), "--debug"],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "biofm", "pretrain", str(tmp_path / "nope.yaml")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "nope.yaml" in proc.stderr
