"""`biofm sweep`: a grid of pretraining runs, each judged by its honest loss and, optionally, downstream.

Every grid point is an ordinary run folder (`OUT/points/NAME/`), so a point can be inspected, rerun
and resumed like any other run: a sweep that is stopped and started again skips the finished points,
resumes the interrupted one from its last checkpoint and evaluates whatever has no results yet.

What is collected per point: parameters N, training tokens D, minutes, the honest eval loss against
the context-free (unigram) baseline and the doctor's verdict; bits per base where the modality reports
them (so runs with different tokenizers compare); and, with `evaluate:`, the downstream score of the
model's best method against its random-weights twin (paired over the shared folds) and against the
best baseline.

With enough points the loss is fitted with the saturating power law of Hoffmann et al. (2022),
L(N, D) = E + A / N^α + B / D^β, E held between 0 and the unigram floor, and the fit predicts the
loss of the next size up (4 N at the largest D) with a bootstrap interval over the points.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import Field, field_validator

from biofm import config as cfgmod
from biofm.config import Schema
from biofm.errors import BiofmError
from biofm.io.atomic import atomic_path, write_json, write_text

MIN_FIT_POINTS = 6  # 5 parameters: fewer points leave no residual to judge the fit by
NEXT_SIZE = 4.0  # "the next size up" = 4x the largest parameter count (≈ one preset step)


class SweepConfig(Schema):
    """One sweep. Points are the product of the grid's values, applied to the base config in order."""

    base: str = Field(..., description="the pretraining config every point starts from: a YAML path, or "
                                       "'demo' / 'demo:MODALITY' for the demo's settings")
    base_set: list[str] = Field(default_factory=list, description="overrides applied to the base for every point, "
                                                                    "e.g. train.eval_every=100")
    grid: dict[str, list[Any]] = Field(..., description="config key -> the values to try, e.g. "
                                                        "{model.preset: [tiny, small], train.steps: [200, 800]}")
    out: str = Field("runs/sweep", description="the sweep folder: points/NAME/ run folders, sweep.json, sweep.csv, "
                                               "sweep.png, report.html")
    evaluate: dict[str, Any] | None = Field(
        None, description="`biofm evaluate` settings for every point (tasks, folds, probes, ...; model and out are "
                          "filled in); the random-weights control runs unless control: false. None: loss only")
    fit: bool = Field(True, description="fit L(N, D) = E + A/N^a + B/D^b when there are enough points")

    @field_validator("grid")
    @classmethod
    def _non_empty(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if not v:
            raise ValueError("grid: give at least one key with values, e.g. train.steps: [100, 200]")
        for key, values in v.items():
            if not values:
                raise ValueError(f"grid.{key}: no values")
        return v


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """`--grid key=v1,v2` options → {key: [v1, v2]}; each value parsed as YAML (numbers, true, null)."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key or not raw:
            raise BiofmError(f"--grid {item!r}: expected key=v1,v2,..., e.g. --grid train.steps=100,200")
        grid[key.strip()] = [yaml.safe_load(v) for v in raw.split(",")]
    return grid


def points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(grid[k] for k in keys))]


def point_name(i: int, values: dict[str, Any]) -> str:
    """p03-model.preset=small-train.steps=800: readable, unique (the index), safe as a folder name."""
    parts = [f"{k.split('.')[-1]}={v}" for k, v in values.items()]
    return re.sub(r"[^A-Za-z0-9_.=+-]", "_", f"p{i:02d}-" + "-".join(parts))[:120]


def _base_data(cfg: SweepConfig) -> dict[str, Any]:
    if cfg.base == "demo" or cfg.base.startswith("demo:"):
        from biofm.modality import get as get_modality

        m = get_modality(cfg.base.partition(":")[2] or "dna")
        return m.resolve(m.demo).pretrain_settings(Path(cfg.out) / "points" / "base")
    return cfgmod.read_yaml(cfg.base)


def point_config(cfg: SweepConfig, name: str, values: dict[str, Any]) -> Any:
    from biofm.pretraining import build_config_for

    data = cfgmod.apply_overrides(_base_data(cfg), cfg.base_set, "base_set")
    for key, value in values.items():
        data = cfgmod.apply_overrides(data, [f"{key}={json.dumps(value)}"], f"grid.{key}")
    data["name"], data["run_dir"] = name, str(Path(cfg.out) / "points" / name)
    return build_config_for(data, f"sweep point {name}")


def _pretrain_point(pcfg: Any, say: Any) -> Path:
    """Train the point, or resume it, or skip it when it finished with this very config."""
    from biofm.pretraining import build_config_for, run
    from biofm.train.run_folder import config_changes

    run_dir = pcfg.resolved_run_dir()
    summary = run_dir / "summary.json"
    finished = (summary.is_file() and (run_dir / "model").is_dir()
                and json.loads(summary.read_text()).get("status") == "finished")
    if finished:
        stored = build_config_for(cfgmod.read_yaml(run_dir / "config.yaml"), str(run_dir / "config.yaml"))
        changed = config_changes(stored.model_dump(mode="json"), pcfg.model_dump(mode="json"))
        if changed:
            raise BiofmError(f"{run_dir}: this point finished with another {', '.join(changed)}; give the sweep "
                             "a new out folder (or delete the point's folder)")
        say(f"{run_dir.name}: finished earlier; kept")
        return run_dir
    started = run_dir.is_dir() and any(run_dir.iterdir())
    say(f"{run_dir.name}: {'resuming' if started else 'pretraining'}")
    return run(pcfg, resume=started, progress=False)


def _evaluate_point(cfg: SweepConfig, run_dir: Path, say: Any) -> dict[str, Any] | None:
    if cfg.evaluate is None:
        return None
    from biofm.eval.evaluate import EvaluateConfig, run_evaluation

    out = run_dir / "eval"
    ecfg = cfgmod.build(EvaluateConfig, {**cfg.evaluate, "model": str(run_dir / "model"), "out": str(out)},
                        "sweep evaluate")
    done = out / "results.json"
    if done.is_file() and json.loads(done.read_text()).get("config") == ecfg.model_dump(mode="json"):
        say(f"{run_dir.name}: evaluated earlier with these settings; kept")
    else:
        say(f"{run_dir.name}: evaluating")
        run_evaluation(ecfg)
    return json.loads(done.read_text())


def downstream_row(results: dict[str, Any]) -> dict[str, Any]:
    """Per task: best model method, its random-weights twin, the paired gain, the best baseline."""
    row: dict[str, Any] = {}
    for t in results["tasks"]:
        name, metric = t["task"], t["headline_metric"]
        v = t.get("verdict") or {}
        gains = t.get("pretraining_gain") or []
        # the model's best method against the control's best method (biofm.eval.control)
        best = next((g for g in gains if g["method"].startswith("best: ")), None)
        row[f"{name}:model"] = v.get("model_mean", best["model_mean"] if best else math.nan)
        row[f"{name}:method"] = v.get("model_method", best["method"] if best else "")
        row[f"{name}:baseline"] = v.get("baseline_mean", math.nan)
        row[f"{name}:vs_baseline"] = v.get("outcome", "")
        if best is not None:
            row[f"{name}:control"] = best["control_mean"]
            row[f"{name}:paired_gain"] = best.get("paired_gain_mean", best["gain"])
            row[f"{name}:gain_ci"] = (f"{best['paired_ci_low']:+.3f}..{best['paired_ci_high']:+.3f}"
                                      if "paired_ci_low" in best else "")
            row[f"{name}:pretraining"] = best["outcome"]
        row[f"{name}:metric"] = metric
    return row


def point_row(name: str, values: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    s = json.loads((run_dir / "summary.json").read_text())
    ref = s.get("baseline_reference", "unigram")
    row = {"point": name, **values, "params": s.get("params"), "tokens": s.get("tokens_seen"),
           "train_minutes": (s.get("train_seconds") or math.nan) / 60,
           "eval_loss": s.get("final_eval_loss"), "baseline": s.get(f"baseline_{ref}"), "baseline_name": ref,
           "gain": s.get("eval_gain"), "gain_se": s.get("eval_gain_se"),
           "bits_per_base": s.get("final_eval_bits_per_base"),
           "baseline_bits_per_base": s.get(f"baseline_{ref}_bits_per_base"),
           "verdict": (s.get("health") or {}).get("verdict", "")}
    return row


def fit_loss(rows: list[dict[str, Any]], key: str, floor: float, seed: int = 0) -> dict[str, Any] | None:
    """Fit L(N, D) = E + A/N^α + B/D^β to the points' `key`; None when the points cannot determine it.

    Least squares on the loss with E in [0, floor] (no model does worse than the context-free floor in
    the limit), α and β in [0.05, 2]; the next size up (4 N at the largest D) is predicted with a 68%
    interval from 200 bootstrap refits over the points."""
    from scipy.optimize import curve_fit

    pts = [(float(r["params"]), float(r["tokens"]), float(r[key])) for r in rows
           if r.get(key) is not None and math.isfinite(float(r[key])) and r.get("params") and r.get("tokens")]
    if len(pts) < MIN_FIT_POINTS or len({p[0] for p in pts}) < 2 or len({p[1] for p in pts}) < 2:
        return None
    N, D, L = (np.array(c) for c in zip(*pts, strict=True))
    n0, d0 = N.min(), D.min()  # scale so that A and B are of the order of the loss

    def law(x: tuple[np.ndarray, np.ndarray], e: float, a: float, alpha: float, b: float, beta: float) -> np.ndarray:
        n, d = x
        return e + a * (n / n0) ** -alpha + b * (d / d0) ** -beta

    lo, hi = [0.0, 0.0, 0.05, 0.0, 0.05], [max(floor, 1e-6), 10 * floor + 10, 2.0, 10 * floor + 10, 2.0]
    p0 = [0.8 * L.min(), max(L.max() - L.min(), 1e-3), 0.3, max(L.max() - L.min(), 1e-3), 0.3]

    def fit(n: np.ndarray, d: np.ndarray, y: np.ndarray) -> np.ndarray | None:
        try:
            params, _ = curve_fit(law, (n, d), y, p0=np.clip(p0, lo, hi), bounds=(lo, hi), maxfev=20000)
        except (RuntimeError, ValueError):
            return None
        return params

    params = fit(N, D, L)
    if params is None:
        return None
    nxt = (NEXT_SIZE * N.max(), D.max())
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(200):
        i = rng.integers(0, len(N), len(N))
        if len(set(N[i])) < 2 or len(set(D[i])) < 2:
            continue
        p = fit(N[i], D[i], L[i])
        if p is not None:
            boots.append(float(law((np.array([nxt[0]]), np.array([nxt[1]])), *p)[0]))
    pred = float(law((np.array([nxt[0]]), np.array([nxt[1]])), *params)[0])
    resid = L - law((N, D), *params)
    return {"loss": key, "E": float(params[0]), "A": float(params[1]), "alpha": float(params[2]),
            "B": float(params[3]), "beta": float(params[4]), "N0": float(n0), "D0": float(d0),
            "rmse": float(np.sqrt(np.mean(resid ** 2))), "points": len(N),
            "next_params": float(nxt[0]), "next_tokens": float(nxt[1]), "next_loss": pred,
            "next_loss_68": [float(np.percentile(boots, 16)), float(np.percentile(boots, 84))] if len(boots) > 20
            else None}


def fit_sentence(fit: dict[str, Any] | None, floor: float) -> str:
    if fit is None:
        return (f"no scaling fit: it needs at least {MIN_FIT_POINTS} finished points with at least 2 parameter "
                "counts and 2 token counts")
    band = (f" (68% bootstrap interval {fit['next_loss_68'][0]:.4f}-{fit['next_loss_68'][1]:.4f})"
            if fit["next_loss_68"] else " (too few distinct bootstrap fits for an interval)")
    return (f"L(N, D) = {fit['E']:.4f} + {fit['A']:.3g}/(N/{fit['N0']:.3g})^{fit['alpha']:.2f} + "
            f"{fit['B']:.3g}/(D/{fit['D0']:.3g})^{fit['beta']:.2f} ({fit['loss']}, rmse {fit['rmse']:.4f} over "
            f"{fit['points']} points); predicted at {fit['next_params']:.3g} parameters and {fit['next_tokens']:.3g} "
            f"tokens: {fit['next_loss']:.4f}{band}, against the context-free floor {floor:.4f}")


def plot_sweep(rows: list[dict[str, Any]], key: str, floor: float, fit: dict[str, Any] | None, dest: Path) -> None:
    """Honest eval loss against training compute (6 N D), one colour per model size, the floor dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r.get(key) is not None and r.get("params") and r.get("tokens")]
    fig, ax = plt.subplots(figsize=(6, 4))
    sizes = sorted({r["params"] for r in done})
    for n in sizes:
        pts = sorted((6 * n * r["tokens"], r[key]) for r in done if r["params"] == n)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=f"N={n / 1e6:.2f}M")
        if fit is not None:
            d = np.geomspace(min(r["tokens"] for r in done), max(r["tokens"] for r in done) * 4, 50)
            y = fit["E"] + fit["A"] * (n / fit["N0"]) ** -fit["alpha"] + fit["B"] * (d / fit["D0"]) ** -fit["beta"]
            ax.plot(6 * n * d, y, ":", color=ax.lines[-1].get_color(), alpha=0.7)
    ax.axhline(floor, ls="--", color="grey", label="context-free baseline")
    ax.set_xscale("log")
    ax.set_xlabel("training compute 6·N·D (FLOPs)")
    ax.set_ylabel(key.replace("_", " "))
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _csv(rows: list[dict[str, Any]]) -> str:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def _report_html(cfg: SweepConfig, rows: list[dict[str, Any]], sentence: str) -> str:
    import html

    from biofm.eval.report import rows_html

    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    table = rows_html([{k: r.get(k, "") for k in keys} for r in rows])
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>biofm sweep</title></head><body>"
            f"<h1>Sweep over {html.escape(', '.join(cfg.grid))}</h1><p>{html.escape(sentence)}</p>"
            f"<img src='sweep.png' alt='loss against compute'>{table}</body></html>\n")


def run_sweep(cfg: SweepConfig, say: Any = print) -> dict[str, Any]:
    """Run (or resume) every point, then collect, fit, plot and write sweep.json / sweep.csv / report.html."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cfgmod.save(cfg, out / "sweep.yaml")
    grid_points = points(cfg.grid)
    named = [(point_name(i, v), v) for i, v in enumerate(grid_points)]
    configs = [point_config(cfg, name, v) for name, v in named]  # every point's config is checked before any runs
    rows = []
    for (name, values), pcfg in zip(named, configs, strict=True):
        say(f"[{len(rows) + 1}/{len(named)}] {name}")
        t0 = time.perf_counter()
        run_dir = _pretrain_point(pcfg, say)
        results = _evaluate_point(cfg, run_dir, say)
        row = point_row(name, values, run_dir)
        row["wall_minutes"] = (time.perf_counter() - t0) / 60
        if results is not None:
            row.update(downstream_row(results))
        rows.append(row)
        # written after every point: a stopped sweep still leaves a table of what is done
        write_text(out / "sweep.csv", _csv(rows))
    key = "bits_per_base" if all(r.get("bits_per_base") is not None for r in rows) else "eval_loss"
    floors = [r["baseline_bits_per_base" if key == "bits_per_base" else "baseline"] for r in rows]
    floor = float(np.nanmin([f for f in floors if f is not None])) if any(f is not None for f in floors) else math.nan
    fit = fit_loss(rows, key, floor) if cfg.fit and math.isfinite(floor) else None
    sentence = fit_sentence(fit, floor)
    plot_sweep(rows, key, floor, fit, out / "sweep.png")
    result = {"config": cfg.model_dump(mode="json"), "loss_key": key, "floor": floor, "fit": fit,
              "fit_sentence": sentence, "points": rows}
    write_json(out / "sweep.json", result)
    write_text(out / "report.html", _report_html(cfg, rows, sentence))
    return result
