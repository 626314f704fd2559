"""Baselines a DNA foundation model has to beat before its scores mean anything.

Published comparisons often pit a large pretrained model against weak or mistuned baselines. These
are the honest ones: k-mer spectra with a linear model and with gradient-boosted trees (strong on
short motif tasks), a small dilated CNN trained from scratch on one-hot DNA (BPNet-style; strong
whenever position matters), and NT's "raw token ids" logistic regression (deliberately naive, kept
because NT reported it). Each one is a `Method`: it fits on a fold's training indices only --
scalers, vocabularies and early-stopping splits included -- and predicts that fold's test indices,
so nothing about the test examples leaks into training.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field, PositiveInt, field_validator

from biofm.config import Schema
from biofm.dna.tokenizer import KmerTokenizer
from biofm.errors import BiofmError
from biofm.eval.baselines import check_known, method_from
from biofm.eval.explain import xgboost_shap
from biofm.eval.fit import check_folds, fit_predict
from biofm.eval.folds import validation_split
from biofm.eval.types import Fold, FoldPrediction, Method, Task

__all__ = [
    "BASELINES",
    "BaselineConfig",
    "CnnConfig",
    "XgbConfig",
    "baseline_method",
    "cnn",
    "kmer_features",
    "kmer_histgb",
    "kmer_logreg",
    "kmer_names",
    "kmer_xgboost",
    "one_hot",
    "raw_token_logreg",
    "resolve_baseline",
    "xgboost_available",
]

KMER_KS: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
# Base codes for k-mer counting and one-hot: A C G T -> 0..3, everything else (N) -> 4.
_CODE = np.full(256, 4, dtype=np.uint8)
for _i, _b in enumerate(b"ACGT"):
    _CODE[_b] = _i


# ------------------------------------------------------------------------------------------ configs


class XgbConfig(Schema):
    n_estimators: PositiveInt = 200
    max_depth: PositiveInt = 4
    learning_rate: float = Field(0.1, gt=0)
    # One thread by default: on a shared 2-core machine n_jobs=2 measured 6-10x slower (OpenMP threads
    # spin-wait for a core); unloaded it is about 1.6x faster. Raise it on a dedicated machine.
    n_jobs: PositiveInt = 1


class CnnConfig(Schema):
    epochs: PositiveInt = 20
    batch_size: PositiveInt = 64
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    channels: PositiveInt = 64
    n_dilated: int = Field(4, ge=0, le=12)
    kernel_size: PositiveInt = 21
    dropout: float = Field(0.1, ge=0, lt=1)
    position_bins: int = Field(4, ge=0, le=64, description="0 = global pooling only (pure BPNet-style)")
    patience: PositiveInt = 4
    val_fraction: float = Field(0.1, gt=0, lt=0.5)
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    threads: int = Field(1, ge=0, description="CPU threads for torch while training; 0 = torch's default")


class BaselineConfig(Schema):
    """Knobs of the baselines, settable from an evaluation config's `baselines:` section."""

    run: list[str] = Field(
        default_factory=lambda: ["kmer_logreg", "kmer_xgboost", "cnn", "raw_token_logreg"],
        description="which baselines to run, by name",
    )
    kmer_ks: list[int] = Field(default_factory=lambda: list(KMER_KS), description="k-mer sizes for k-mer features")
    logreg_c: float = Field(1.0, gt=0, description="inverse L2 strength (Ridge alpha = 1/C for regression)")
    logreg_max_iter: PositiveInt = 2000
    raw_token_k: int = Field(6, ge=1, le=8)
    xgboost: XgbConfig = Field(default_factory=XgbConfig)
    cnn: CnnConfig = Field(default_factory=CnnConfig)

    @field_validator("run")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        check_known(v, BASELINES, "baseline")
        return v

    @field_validator("kmer_ks")
    @classmethod
    def _ks(cls, v: list[int]) -> list[int]:
        if not v or any(not 1 <= k <= 8 for k in v):
            raise ValueError("k-mer sizes must be between 1 and 8")
        return v


# ------------------------------------------------------------------------------------------ features


def _codes(seqs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """All sequences' base codes concatenated, and each sequence's start offset (plus the total)."""
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    starts = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    raw = np.frombuffer("".join(seqs).encode("ascii", errors="replace"), dtype=np.uint8)
    return _CODE[raw], starts


def kmer_features(seqs: Sequence[str], ks: Sequence[int] = KMER_KS) -> sp.csr_matrix:
    """K-mer frequency spectrum of each sequence: one block of 4**k columns per k, each block summing to 1.

    Counting is one vectorised pass per k over all sequences joined end to end: a window is kept
    only if it lies inside one sequence and contains no N. Counts are divided by the number of kept
    windows of that k, so sequences of different lengths (or with N runs) are comparable. Columns
    are ordered by k, then lexicographically (A=0 C=1 G=2 T=3), as in `KmerTokenizer`.
    """
    n = len(seqs)
    codes, starts = _codes(seqs)
    total = len(codes)
    seq_of = np.repeat(np.arange(n, dtype=np.int64), np.diff(starts))
    is_n = codes == 4
    n_cum = np.zeros(total + 1, dtype=np.int32)
    np.cumsum(is_n, out=n_cum[1:])
    base = np.where(is_n, 0, codes).astype(np.int64)

    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    offset = 0
    value = np.zeros(total, dtype=np.int64)  # value[i] = k-mer starting at i, built up one k at a time
    done = 0
    for k in sorted(ks):
        while done < k:  # extend every window by one base on the right
            value[: total - done] = (value[: total - done] << 2) | base[done:]
            done += 1
        n_windows = max(total - k + 1, 0)
        pos = np.arange(n_windows, dtype=np.int64)
        ok = (pos + k <= starts[seq_of[:n_windows] + 1]) & (n_cum[k : k + n_windows] == n_cum[:n_windows])
        keep = np.flatnonzero(ok)
        row = seq_of[keep]
        per_seq = np.bincount(row, minlength=n).astype(np.float32)
        rows.append(row)
        cols.append(value[keep] + offset)
        vals.append(1.0 / per_seq[row])
        offset += 4**k
    mat = sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, offset), dtype=np.float32
    )
    return mat.tocsr()  # duplicates (repeated k-mers) are summed here


def kmer_names(ks: Sequence[int] = KMER_KS) -> list[str]:
    """The k-mer of each column of `kmer_features(seqs, ks)`: by k, then lexicographically (A C G T)."""
    return ["".join(p) for k in sorted(ks) for p in itertools.product("ACGT", repeat=k)]


def _code_matrix(seqs: Sequence[str], length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Base codes [n, L] uint8 padded with 4 (the N code) to the longest sequence, and the mask of real bases."""
    length = max((len(s) for s in seqs), default=0) if length is None else length
    codes, starts = _codes(seqs)
    lengths = np.minimum(np.diff(starts), length)
    mask = np.arange(length)[None, :] < lengths[:, None]
    out = np.full((len(seqs), length), 4, dtype=np.uint8)
    if len(seqs):
        out[mask] = np.concatenate(
            [codes[s : s + m] for s, m in zip(starts[:-1].tolist(), lengths.tolist(), strict=True)]
        )
    return out, mask


def one_hot(seqs: Sequence[str], length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One-hot [n, 4, L] float32 (N and padding are all zeros) and the [n, L] mask of real bases."""
    codes, mask = _code_matrix(seqs, length)
    eye = np.concatenate([np.eye(4, dtype=np.float32), np.zeros((1, 4), dtype=np.float32)])
    return np.ascontiguousarray(eye[codes].transpose(0, 2, 1)), mask


def _token_matrix(seqs: Sequence[str], k: int) -> np.ndarray:
    tok = KmerTokenizer(k)
    ids = tok.encode_batch(list(seqs))
    width = max((len(a) for a in ids), default=0)
    out = np.full((len(ids), width), tok.pad_id, dtype=np.float32)
    for i, a in enumerate(ids):
        out[i, : len(a)] = a
    return out


def raw_token_logreg(
    task: Task, folds: list[Fold], seed: int, k: int = 6, c: float = 1.0, max_iter: int = 2000
) -> list[FoldPrediction]:
    """NT's naive baseline: the k-mer token ids themselves as numeric features, standardised.

    Token ids are arbitrary category numbers, so a linear model on them is close to chance on most
    tasks; it is here to reproduce NT's table, not as a serious competitor. Sequences are padded
    with the pad id to the longest one.
    """
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    check_folds(task, folds)
    feats = _token_matrix(task.inputs, k)

    def make(kind: str, fold: int, n_train: int) -> Any:
        if kind == "regression":
            return make_pipeline(StandardScaler(), Ridge(alpha=1.0 / c))
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter, random_state=seed))

    return fit_predict(task, folds, feats, make)


def kmer_logreg(
    task: Task, folds: list[Fold], seed: int, ks: Sequence[int] = KMER_KS, c: float = 1.0, max_iter: int = 2000
) -> list[FoldPrediction]:
    """L2 logistic regression (Ridge for regression) on k-mer frequencies scaled to unit variance.

    Scaling (no centring, which would densify the sparse matrix) is fitted on the training fold; it
    keeps rare 6-mers and common 1-mers on one footing, which raw frequencies under a single C do not.
    """
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    check_folds(task, folds)
    feats = kmer_features(task.inputs, ks)

    def make(kind: str, fold: int, n_train: int) -> Any:
        if kind == "regression":
            return make_pipeline(StandardScaler(with_mean=False), Ridge(alpha=1.0 / c))
        return make_pipeline(
            StandardScaler(with_mean=False), LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
        )

    return fit_predict(task, folds, feats, make)


def xgboost_available() -> bool:
    """Whether the `xgboost` module imports (the `boost` extra); without it `kmer_xgboost` runs as `kmer_histgb`."""
    try:
        import xgboost  # noqa: F401
    except ImportError:
        return False
    return True


def kmer_xgboost(
    task: Task,
    folds: list[Fold],
    seed: int,
    n_estimators: int = 200,
    max_depth: int = 4,
    learning_rate: float = 0.1,
    n_jobs: int = 1,
    ks: Sequence[int] = KMER_KS,
) -> list[FoldPrediction]:
    """Gradient-boosted trees on k-mer frequencies (histogram method, seeded, so runs repeat exactly).

    Inside an evaluation that collects explanations (biofm.eval.explain), each fold's model also gives the
    SHAP values of its test rows, per k-mer and class. Without xgboost installed, `baselines()` runs
    `kmer_histgb` under its own name instead (see `resolve_baseline`)."""
    try:
        from xgboost import XGBClassifier, XGBRegressor
    except ImportError:
        raise BiofmError("baseline kmer_xgboost needs xgboost (the `boost` extra): pip install 'biofm[boost]', or "
                         "use kmer_histgb (scikit-learn) instead") from None

    check_folds(task, folds)
    feats = kmer_features(task.inputs, ks)
    params = {
        "n_estimators": n_estimators,
        "max_depth": max_depth,
        "learning_rate": learning_rate,
        "n_jobs": n_jobs,
        "random_state": seed,
        "tree_method": "hist",
        "verbosity": 0,
    }

    def make(kind: str, fold: int, n_train: int) -> Any:
        return XGBRegressor(**params) if kind == "regression" else XGBClassifier(**params)

    return fit_predict(task, folds, feats, make, on_fit=xgboost_shap(kmer_names(ks)))


def kmer_histgb(
    task: Task,
    folds: list[Fold],
    seed: int,
    n_estimators: int = 200,
    max_depth: int = 4,
    learning_rate: float = 0.1,
    ks: Sequence[int] = KMER_KS,
) -> list[FoldPrediction]:
    """Gradient-boosted trees on k-mer frequencies through scikit-learn's HistGradientBoosting: the same
    histogram algorithm as `kmer_xgboost` at the same number of rounds, depth and learning rate, for
    machines without xgboost. No early stopping (as xgboost's default), seeded; no SHAP values."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    check_folds(task, folds)
    # dense float32: HistGradientBoosting bins dense input; k-mer frequencies of k <= 6 are 5,460 columns
    feats = kmer_features(task.inputs, ks)
    dense = feats.toarray().astype(np.float32) if sp.issparse(feats) else np.asarray(feats, dtype=np.float32)
    params = {"max_iter": n_estimators, "max_depth": max_depth, "learning_rate": learning_rate,
              "early_stopping": False, "random_state": seed}

    def make(kind: str, fold: int, n_train: int) -> Any:
        if kind == "regression":
            return HistGradientBoostingRegressor(**params)
        return HistGradientBoostingClassifier(**params)

    return fit_predict(task, folds, dense, make)


# ------------------------------------------------------------------------------------------ CNN


def _build_cnn(n_out: int, channels: int, n_dilated: int, kernel_size: int, dropout: float, position_bins: int) -> Any:
    import torch
    import torch.nn.functional as F
    from torch import nn

    class DilatedCNN(nn.Module):
        """Wide first conv, residual dilated convs (receptive field doubling per layer), masked pooling."""

        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv1d(4, channels, kernel_size, padding=kernel_size // 2)
            self.dilated = nn.ModuleList(
                nn.Conv1d(channels, channels, 3, dilation=2**i, padding=2**i) for i in range(n_dilated)
            )
            self.drop = nn.Dropout(dropout)
            self.head = nn.Linear((2 + position_bins) * channels, n_out)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.stem(x))
            for conv in self.dilated:
                h = h + torch.relu(conv(h))
            m = mask[:, None, :]
            # Pool over real bases only, so zero padding of shorter sequences does not dilute them.
            mean = (h * m).sum(-1) / m.sum(-1).clamp(min=1)
            peak = h.masked_fill(~m, float("-inf")).amax(-1)
            peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
            pooled = [mean, peak]
            if position_bins:
                # Coarse position (which part of the sequence a motif is in) matters for aligned tasks
                # such as splice sites and promoter cores; global pooling alone throws it away.
                pooled.append(F.adaptive_avg_pool1d(h * m, position_bins).flatten(1))
            return self.head(self.drop(torch.cat(pooled, dim=1)))

    return DilatedCNN()


def cnn(
    task: Task,
    folds: list[Fold],
    seed: int,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    channels: int = 64,
    n_dilated: int = 4,
    kernel_size: int = 21,
    dropout: float = 0.1,
    position_bins: int = 4,
    patience: int = 4,
    val_fraction: float = 0.1,
    device: Literal["cpu", "cuda", "auto"] = "cpu",
    threads: int = 1,
) -> list[FoldPrediction]:
    """A small BPNet-style CNN on one-hot DNA, trained from scratch on each fold.

    Early stopping watches the loss on a validation split taken from the fold's training indices
    (never its test indices) and the best epoch's weights are restored. Regression targets are
    standardised with the training split's mean and spread and mapped back for the predictions.

    `threads` defaults to 1: convolutions this small gain little from intra-op parallelism, and when
    the cores are shared (other folds, other jobs) torch's thread pool stalls on every op -- measured
    20x slower than one thread on a busy 2-core machine.
    """
    import torch

    check_folds(task, folds)
    cfg = CnnConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        channels=channels,
        n_dilated=n_dilated,
        kernel_size=kernel_size,
        dropout=dropout,
        position_bins=position_bins,
        patience=patience,
        val_fraction=val_fraction,
        device=device,
        threads=threads,
    )
    previous = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _train_cnn(task, folds, seed, cfg)
    finally:
        torch.set_num_threads(previous)


def _train_cnn(task: Task, folds: list[Fold], seed: int, cfg: CnnConfig) -> list[FoldPrediction]:
    import torch
    import torch.nn.functional as F

    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    codes, mask = _code_matrix(task.inputs)
    codes_t, mask_t = torch.from_numpy(codes).long(), torch.from_numpy(mask)
    # Row 4 (N and padding) is all zeros; one-hot is built per batch so memory stays at 1 byte per base.
    eye = torch.cat([torch.eye(4), torch.zeros(1, 4)])

    def batch(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return eye[codes_t[idx]].transpose(1, 2).to(dev), mask_t[idx].to(dev)

    classification = task.type == "classification"
    n_out = max(task.n_classes, int(task.labels.max()) + 1) if classification else 1
    out: list[FoldPrediction] = []

    for i, (train, test) in enumerate(folds):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        fit, val = validation_split(np.asarray(train), task, cfg.val_fraction, seed)
        if classification:
            y_all = torch.from_numpy(task.labels.astype(np.int64))
            mu, sd = 0.0, 1.0
        else:
            y_fit = task.labels[fit].astype(np.float64)
            mu, sd = float(y_fit.mean()), float(y_fit.std()) or 1.0
            y_all = torch.from_numpy(((task.labels - mu) / sd).astype(np.float32))

        model = _build_cnn(n_out, cfg.channels, cfg.n_dilated, cfg.kernel_size, cfg.dropout, cfg.position_bins)
        model = model.to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

        def loss_of(idx: torch.Tensor, model: Any = model, y_all: torch.Tensor = y_all) -> torch.Tensor:
            logits = model(*batch(idx))
            target = y_all[idx].to(dev)
            if classification:
                return F.cross_entropy(logits, target)
            return F.mse_loss(logits[:, 0], target)

        fit_t = torch.from_numpy(fit)
        val_t = torch.from_numpy(val)
        best_loss, best_state, bad_epochs = float("inf"), None, 0
        for _epoch in range(cfg.epochs):
            model.train()
            order = fit_t[torch.randperm(len(fit_t), generator=gen)]
            for lo in range(0, len(order), cfg.batch_size):
                opt.zero_grad(set_to_none=True)
                loss_of(order[lo : lo + cfg.batch_size]).backward()
                opt.step()
            if len(val_t) == 0:
                continue
            model.eval()
            with torch.no_grad():
                total = sum(
                    float(loss_of(val_t[lo : lo + 512])) * len(val_t[lo : lo + 512]) for lo in range(0, len(val_t), 512)
                )
            val_loss = total / len(val_t)
            if val_loss < best_loss - 1e-6:
                best_loss, best_state, bad_epochs = val_loss, copy.deepcopy(model.state_dict()), 0
            else:
                bad_epochs += 1
                if bad_epochs >= cfg.patience:
                    break
        if best_state is not None:
            model.load_state_dict(best_state)

        model.eval()
        test_t = torch.from_numpy(np.asarray(test))
        with torch.no_grad():
            chunks = [model(*batch(test_t[lo : lo + 512])).cpu() for lo in range(0, len(test_t), 512)]
        logits = torch.cat(chunks).double()
        if classification:
            proba = torch.softmax(logits, dim=1).numpy()
            out.append(FoldPrediction(i, np.asarray(test), proba.argmax(1).astype(np.int64), proba))
        else:
            out.append(FoldPrediction(i, np.asarray(test), logits[:, 0].numpy() * sd + mu))
    return out


# ------------------------------------------------------------------------------------------ registry


def _run_raw(task: Task, folds: list[Fold], seed: int, cfg: BaselineConfig) -> list[FoldPrediction]:
    return raw_token_logreg(task, folds, seed, k=cfg.raw_token_k, c=cfg.logreg_c, max_iter=cfg.logreg_max_iter)


def _run_kmer_logreg(task: Task, folds: list[Fold], seed: int, cfg: BaselineConfig) -> list[FoldPrediction]:
    return kmer_logreg(task, folds, seed, ks=cfg.kmer_ks, c=cfg.logreg_c, max_iter=cfg.logreg_max_iter)


def _run_kmer_xgboost(task: Task, folds: list[Fold], seed: int, cfg: BaselineConfig) -> list[FoldPrediction]:
    return kmer_xgboost(task, folds, seed, ks=cfg.kmer_ks, **cfg.xgboost.model_dump())


def _run_kmer_histgb(task: Task, folds: list[Fold], seed: int, cfg: BaselineConfig) -> list[FoldPrediction]:
    knobs = cfg.xgboost.model_dump(exclude={"n_jobs"})
    return kmer_histgb(task, folds, seed, ks=cfg.kmer_ks, **knobs)


def _run_cnn(task: Task, folds: list[Fold], seed: int, cfg: BaselineConfig) -> list[FoldPrediction]:
    return cnn(task, folds, seed, **cfg.cnn.model_dump())


BaselineFn = Callable[[Task, list[Fold], int, BaselineConfig], list[FoldPrediction]]

BASELINES: dict[str, BaselineFn] = {
    "kmer_logreg": _run_kmer_logreg,
    "kmer_xgboost": _run_kmer_xgboost,
    "kmer_histgb": _run_kmer_histgb,
    "cnn": _run_cnn,
    "raw_token_logreg": _run_raw,
}


def resolve_baseline(name: str) -> str:
    """The baseline that runs for `name`: `kmer_xgboost` becomes `kmer_histgb` where xgboost is not installed,
    so a default evaluation still has its gradient-boosted baseline, under the name of what actually ran."""
    return "kmer_histgb" if name == "kmer_xgboost" and not xgboost_available() else name


def baseline_method(name: str, cfg: BaselineConfig | None = None) -> Method:
    """The named baseline as a plain `Method` (task, folds, seed), with its knobs taken from `cfg`."""
    return method_from(BASELINES, name, cfg or BaselineConfig(), "baseline")
