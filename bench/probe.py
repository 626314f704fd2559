"""Layer-wise linear probing: biofm's batched `probe_layers` against the obvious scikit-learn loop.

    python bench/probe.py [--n 20000] [--dim 256] [--layers 10] [--folds 10] [--classes 3] [--json]

One reproducible synthetic embedding tensor [n, layers, dim] (float32, seed 0) with `--classes` labels:
every layer mixes a shared low-rank, anisotropic "background" (as real transformer embeddings are),
per-feature scales and offsets (so standardisation matters) and a class signal whose strength rises and
falls with depth, so the best layer is an intermediate one. Folds: stratified `--folds`-fold CV.

Timed in the same run, on the same folds:

* biofm: `probe_layers(X, y, folds, "classification", kind="logreg", C=1.0)`: all folds of a layer in one
  batched, preconditioned L-BFGS.
* sklearn: for each layer, for each fold, `StandardScaler` fit on the train rows, then
  `LogisticRegression(C=1.0, max_iter=1000)` (default lbfgs, tol=1e-4) fit/predict.

Accuracy and MCC are computed per layer per fold for both; the reported difference is the largest
absolute gap over all (layer, fold) pairs. The reference loop always runs in full. That gap is mostly
the baseline's own: lbfgs at sklearn's default tol=1e-4 stops short of the optimum. `--tight-check`
shows it, comparing both against sklearn run to tol=1e-10 on a few (layer, fold) pairs.

Threads: torch uses `--threads` (default: the CPU cores this process may use). scikit-learn's lbfgs
loss runs OpenMP loops; on a machine shared with other jobs, OpenMP's busy-waiting can make it an order
of magnitude slower with several threads than with one (OMP_WAIT_POLICY=PASSIVE, set here unless already
set, removes only part of that). So before the loop, one (layer, fold) fit is
timed with 1 thread and with `--threads` threads, and the loop uses the faster setting (reported);
`--sklearn-threads N` fixes it instead. The baseline is therefore never handicapped by threading.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# `python bench/probe.py` puts bench/ first on sys.path, where bench/tokenize.py would shadow the stdlib
# `tokenize` module that torch's import needs. Drop that entry first.
_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if (str(Path(p).resolve()) if p else "") != _HERE]

# Idle OpenMP threads of both torch and scikit-learn otherwise spin on the cores they share with the main
# thread (and with any other job), which on a busy machine slows everything. Applies to both sides alike.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import accuracy_score, matthews_corrcoef  # noqa: E402
from sklearn.model_selection import StratifiedKFold  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from biofm.eval.probe import probe_layers  # noqa: E402


def make_embeddings(n: int, n_layers: int, dim: int, n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic [n, layers, dim] float32 embeddings whose class signal peaks at mid depth."""
    rng = np.random.default_rng(seed)
    prior = np.linspace(2.0, 1.0, n_classes)
    y = rng.choice(n_classes, size=n, p=prior / prior.sum())
    rank = min(32, dim)
    background = rng.standard_normal((n, rank)).astype(np.float32)
    class_means = rng.standard_normal((n_classes, 8)).astype(np.float32)
    X = np.empty((n, n_layers, dim), np.float32)
    for layer in range(n_layers):
        strength = 0.02 + 0.1 * np.sin(np.pi * (layer + 0.5) / n_layers)
        mix = (rng.standard_normal((rank, dim)) * (0.9 ** np.arange(rank))[:, None]).astype(np.float32)
        signal = rng.standard_normal((8, dim)).astype(np.float32) / np.sqrt(8)
        scale = np.exp(rng.normal(0.0, 1.0, dim)).astype(np.float32)
        offset = rng.normal(0.0, 3.0, dim).astype(np.float32)
        noise = rng.standard_normal((n, dim), dtype=np.float32)
        X[:, layer] = (background @ mix + strength * (class_means[y] @ signal) + noise) * scale + offset
    return X, y


def sklearn_fit_predict(X: np.ndarray, y: np.ndarray, layer: int, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    scaler = StandardScaler().fit(X[train, layer])
    model = LogisticRegression(C=1.0, max_iter=1000).fit(scaler.transform(X[train, layer]), y[train])
    return model.predict(scaler.transform(X[test, layer]))


def tight_check(
    X: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], ours: dict, layers: list[int]
) -> list[dict[str, Any]]:
    """Both sides against sklearn converged to tol=1e-10 on fold 0: shows whose error the metric gap is."""
    rows = []
    tr, te = folds[0]
    for layer in layers:
        scaler = StandardScaler().fit(X[tr, layer])
        Xtr, Xte = scaler.transform(X[tr, layer]), scaler.transform(X[te, layer])
        default = LogisticRegression(C=1.0, max_iter=1000).fit(Xtr, y[tr]).predict_proba(Xte)  # as in the loop
        # The reference in float64: in float32 (what float32 input gives) lbfgs cannot get near tol=1e-10.
        Xtr, Xte = Xtr.astype(np.float64), Xte.astype(np.float64)
        tight = LogisticRegression(C=1.0, max_iter=100_000, tol=1e-10).fit(Xtr, y[tr]).predict_proba(Xte)
        mine = ours[layer][0].proba
        rows.append(
            {
                "layer": layer,
                "biofm_max_abs_proba_diff": float(np.abs(mine - tight).max()),
                "biofm_pred_flips": int((mine.argmax(1) != tight.argmax(1)).sum()),
                "sklearn_default_max_abs_proba_diff": float(np.abs(default - tight).max()),
                "sklearn_default_pred_flips": int((default.argmax(1) != tight.argmax(1)).sum()),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--layers", type=int, default=10)
    ap.add_argument("--folds", type=int, default=10)
    ap.add_argument("--classes", type=int, default=3)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    ap.add_argument("--threads", type=int, default=cores, help="torch threads (default: usable cores)")
    ap.add_argument("--sklearn-threads", type=int, default=0, help="OpenMP threads for sklearn (0: calibrate)")
    ap.add_argument(
        "--tight-check",
        action="store_true",
        help="also compare both against sklearn run to tol=1e-10 (fold 0 of the first, middle and last layer)",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    X, y = make_embeddings(args.n, args.layers, args.dim, args.classes)
    folds = list(StratifiedKFold(args.folds, shuffle=True, random_state=0).split(np.zeros(args.n), y))
    print(
        f"data: {args.n} x {args.layers} layers x {args.dim} dims float32, {args.classes} classes "
        f"(counts {np.bincount(y).tolist()}), stratified {args.folds}-fold CV, seed 0 "
        f"(built in {time.perf_counter() - t0:.1f}s)"
    )

    if args.sklearn_threads > 0:
        sk_threads, calib = args.sklearn_threads, {}
    else:
        calib = {}
        for threads in sorted({1, args.threads}):
            with threadpool_limits(threads):
                t = time.perf_counter()
                sklearn_fit_predict(X, y, args.layers // 2, *folds[0])
                calib[threads] = time.perf_counter() - t
        sk_threads = min(calib, key=calib.__getitem__)
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
        f"scikit-learn {__import__('sklearn').__version__}; usable cores: {cores}; torch threads: "
        f"{torch.get_num_threads()}; sklearn OpenMP/BLAS threads: {sk_threads}; "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}"
        + (
            " (one fit timed at " + ", ".join(f"{k} thread(s): {v:.2f}s" for k, v in calib.items()) + ")"
            if calib
            else ""
        )
    )

    t = time.perf_counter()
    ours = probe_layers(X, y, folds, "classification", kind="logreg", C=1.0)
    biofm_s = time.perf_counter() - t
    print(f"biofm probe_layers(logreg): {biofm_s:.2f}s for {args.layers} layers x {args.folds} folds")

    sk_preds: dict[int, list[np.ndarray]] = {}
    t = time.perf_counter()
    with threadpool_limits(sk_threads):
        for layer in range(args.layers):
            sk_preds[layer] = [sklearn_fit_predict(X, y, layer, tr, te) for tr, te in folds]
    sklearn_s = time.perf_counter() - t
    print(f"sklearn loop (StandardScaler + LogisticRegression lbfgs): {sklearn_s:.2f}s")

    acc = np.zeros((2, args.layers, args.folds))
    mcc = np.zeros((2, args.layers, args.folds))
    agree, n_test = 0, 0
    for layer in range(args.layers):
        for f, (_, te) in enumerate(folds):
            for k, pred in enumerate((ours[layer][f].pred, sk_preds[layer][f])):
                acc[k, layer, f] = accuracy_score(y[te], pred)
                mcc[k, layer, f] = matthews_corrcoef(y[te], pred)
            agree += int((ours[layer][f].pred == sk_preds[layer][f]).sum())
            n_test += len(te)
    d_acc = float(np.abs(acc[0] - acc[1]).max())
    d_mcc = float(np.abs(mcc[0] - mcc[1]).max())

    print(
        f"{'layer':>5}  {'acc biofm':>9} {'acc sklearn':>11}  {'MCC biofm':>9} {'MCC sklearn':>11}  (mean over folds)"
    )
    for layer in range(args.layers):
        print(
            f"{layer:>5}  {acc[0, layer].mean():>9.4f} {acc[1, layer].mean():>11.4f}  "
            f"{mcc[0, layer].mean():>9.4f} {mcc[1, layer].mean():>11.4f}"
        )
    ratio = sklearn_s / biofm_s
    print(
        f"biofm {biofm_s:.2f}s, sklearn {sklearn_s:.2f}s, ratio sklearn/biofm {ratio:.1f}x; "
        f"max |metric diff| per layer per fold: accuracy {d_acc:.2e}, MCC {d_mcc:.2e}; "
        f"identical test predictions: {agree}/{n_test} ({agree / n_test:.4%})"
    )
    summary = {
        "biofm_s": round(biofm_s, 3),
        "sklearn_s": round(sklearn_s, 3),
        "ratio": round(ratio, 2),
        "max_abs_metric_diff": max(d_acc, d_mcc),
        "max_abs_acc_diff": d_acc,
        "max_abs_mcc_diff": d_mcc,
        "prediction_agreement": agree / n_test,
        "n": args.n,
        "dim": args.dim,
        "layers": args.layers,
        "folds": args.folds,
        "classes": args.classes,
        "torch_threads": torch.get_num_threads(),
        "sklearn_threads": sk_threads,
    }
    if args.tight_check:
        with threadpool_limits(sk_threads):
            checks = tight_check(X, y, folds, ours, sorted({0, args.layers // 2, args.layers - 1}))
        n_te = len(folds[0][1])
        for c in checks:
            print(
                f"vs sklearn tol=1e-10, layer {c['layer']}, fold 0 ({n_te} test rows): "
                f"biofm max|dproba| {c['biofm_max_abs_proba_diff']:.1e}, {c['biofm_pred_flips']} flipped; "
                f"sklearn default max|dproba| {c['sklearn_default_max_abs_proba_diff']:.1e}, "
                f"{c['sklearn_default_pred_flips']} flipped"
            )
        summary["tight_check"] = checks
    if args.json:
        print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
