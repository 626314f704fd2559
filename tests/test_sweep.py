"""`biofm sweep`: grid points as ordinary, resumable run folders; the scaling fit recovers a known law."""

import csv
import json
import math

import numpy as np
import pytest
import yaml

from biofm.cli import main
from biofm.errors import BiofmError
from biofm.sweep import SweepConfig, fit_loss, parse_grid, point_name, points


def _genome(path, n_records: int, length: int) -> None:
    rng = np.random.default_rng(0)
    with open(path, "w") as fh:
        for r in range(n_records):
            # a repeated motif among random bases: something a context model can learn
            seq = "".join("ATGGCGTTAACC" if rng.random() < 0.5 else "".join(rng.choice(list("ACGT"), 3))
                          for _ in range(length // 8))
            fh.write(f">chr{r}\n{seq}\n")


def test_grid_is_the_product_of_parsed_values():
    grid = parse_grid(["model.preset=tiny,small", "train.steps=100,200"])
    assert grid == {"model.preset": ["tiny", "small"], "train.steps": [100, 200]}
    pts = points(grid)
    assert len(pts) == 4 and pts[1] == {"model.preset": "tiny", "train.steps": 200}
    assert point_name(3, pts[3]) == "p03-preset=small-steps=200"
    with pytest.raises(BiofmError, match="expected key=v1,v2"):
        parse_grid(["train.steps"])
    with pytest.raises(ValueError):
        SweepConfig(base="demo", grid={})


def test_fit_recovers_a_known_scaling_law():
    E, A, alpha, B, beta = 1.2, 0.5, 0.4, 0.8, 0.3
    rows = [{"params": n, "tokens": d, "eval_loss": E + A * (n / 1e5) ** -alpha + B * (d / 1e6) ** -beta}
            for n in (1e5, 4e5, 1.6e6) for d in (1e6, 4e6, 1.6e7)]
    fit = fit_loss(rows, "eval_loss", floor=3.0)
    assert fit is not None and fit["rmse"] < 1e-4
    assert fit["E"] == pytest.approx(E, abs=0.02) and fit["alpha"] == pytest.approx(alpha, abs=0.02)
    truth = E + A * (6.4e6 / 1e5) ** -alpha + B * (1.6e7 / 1e6) ** -beta
    assert fit["next_params"] == 6.4e6 and fit["next_loss"] == pytest.approx(truth, abs=1e-3)
    lo, hi = fit["next_loss_68"]
    assert lo - 1e-3 <= fit["next_loss"] <= hi + 1e-3
    # a single model size cannot separate A/N^a from E: no fit rather than a made-up one
    assert fit_loss([r for r in rows if r["params"] == 1e5] * 3, "eval_loss", floor=3.0) is None


def test_sweep_runs_resumes_and_writes_its_table(tmp_path, capsys):
    _genome(tmp_path / "g.fa", n_records=2, length=4000)
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({
        "name": "base", "data": {"fasta": [str(tmp_path / "g.fa")], "cache_dir": str(tmp_path / "cache"),
                                 "region_bp": 2000, "val_fraction": 0.25},
        "tokenizer": {"k": 2}, "model": {"preset": "tiny", "block_tokens": 64},
        "train": {"steps": 4, "global_batch_tokens": 512, "micro_batch_size": 4, "eval_every": 2, "log_every": 2,
                  "checkpoint_every": 2, "warmup_steps": 1}}))
    args = ["sweep", "--base", str(base), "--grid", "train.steps=2,4", "--out", str(tmp_path / "sweep")]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code in (0, None)
    result = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    rows = result["points"]
    assert [r["train.steps"] for r in rows] == [2, 4]
    assert [r["tokens"] for r in rows] == [2 * 512, 4 * 512]  # D follows the grid
    assert all(math.isfinite(r["eval_loss"]) and r["baseline"] > 0 for r in rows)
    for r in rows:
        summary = json.loads((tmp_path / "sweep" / "points" / r["point"] / "summary.json").read_text())
        assert summary["final_eval_loss"] == r["eval_loss"]
    assert "no scaling fit" in result["fit_sentence"]  # two points cannot fit five parameters
    with open(tmp_path / "sweep" / "sweep.csv") as fh:
        assert [row["point"] for row in csv.DictReader(fh)] == [r["point"] for r in rows]
    assert (tmp_path / "sweep" / "sweep.png").stat().st_size > 0
    capsys.readouterr()

    # again: both points are kept, not retrained
    with pytest.raises(SystemExit):
        main(args)
    assert capsys.readouterr().err.count("finished earlier; kept") == 2
    # the same folder with another base for a finished point is refused, not silently mixed
    with pytest.raises(SystemExit) as exc:
        main([*args, "--point-set", "train.lr=0.01"])
    assert exc.value.code == 2 and "finished with another train.lr" in capsys.readouterr().err
    assert np.isfinite(rows[0]["gain"])
