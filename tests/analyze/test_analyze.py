"""`biofm analyze` end to end on a tiny model and a synthetic annotated genome: its files, and one-line
refusals of bad input."""

import json

import numpy as np
import pytest
import yaml

from biofm.analyze import AnalyzeConfig
from biofm.cli import main


def _run(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err


def _base(model, fasta, gff, out, tmp_path):
    return ["analyze", "--model", str(model), "--annotation", str(gff), "--fasta", str(fasta), "--out", str(out),
            "--per-class", "8", "--set", "window_bp=16", "--set", "projection=pca", "--set", "region_bp=300",
            "--set", "attention_per_class=2", "--set", f"cache_dir={tmp_path / 'cache'}"]


def test_cli_writes_every_output(tiny_model, annotated_genome, tmp_path, capsys):
    fasta, gff = annotated_genome
    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):  # a task too: a planted 6-mer in half the sequences
        s = list(rng.choice(list("ACGT"), 30))
        if i % 2:
            s[10:16] = list("GGGGGG")
        rows.append(f"{''.join(s)},{i % 2}")
    (tmp_path / "motif.csv").write_text("sequence,label\n" + "\n".join(rows) + "\n")
    (tmp_path / "motif.yaml").write_text(yaml.safe_dump({"name": "motif", "type": "classification",
                                                         "table": "motif.csv"}))
    out = tmp_path / "out"
    code, stdout, err = _run([*_base(tiny_model, fasta, gff, out, tmp_path), "--task", str(tmp_path / "motif.yaml")],
                             capsys)
    assert code in (0, None), err
    assert "report.html" in stdout and "positions/s" in err
    res = json.loads((out / "analysis.json").read_text())
    names = [m["name"] for m in res["layer_maps"]]
    assert names == ["motif", "elements (genome.gff3)"]
    for m in res["layer_maps"]:
        assert len(m["scores"]) == len(m["control_scores"]) == 3 and m["projection"] == "pca"  # embeddings + 2 layers
        assert (out / m["figure"]).is_file() and (out / m["scores_figure"]).is_file()
    elements = res["layer_maps"][1]
    assert elements["sampling"]["window_bp"] == 16 and "priority" in elements["sampling"]["rule"]
    assert any(note.startswith("5'UTR") for note in elements["left_out"])  # 2 windows: fewer than the 5 folds
    assert "5'UTR" not in elements["classes"] and {"CDS", "intron", "intergenic"} <= set(elements["classes"])
    att = res["attention"]
    shares = np.array([att["mass_share"][c] for c in att["classes"]])  # [classes, layers, heads]
    np.testing.assert_allclose(shares.sum(0), 1.0, atol=1e-5)
    lk = res["likelihood"]
    assert lk["positions"] == len(lk["loglik"]) == 300 and lk["end"] - lk["start"] + 1 == 300
    assert lk["positions_per_s"] > 0 and lk["record"] == "chrA"
    html = (out / "report.html").read_text()
    assert "<section class='biofm-analyze'>" in html and html.count("data:image/png;base64") == 6
    saved = AnalyzeConfig.model_validate(yaml.safe_load((out / "analyze.yaml").read_text()))
    assert saved.per_class == 8 and saved.tasks == [str(tmp_path / "motif.yaml")]
    assert not list(out.glob(".*tmp*"))  # atomic writes leave no temporary files


def _assert_one_line(code, err, *needles):
    lines = [x for x in err.strip().splitlines() if x.strip()]
    assert code not in (0, None) and len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]


def test_a_region_outside_its_record_is_one_line(tiny_model, annotated_genome, tmp_path, capsys):
    fasta, gff = annotated_genome
    code, _, err = _run([*_base(tiny_model, fasta, gff, tmp_path / "o", tmp_path), "--region", "chrA:1900-2500"],
                        capsys)
    _assert_one_line(code, err, "chrA:1900-2500", "ends past the end of record 'chrA' (2,000 bp)", "genome.fa")
    code, _, err = _run([*_base(tiny_model, fasta, gff, tmp_path / "o", tmp_path), "--region", "chrQ:1-10"], capsys)
    _assert_one_line(code, err, "record 'chrQ' is not in", "chrA, chrB")


def test_a_gff_record_absent_from_the_fasta_is_one_line(tiny_model, genome_writer, tmp_path, capsys):
    fasta, gff = genome_writer(tmp_path / "bad", extra=(("chrZ", "CDS", 5, 90, "+"),))
    code, _, err = _run(_base(tiny_model, fasta, gff, tmp_path / "o", tmp_path), capsys)
    _assert_one_line(code, err, "genome.gff3, line 14", "record 'chrZ' is not in", "genome.fa")


def test_an_annotation_without_its_genome_is_one_line(tiny_model, annotated_genome, tmp_path, capsys):
    _, gff = annotated_genome
    code, _, err = _run(["analyze", "--model", str(tiny_model), "--annotation", str(gff), "--out", str(tmp_path)],
                        capsys)
    _assert_one_line(code, err, "--annotation and --fasta go together")
