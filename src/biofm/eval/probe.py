"""Probing frozen embeddings, layer by layer and fold by fold, at the cost of a few batched solves.

Nucleotide-Transformer-style probing fits one small supervised model per (layer, CV fold). Fitting them
one at a time with scikit-learn repeats the same work over and over: every fold of a layer reads the
same matrix, and every fit starts cold on an ill-conditioned problem. Here:

* **logreg, classification**: all folds of a layer are solved at once by a batched L-BFGS (one GEMM
  serves every fold; per-fold train masks, never per-fold copies of the data). Each problem keeps its
  own history, step and line search, so they converge independently, as separate fits would.
  The objective is scikit-learn's `LogisticRegression(C=C)` on per-fold `StandardScaler` features:
  sum of log-losses + ||W||² / (2C), intercept unpenalised, binomial for two classes and multinomial
  otherwise. It is solved in a change of variables, W = P·U with P ≈ (Hessian)^-1/2 built from the
  layer's feature covariance, so L-BFGS sees a problem close to the identity and needs 10-25 steps
  where sklearn's lbfgs needs ~100 for a looser tolerance. A change of variables moves the path, not
  the minimiser, so P may be built from all rows (no labels) without leaking anything into a fold's
  fit. Products run in float32 until the gradient is small, then in float64 to the final tolerance.
  Layers go one after another rather than stacked with the folds: the GEMM per layer is the same
  either way, memory stays at one layer, and each layer stops as soon as its own folds converge.
* **logreg, regression**: ridge in closed form on the same per-fold standardised features, batched over
  folds, intercept unpenalised. The loss is the Gaussian negative log-likelihood ½·Σ(y-ŷ)² + ||w||²/(2C),
  the same shape as the logistic objective, which is scikit-learn's `Ridge(alpha=1/C)`
  (Σ(y-ŷ)² + alpha·||w||², i.e. twice ours); so C means the same thing for both, and C=1 is Ridge's
  default alpha=1.
* **mlp**: one weight tensor [layers×folds, ...] per MLP layer, trained with AdamW (decay on weights,
  not biases) through `torch.baddbmm`, so every (layer, fold) network takes its step in the same
  kernels. Features are standardised per fold (train rows); each network stops early on its own
  validation split, carved (stratified, for classification) from its fold's train rows, and keeps its
  best-validation weights. Regression targets are standardised per fold and mapped back.

`tune_probe` picks hyperparameters per outer fold with Optuna, scoring trials by an inner CV run on
that fold's train rows only: it slices them out before anything else, so test rows cannot leak in.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch

from biofm.errors import BiofmError
from biofm.eval.folds import validation_split
from biofm.eval.types import Fold, FoldPrediction, Task, TaskType
from biofm.models.device import current_device

ProbeKind = Literal["logreg", "mlp"]

_F64 = torch.float64
# Rough logistic curvature p(1-p) used to scale the preconditioner; its exact value only affects speed.
_CURV = 0.25
# Gradient max-norm at which the logistic solver switches from float32 to float64 products.
_COARSE_TOL = 1e-4
# Bytes of float32 embeddings the MLP keeps in memory at once; more layers means fewer, wider batches.
_MLP_CHUNK_BYTES = 512 * 2**20


def probe_layers(
    X: np.ndarray,
    labels: np.ndarray,
    folds: list[Fold],
    task_type: TaskType,
    kind: ProbeKind = "logreg",
    *,
    C: float | Sequence[float] = 1.0,
    hidden: tuple[int, ...] = (128,),
    max_iter: int | None = None,
    seed: int = 0,
    layers: list[int] | None = None,
    tol: float = 1e-6,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    batch_size: int = 256,
    patience: int = 10,
    val_fraction: float = 0.1,
    device: str | torch.device | None = None,
) -> dict[int, list[FoldPrediction]]:
    """Fit a probe on every requested layer × fold and return its test-fold predictions.

    X is [n_examples, n_layers, dim] (a 2-D array is one layer); it may be a float16/float32 memmap, since
    only one layer (logreg) or a bounded chunk of layers (mlp) is materialised at a time. Result keys are
    the entries of `layers` as given (negative ones count from the end), or 0..n_layers-1.

    C: inverse L2 strength for logreg/ridge, one value or one per fold (which is what `tune_probe` picks).
    max_iter: L-BFGS iterations for logreg (default 1000), epochs for mlp (default 200).
    tol: logreg stops a problem when its preconditioned gradient (of the per-sample-mean objective) is
    below this in max-norm; tight enough that the minimiser is reached to far below sklearn's own tol.
    lr, weight_decay, batch_size, patience, val_fraction: mlp only (AdamW, early stopping).
    device: default the current CUDA device inside `on_device("cuda")`, else the CPU (the logistic probes
    solve in float64, which Apple MPS lacks).
    """
    X3 = _as_3d(X)
    n, n_layers, _ = X3.shape
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != n:
        raise BiofmError(f"labels must be 1-D with one value per example ({n}), got shape {y.shape}")
    folds = _check_folds(folds, n)
    n_classes = _check_labels(y, task_type)
    Cs = _per_fold(C, len(folds))
    keys = list(range(n_layers)) if layers is None else [int(layer) for layer in layers]
    sel = list(dict.fromkeys(_check_layers(keys, n_layers)))  # distinct, in order
    if device is None:
        device = current_device() if current_device().type == "cuda" else "cpu"
    dev = torch.device(device)

    by_layer: dict[int, list[FoldPrediction]] = {}
    if kind == "logreg":
        Wt = _train_weights(folds, n, dev)
        for layer in sel:
            sc = _Scaling(X3, layer, Wt)
            if task_type == "classification":
                by_layer[layer] = _logreg_layer(sc, Wt, y, folds, n_classes, Cs, max_iter or 1000, tol)
            else:
                by_layer[layer] = _ridge_layer(sc, Wt, y, folds, Cs)
    elif kind == "mlp":
        if not hidden or any(h < 1 for h in hidden):
            raise BiofmError(f"mlp probe needs at least one hidden layer of positive width, got {hidden}")
        if not 0.0 < val_fraction < 1.0:
            raise BiofmError(f"val_fraction must be in (0, 1), got {val_fraction}")
        by_layer = _mlp_probe(
            X3, y, folds, task_type, n_classes, sel, hidden, max_iter or 200, seed, lr, weight_decay,
            batch_size, patience, val_fraction, dev,
        )  # fmt: skip
    else:
        raise BiofmError(f"unknown probe kind {kind!r}; expected 'logreg' or 'mlp'")
    # Keyed as the caller named them, so `res[layer] for layer in layers` works with -1 too.
    return {key: by_layer[key + n_layers if key < 0 else key] for key in keys}


# ----------------------------------------------------------------------------------------- validation


def _as_3d(X: np.ndarray) -> np.ndarray:
    if X.ndim == 2:
        return X[:, None, :]
    if X.ndim != 3:
        raise BiofmError(f"embeddings must be [n_examples, n_layers, dim] (or [n_examples, dim]), got {X.shape}")
    return X


def _check_folds(folds: list[Fold], n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    if not folds:
        raise BiofmError("no cross-validation folds given")
    out = []
    for i, (train, test) in enumerate(folds):
        tr, te = np.asarray(train, dtype=np.int64), np.asarray(test, dtype=np.int64)
        if tr.size == 0 or te.size == 0:
            raise BiofmError(f"fold {i} has an empty train or test set")
        if min(tr.min(), te.min()) < 0 or max(tr.max(), te.max()) >= n:
            raise BiofmError(f"fold {i} has indices outside 0..{n - 1}")
        out.append((tr, te))
    return out


def _check_labels(y: np.ndarray, task_type: TaskType) -> int:
    if task_type == "regression":
        if not np.all(np.isfinite(y.astype(np.float64))):
            raise BiofmError("regression labels contain NaN or infinite values")
        return 0
    if task_type != "classification":
        raise BiofmError(f"unknown task type {task_type!r}; expected 'classification' or 'regression'")
    if not (np.issubdtype(y.dtype, np.integer) or np.all(np.mod(y, 1) == 0)) or (len(y) and y.min() < 0):
        raise BiofmError("classification labels must be integer class codes 0..C-1")
    n_classes = int(y.max()) + 1
    if n_classes < 2:
        raise BiofmError("classification needs at least two classes")
    return n_classes


def _per_fold(C: float | Sequence[float], n_folds: int) -> np.ndarray:
    Cs = np.full(n_folds, float(C)) if np.isscalar(C) else np.asarray(C, dtype=np.float64)
    if Cs.shape != (n_folds,) or not np.all(Cs > 0):
        raise BiofmError(f"C must be positive: one value or one per fold ({n_folds}), got {C!r}")
    return Cs


def _check_layers(layers: list[int], n_layers: int) -> list[int]:
    sel = []
    for layer in layers:
        idx = layer + n_layers if layer < 0 else layer
        if not 0 <= idx < n_layers:
            raise BiofmError(f"layer {layer} out of range for embeddings with {n_layers} layers")
        sel.append(int(idx))
    return sel


def _train_weights(folds: list[tuple[np.ndarray, np.ndarray]], n: int, dev: torch.device) -> torch.Tensor:
    """[n, F] with 1/n_train on each fold's train rows: fold means and mean losses in one product."""
    w = np.zeros((n, len(folds)))
    for f, (tr, _) in enumerate(folds):
        w[tr, f] = 1.0
    w /= w.sum(0, keepdims=True)
    return torch.from_numpy(w).to(dev)


# ---------------------------------------------------------------------------------- shared scaling


class _Scaling:
    """Per-fold StandardScaler statistics, expressed against one global standardisation of the layer.

    Zg = (X - mean_all) / sd_all is computed once (float64, plus a float32 copy for cheap products);
    fold f's scaler output is then Zg·r_f + const with r_f = sd_all / sd_f, so fold-specific features
    never have to be materialised.
    """

    def __init__(self, X3: np.ndarray, layer: int, Wt: torch.Tensor) -> None:
        eps = torch.finfo(_F64).eps
        # Always a copy (standardised in place below; the caller's array, or memmap, stays untouched).
        Zg = torch.from_numpy(np.array(X3[:, layer, :], dtype=np.float64)).to(Wt.device)
        var_all, mean_all = torch.var_mean(Zg, 0, correction=0)
        if not bool(torch.isfinite(var_all).all()):  # a NaN/inf anywhere in a column survives into its variance
            raise BiofmError(f"embeddings of layer {layer} contain NaN or infinite values")
        sd_all = var_all.sqrt()
        sd_all = torch.where(sd_all < 10 * eps * mean_all.abs().clamp_min(1.0), 1.0, sd_all)
        self.Zg = Zg.sub_(mean_all).div_(sd_all)
        self.Z32 = self.Zg.float()
        self.mean = Wt.T @ self.Zg  # [F, d] fold train means, in Zg units
        # Second moments need no float64: Zg is centred and unit-scaled, so nothing cancels.
        var = ((Wt.T.float() @ self.Z32.square()).double() - self.mean.square()).clamp_min(0.0)
        sd_raw = var.sqrt() * sd_all
        const = sd_raw < 10 * eps * (self.mean * sd_all + mean_all).abs().clamp_min(1.0)
        sd_raw = torch.where(const, 1.0, sd_raw)  # sklearn scales (near-)constant features by 1
        self.r = sd_all / sd_raw  # [F, d]


# ----------------------------------------------------------------------------------- batched L-BFGS


def _lbfgs(
    stages: list[tuple[Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], float, float]],
    x0: torch.Tensor,
    *,
    max_iter: int,
    history: int = 10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise P independent smooth objectives at once; x is [P, m], fun(x) -> (f [P], grad [P, m]).

    Each problem has its own L-BFGS memory, step length and Armijo backtracking, so the batch behaves
    like P separate solvers; only `fun` is shared, and every call advances every unfinished problem
    (an accepted step for some, a shorter trial for others).

    `stages` is [(fun, gtol, ftol), ...]: a cheap, less precise `fun` can take the problems most of the
    way and a precise one finish; the memory carries over, its curvature pairs are still good. A problem
    finishes a stage when its gradient max-norm is <= gtol, or a step lowers f by <= ftol·max(|f|, 1)
    (scipy's criterion; it ends a stage whose f can no longer resolve progress). Returns (x, done mask).
    """
    P, m = x0.shape
    dev, dt = x0.device, x0.dtype
    ar = torch.arange(P, device=dev)
    S = torch.zeros(P, history, m, dtype=dt, device=dev)
    Y = torch.zeros_like(S)
    rho = torch.zeros(P, history, dtype=dt, device=dev)
    slot = torch.zeros(P, dtype=torch.long, device=dev)  # next history slot per problem
    n_hist = torch.zeros(P, dtype=torch.long, device=dev)

    def direction(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        d = _two_loop(g, S, Y, rho, slot, n_hist)
        gd = (g * d).sum(1)
        bad = gd >= 0  # not a descent direction: restart from steepest descent
        return torch.where(bad[:, None], -g, d), torch.where(bad, -(g * g).sum(1), gd), bad

    x = x0.clone()
    done = torch.zeros(P, dtype=torch.bool, device=dev)
    steps_left, evals_left = max_iter, 2 * max_iter
    for fun, gtol, ftol in stages:
        f, g = fun(x)
        done = g.abs().amax(1) <= gtol
        d, gd, bad = direction(g)
        n_hist = torch.where(bad, 0, n_hist)
        t = torch.ones(P, dtype=dt, device=dev)
        while steps_left > 0 and evals_left > 0 and not bool(done.all()):
            active = ~done
            xt = torch.where(active[:, None], x + t[:, None] * d, x)
            ft, gt = fun(xt)
            evals_left -= 1
            ok = active & torch.isfinite(ft) & (ft <= f + 1e-4 * t * gd)
            if bool(ok.any()):
                s, yv = xt - x, gt - g
                sy = (s * yv).sum(1)
                keep = ok & (sy > 1e-10 * s.norm(dim=1) * yv.norm(dim=1))
                ki = ar[keep]
                S[ki, slot[ki]] = s[ki]
                Y[ki, slot[ki]] = yv[ki]
                rho[ki, slot[ki]] = 1.0 / sy[ki]
                slot[ki] = (slot[ki] + 1) % history
                n_hist[ki] = (n_hist[ki] + 1).clamp_max(history)
                stall = f - ft <= ftol * torch.maximum(torch.maximum(f.abs(), ft.abs()), torch.ones_like(f))
                x = torch.where(ok[:, None], xt, x)
                f = torch.where(ok, ft, f)
                g = torch.where(ok[:, None], gt, g)
                done = done | (ok & ((g.abs().amax(1) <= gtol) | stall))
                steps_left -= 1
                dn, gdn, bad = direction(g)
                n_hist = torch.where(ok & bad, 0, n_hist)
                d = torch.where(ok[:, None], dn, d)
                gd = torch.where(ok, gdn, gd)
                t = torch.where(ok, 1.0, t)
            # Backtrack the rest to the minimiser of the quadratic through f, f'·d and f(trial).
            back = active & ~ok
            curv = ft - f - gd * t
            t_q = torch.where(torch.isfinite(curv) & (curv > 0), -gd * t * t / (2 * curv), 0.1 * t)
            t = torch.where(back, torch.minimum(torch.maximum(t_q, 0.1 * t), 0.5 * t), t)
            # A step this short means f cannot be decreased at this stage's resolution: the stage is over.
            done = done | (back & (t < 1e-10))
    return x, done


def _two_loop(
    g: torch.Tensor, S: torch.Tensor, Y: torch.Tensor, rho: torch.Tensor, slot: torch.Tensor, n_hist: torch.Tensor
) -> torch.Tensor:
    P, H, _ = S.shape
    ar = torch.arange(P, device=g.device)
    q = g.clone()
    alphas = []
    for j in range(H):  # newest to oldest
        idx = (slot - 1 - j) % H
        valid = (j < n_hist).to(g.dtype)
        a = rho[ar, idx] * (S[ar, idx] * q).sum(1) * valid
        q -= a[:, None] * Y[ar, idx]
        alphas.append((idx, a, valid))
    newest = (slot - 1) % H
    y_new = Y[ar, newest]
    gamma = torch.where(n_hist > 0, 1.0 / (rho[ar, newest] * (y_new * y_new).sum(1)).clamp_min(1e-300), 1.0)
    r = q * gamma[:, None]
    for idx, a, valid in reversed(alphas):
        b = rho[ar, idx] * (Y[ar, idx] * r).sum(1)
        r += ((a - b) * valid)[:, None] * S[ar, idx]
    return -r


# --------------------------------------------------------------------------------- logistic / ridge


def _logreg_layer(
    sc: _Scaling,
    Wt: torch.Tensor,
    y: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    n_classes: int,
    Cs: np.ndarray,
    max_iter: int,
    tol: float,
) -> list[FoldPrediction]:
    n, d = sc.Zg.shape
    F, dev = len(folds), Wt.device
    K = 1 if n_classes == 2 else n_classes  # sklearn fits binary problems as one binomial model
    on_train = Wt > 0
    lam = torch.from_numpy(1.0 / (Cs * (Wt > 0).sum(0).cpu().numpy())).to(dev)  # per-sample-mean penalty
    yt = torch.from_numpy(y.astype(np.int64)).to(dev)

    # Preconditioner: P = (c·Σ + λI)^-1/2 from the layer's feature correlation Σ (a change of variables
    # only, so the fold optima do not depend on it). The intercept is scaled by 1/sqrt(c) likewise.
    # Weights on Zg are V = P·U; P is applied to the small [d, F·K] side, never to the data.
    evals, evecs = torch.linalg.eigh((sc.Z32.T @ sc.Z32).double() / n)
    Pm = (evecs * (_CURV * evals.clamp_min(0.0) + lam.mean()).rsqrt()) @ evecs.T
    s0 = 1.0 / math.sqrt(_CURV)

    # Classes missing from a fold's train rows get probability 0 there, as sklearn never sees them.
    present = torch.zeros(F, max(K, 1), dtype=torch.bool, device=dev)
    for f, (tr, _) in enumerate(folds):
        present[f, torch.from_numpy(np.unique(y[tr])) if K > 1 else 0] = True
    if K == 1 and any(len(np.unique(y[tr])) < 2 for tr, _ in folds):
        raise BiofmError("a fold's train rows hold a single class; a binary probe needs both")
    logit_mask = torch.where(present, 0.0, -torch.inf).to(_F64)  # [F, K]
    masked = not bool(present.all())
    onehot = torch.nn.functional.one_hot(yt, n_classes).to(_F64)[:, None, :]  # [n, 1, C]
    y_index = yt[:, None, None].expand(n, F, 1)
    y_bin = yt.to(_F64)[:, None, None]
    rinv = (1.0 / sc.r).T[:, :, None]  # [d, F, 1]
    lam3 = lam[None, :, None]

    def weights(xf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(V [d, F·K] on Zg, intercepts [F, K]) from the flat per-problem parameters."""
        xm = xf.view(F, d + 1, K).permute(1, 0, 2)  # [d+1, F, K]
        return Pm @ xm[:d].reshape(d, F * K), s0 * xm[d]

    def make_fun(Z: torch.Tensor) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """Objective and gradient for all folds, computed in Z's precision (float32: the cheap stage)."""
        dt = Z.dtype
        Wt_, lam_, lam3_, rinv_, Pm_ = Wt.to(dt), lam.to(dt), lam3.to(dt), rinv.to(dt), Pm.to(dt)
        onehot_, y_bin_, logit_mask_ = onehot.to(dt), y_bin.to(dt), logit_mask.to(dt)

        def fun(xf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            xm = xf.to(dt).view(F, d + 1, K).permute(1, 0, 2)  # [d+1, F, K]
            V = Pm_ @ xm[:d].reshape(d, F * K)
            z = (Z @ V).view(n, F, K) + s0 * xm[d]
            if K == 1:
                loss = (torch.nn.functional.softplus(z) - y_bin_ * z)[:, :, 0]
                G = torch.sigmoid(z) - y_bin_
            else:
                if masked:
                    z = z + logit_mask_
                zmax = z.amax(2, keepdim=True)
                e = torch.exp(z - zmax)
                tot = e.sum(2, keepdim=True)
                loss = (zmax + tot.log() - z.gather(2, y_index))[:, :, 0]
                G = e.div_(tot).sub_(onehot_)
            fval = torch.where(on_train, loss, 0.0).mul_(Wt_).sum(0, dtype=_F64)
            G = G.mul_(Wt_[:, :, None])
            # Penalty on the standardised-space weights W_f = V_f / r_f.
            W = V.view(d, F, K) * rinv_
            fval = fval + 0.5 * lam_ * W.square().sum((0, 2), dtype=_F64)
            gU = Pm_ @ (Z.T @ G.view(n, F * K) + (lam3_ * W * rinv_).view(d, F * K))
            grad = torch.cat([gU.view(d, F, K), s0 * G.sum(0, keepdim=True)], 0)
            return fval, grad.permute(1, 0, 2).reshape(F, (d + 1) * K).to(_F64)

        return fun

    # Most of the way with float32 GEMMs (2-3x cheaper; their rounding, ~1e-7 in the logits, is far below
    # the coarse tolerance), then float64 to the final tolerance from where float32 left off.
    stages = [(make_fun(sc.Zg), tol, 64 * torch.finfo(_F64).eps)]
    if tol < _COARSE_TOL:
        stages.insert(0, (make_fun(sc.Z32), _COARSE_TOL, 1e-10))
    x, _ = _lbfgs(stages, torch.zeros(F, (d + 1) * K, dtype=_F64, device=dev), max_iter=max_iter)
    V, b = weights(x)
    z = (sc.Zg @ V).view(n, F, K) + b
    out = []
    for f, (_, te) in enumerate(folds):
        zt = z[torch.from_numpy(te).to(dev), f]
        if K == 1:
            p1 = torch.sigmoid(zt[:, 0])
            proba = torch.stack([1 - p1, p1], 1)
            pred = (zt[:, 0] > 0).long()
        else:
            proba = torch.softmax(zt + logit_mask[f], 1)
            pred = proba.argmax(1)
        out.append(FoldPrediction(f, te, pred.cpu().numpy(), proba.cpu().numpy()))
    return out


def _ridge_layer(
    sc: _Scaling, Wt: torch.Tensor, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], Cs: np.ndarray
) -> list[FoldPrediction]:
    """Closed-form ridge on per-fold standardised features: (Z'Z + I/C) w = Z'y on centred train rows."""
    d, dev = sc.Zg.shape[1], Wt.device
    yt = torch.from_numpy(y.astype(np.float64)).to(dev)
    gram_all = sc.Zg.T @ sc.Zg
    grams, rhs = [], []
    for f in range(len(folds)):
        on = Wt[:, f] > 0
        n_f = int(on.sum())
        # Most rows are train rows: subtract the few others from the full Gram instead of rebuilding it.
        Zo = sc.Zg[~on]
        gram = gram_all - Zo.T @ Zo - n_f * torch.outer(sc.mean[f], sc.mean[f])
        resid = torch.where(on, yt - yt[on].mean(), 0.0)
        grams.append(gram * torch.outer(sc.r[f], sc.r[f]) + torch.eye(d, dtype=_F64, device=dev) / Cs[f])
        rhs.append(sc.r[f] * (sc.Zg.T @ resid))
    w = torch.linalg.solve(torch.stack(grams), torch.stack(rhs)[:, :, None])[:, :, 0]  # [F, d]
    out = []
    for f, (_, te) in enumerate(folds):
        on = Wt[:, f] > 0
        ti = torch.from_numpy(te).to(dev)
        pred = ((sc.Zg[ti] - sc.mean[f]) * sc.r[f]) @ w[f] + yt[on].mean()
        out.append(FoldPrediction(f, te, pred.cpu().numpy()))
    return out


# ------------------------------------------------------------------------------------------------ MLP


def _mlp_probe(
    X3: np.ndarray,
    y: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    task_type: TaskType,
    n_classes: int,
    sel: list[int],
    hidden: tuple[int, ...],
    max_epochs: int,
    seed: int,
    lr: float,
    weight_decay: float,
    batch_size: int,
    patience: int,
    val_fraction: float,
    dev: torch.device,
) -> dict[int, list[FoldPrediction]]:
    n, _, dim = X3.shape
    # Each fold's validation rows are keyed by (seed, fold), like every other random draw here.
    labelled = Task(name="probe", type=task_type, inputs=[], labels=y)
    fit_val = [
        validation_split(tr, labelled, val_fraction, int(np.random.default_rng((seed, 0, f)).integers(2**31)),
                         required=True)
        for f, (tr, _) in enumerate(folds)
    ]
    per_chunk = max(1, _MLP_CHUNK_BYTES // max(1, n * dim * 4))
    out: dict[int, list[FoldPrediction]] = {}
    for start in range(0, len(sel), per_chunk):
        chunk = sel[start : start + per_chunk]
        Xc = np.stack([np.asarray(X3[:, layer, :], dtype=np.float32) for layer in chunk])
        if not np.isfinite(Xc).all():
            raise BiofmError(f"embeddings of layers {chunk} contain NaN or infinite values")
        preds = _mlp_chunk(
            torch.from_numpy(Xc).to(dev), chunk, y, folds, fit_val, task_type, n_classes, hidden, max_epochs,
            seed, lr, weight_decay, batch_size, patience,
        )  # fmt: skip
        for i, layer in enumerate(chunk):
            out[layer] = preds[i]
    return out


def _pad_rows(idx_list: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ragged per-fold row lists as [F, max] (padding repeats row 0) plus a validity mask."""
    width = max(len(a) for a in idx_list)
    idx = np.zeros((len(idx_list), width), np.int64)
    mask = np.zeros((len(idx_list), width), bool)
    for f, a in enumerate(idx_list):
        idx[f, : len(a)] = a
        mask[f, : len(a)] = True
    return torch.from_numpy(idx), torch.from_numpy(mask)


def _mlp_chunk(
    Xc: torch.Tensor,
    chunk: list[int],
    y: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    fit_val: list[tuple[np.ndarray, np.ndarray]],
    task_type: TaskType,
    n_classes: int,
    hidden: tuple[int, ...],
    max_epochs: int,
    seed: int,
    lr: float,
    weight_decay: float,
    batch_size: int,
    patience: int,
) -> list[list[FoldPrediction]]:
    """Train Lc×F independent MLPs as one batched model; problem p = layer (p // F), fold (p % F).

    Every random draw is keyed by (seed, layer, fold) and a network stops updating its kept weights once
    its patience runs out, so a layer's result does not depend on which other layers share the batch.
    """
    Lc, _, d = Xc.shape
    F, dev = len(folds), Xc.device
    P = Lc * F
    classify = task_type == "classification"
    fold_rngs = [np.random.default_rng((seed, 1, f)) for f in range(F)]

    # Per-(layer, fold) scaler from the fold's train rows; regression targets standardised the same way.
    mu = torch.empty(Lc, F, d, device=dev)
    sd = torch.empty(Lc, F, d, device=dev)
    for f, (tr, _) in enumerate(folds):
        for li in range(Lc):
            rows = Xc[li, torch.from_numpy(tr).to(dev)].double()
            mu[li, f] = rows.mean(0).float()
            s = rows.std(0, correction=0)
            sd[li, f] = torch.where(s < 10 * torch.finfo(torch.float64).eps, 1.0, s).float()
    if classify:
        yt = torch.from_numpy(y.astype(np.int64)).to(dev)
        y_mean = torch.zeros(F, device=dev)
        y_sd = torch.ones(F, device=dev)
    else:
        yt = torch.from_numpy(y.astype(np.float32)).to(dev)
        y_mean = torch.tensor([float(y[fit].mean()) for fit, _ in fit_val], device=dev)
        y_sd = torch.tensor([float(y[fit].std()) or 1.0 for fit, _ in fit_val], device=dev)

    widths = [d, *hidden, n_classes if classify else 1]
    pairs = list(itertools.pairwise(widths))
    Ws = [torch.empty(P, a, b) for a, b in pairs]
    bs = [torch.empty(P, 1, b) for _, b in pairs]
    for p in range(P):
        gen = torch.Generator().manual_seed(int(np.random.default_rng((seed, 2, chunk[p // F], p % F)).integers(2**62)))
        for (a, _), W, b in zip(pairs, Ws, bs, strict=True):
            bound = 1.0 / math.sqrt(a)  # torch.nn.Linear's default initialisation
            W[p] = (torch.rand(W.shape[1:], generator=gen) * 2 - 1) * bound
            b[p] = (torch.rand(b.shape[1:], generator=gen) * 2 - 1) * bound
    Ws = [W.to(dev).requires_grad_() for W in Ws]
    bs = [b.to(dev).requires_grad_() for b in bs]
    params = Ws + bs
    decays = [weight_decay] * len(Ws) + [0.0] * len(bs)  # no decay on biases
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    n_steps = 0

    def adamw_step() -> None:
        """torch.optim.AdamW's update (betas 0.9/0.999, eps 1e-8), inlined: importing torch.optim pulls in
        torch._dynamo, seconds of import time that dwarf a small probe."""
        nonlocal n_steps
        n_steps += 1
        c1, c2 = 1 - 0.9**n_steps, 1 - 0.999**n_steps
        with torch.no_grad():
            for p, (m, v), wd in zip(params, moments, decays, strict=True):
                g = p.grad
                assert g is not None
                if wd:
                    p.mul_(1 - lr * wd)
                m.lerp_(g, 0.1)
                v.mul_(0.999).addcmul_(g, g, value=0.001)
                p.addcdiv_(m, (v / c2).sqrt_().add_(1e-8), value=-lr / c1)
                p.grad = None

    def forward(rows: torch.Tensor) -> torch.Tensor:
        """rows [F, B] -> outputs [P, B, out] for every layer's copy of those rows."""
        B = rows.shape[1]
        h = ((Xc[:, rows.reshape(-1)].view(Lc, F, B, d) - mu[:, :, None]) / sd[:, :, None]).view(P, B, d)
        for i, (W, b) in enumerate(zip(Ws, bs, strict=True)):
            h = torch.baddbmm(b, h, W)
            if i < len(Ws) - 1:
                h = torch.relu(h)
        return h

    def losses(rows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean loss per problem over the valid entries of rows [F, B] -> [P]."""
        out = forward(rows)
        B = rows.shape[1]
        if classify:
            tgt = yt[rows].expand(Lc, F, B).reshape(P, B)
            per = torch.nn.functional.cross_entropy(out.transpose(1, 2), tgt, reduction="none")
        else:
            tgt = ((yt[rows] - y_mean[:, None]) / y_sd[:, None]).expand(Lc, F, B).reshape(P, B)
            per = (out[:, :, 0] - tgt).square()
        m = mask.to(dev).expand(Lc, F, B).reshape(P, B).to(per.dtype)
        return (per * m).sum(1) / m.sum(1).clamp_min(1.0)

    val_idx, val_mask = _pad_rows([v for _, v in fit_val])
    val_idx, val_mask = val_idx.to(dev), val_mask.to(dev)
    fit_sets = [fit for fit, _ in fit_val]
    steps = max(1, math.ceil(max(len(a) for a in fit_sets) / batch_size))
    best = torch.full((P,), math.inf, device=dev)
    best_epoch = torch.zeros(P, dtype=torch.long, device=dev)
    stopped = torch.zeros(P, dtype=torch.bool, device=dev)
    snap = [t.detach().clone() for t in params]
    for epoch in range(max_epochs):
        # Each fold walks its own shuffled fit rows; short folds wrap around to fill the last batch.
        order = np.stack(
            [np.resize(r.permutation(a), steps * batch_size) for r, a in zip(fold_rngs, fit_sets, strict=True)]
        )
        order_t = torch.from_numpy(order).to(dev).view(F, steps, batch_size)
        full = torch.ones(F, batch_size, dtype=torch.bool, device=dev)
        for s in range(steps):
            losses(order_t[:, s], full).sum().backward()  # problems are independent: the sum splits
            adamw_step()
        with torch.no_grad():
            val = losses(val_idx, val_mask)
            better = (val < best) & ~stopped
            best = torch.where(better, val, best)
            best_epoch = torch.where(better, epoch, best_epoch)
            for keep, cur in zip(snap, params, strict=True):
                keep.copy_(torch.where(better[:, None, None], cur.detach(), keep))
            stopped |= epoch - best_epoch >= patience
        if bool(stopped.all()):
            break

    with torch.no_grad():
        for cur, keep in zip(params, snap, strict=True):
            cur.copy_(keep)
        te_idx, _ = _pad_rows([te for _, te in folds])
        out = forward(te_idx.to(dev)).view(Lc, F, te_idx.shape[1], -1)
    res: list[list[FoldPrediction]] = []
    for li in range(Lc):
        preds = []
        for f, (_, te) in enumerate(folds):
            o = out[li, f, : len(te)]
            if classify:
                proba = torch.softmax(o.double(), 1)
                preds.append(FoldPrediction(f, te, proba.argmax(1).cpu().numpy(), proba.cpu().numpy()))
            else:
                val = (o[:, 0].double() * float(y_sd[f]) + float(y_mean[f])).cpu().numpy()
                preds.append(FoldPrediction(f, te, val))
        res.append(preds)
    return res


# ---------------------------------------------------------------------------------------------- tuning


def tune_probe(
    X_layer: np.ndarray,
    labels: np.ndarray,
    folds: list[Fold],
    task_type: TaskType,
    kind: ProbeKind = "logreg",
    n_trials: int = 20,
    seed: int = 0,
    *,
    inner_folds: int = 3,
    max_iter: int | None = None,
) -> list[dict[str, Any]]:
    """Choose probe hyperparameters separately for each outer fold, from that fold's train rows alone.

    Trials are scored by an `inner_folds`-fold CV (stratified for classification) over the outer fold's
    train rows, which are sliced out first: the outer test rows are never read, not even their features.
    Scores: mean inner log-loss (classification) or MSE (regression), lower is better, because they rank
    regularisation strengths more smoothly than accuracy does. Every outer fold's Optuna TPE sampler gets
    the same seed, so a fold's choice depends on its own rows only, not on its position in `folds`.
    Returns one dict per outer fold whose keys are `probe_layers` keyword arguments: {"C": ...} for logreg
    (pass `C=[p["C"] for p in params]` to use them all at once), {"hidden", "weight_decay", "lr"} for mlp.
    """
    try:
        import optuna
    except ImportError:
        raise BiofmError("probes.tune_trials needs Optuna (the `tune` extra): pip install 'biofm[tune]'") from None
    from sklearn.model_selection import KFold, StratifiedKFold

    X2 = X_layer if isinstance(X_layer, np.ndarray) else np.asarray(X_layer)
    if X2.ndim != 2:
        raise BiofmError(f"tune_probe takes one layer's embeddings [n_examples, dim], got {X2.shape}")
    if kind not in ("logreg", "mlp"):
        raise BiofmError(f"unknown probe kind {kind!r}; expected 'logreg' or 'mlp'")
    y_all = np.asarray(labels)
    checked = _check_folds(folds, len(X2))

    chosen: list[dict[str, Any]] = []
    old_verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        for train, _ in checked:
            Xo = np.asarray(X2[train])  # the only rows this fold's search ever sees
            yo = y_all[train]
            splitter = (
                StratifiedKFold(inner_folds, shuffle=True, random_state=seed)
                if task_type == "classification"
                else KFold(inner_folds, shuffle=True, random_state=seed)
            )
            inner = list(splitter.split(np.zeros(len(yo)), yo))

            def objective(trial: optuna.Trial, Xo: np.ndarray = Xo, yo: np.ndarray = yo, inner: list = inner) -> float:
                if kind == "logreg":
                    params: dict[str, Any] = {"C": trial.suggest_float("C", 1e-4, 1e2, log=True)}
                else:
                    params = {
                        "hidden": (trial.suggest_categorical("hidden", [32, 64, 128, 256]),),
                        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True),
                        "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
                    }
                preds = probe_layers(Xo, yo, inner, task_type, kind, seed=seed, max_iter=max_iter, **params)[0]
                return _inner_score(preds, yo, task_type)

            study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
            study.optimize(objective, n_trials=n_trials)
            best = dict(study.best_params)
            if kind == "mlp":
                best["hidden"] = (best["hidden"],)
            chosen.append(best)
    finally:
        optuna.logging.set_verbosity(old_verbosity)
    return chosen


def _inner_score(preds: list[FoldPrediction], y: np.ndarray, task_type: TaskType) -> float:
    scores = []
    for p in preds:
        yt = y[p.test_idx]
        if task_type == "classification":
            assert p.proba is not None
            picked = p.proba[np.arange(len(yt)), yt.astype(np.int64)]
            scores.append(float(-np.log(np.clip(picked, 1e-15, None)).mean()))
        else:
            scores.append(float(np.mean((p.pred - yt) ** 2)))
    return float(np.mean(scores))
