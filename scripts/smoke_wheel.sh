#!/usr/bin/env bash
# Build biofm's wheel, install it into a fresh virtual environment and run every verb once on tiny
# synthetic data. `make test` installs from requirements.lock and then biofm with --no-deps, so the
# ranges in pyproject.toml are exercised only here:
#   scripts/smoke_wheel.sh newest   # the newest releases the ranges allow (CI, after make test)
#   scripts/smoke_wheel.sh lowest   # every direct dependency at its lower bound (make test-lowest)
# torch is 2.13.0, installed first through pip as the Makefile does (the CPU build; lower torch
# releases are CUDA builds of several GB on PyPI, so the torch bound itself is not installed here).
# `lowest` pins every direct dependency to exactly its declared floor (failing when the floors cannot be
# installed together) and checks the package against Python 3.10, the oldest declared: it byte-compiles
# under 3.10 and the same floors resolve for 3.10 (there is no CPU torch wheel for 3.10 to run it on).
# Needs uv (in the dev extra, so in .venv after make setup) and a package index; writes only to a
# temporary folder.
set -euo pipefail
MODE=${1:-newest}
[[ $MODE == newest || $MODE == lowest ]] || { echo "usage: $0 [newest|lowest]" >&2; exit 2; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
UV=${UV:-$ROOT/.venv/bin/uv}
BASE_PY=${BASE_PY:-$("$ROOT/.venv/bin/python" -c 'import sys; print(sys._base_executable)')}
TORCH=torch==2.13.0
WORK=$(mktemp -d "${TMPDIR:-/tmp}/biofm-smoke.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
t0=$SECONDS
step() { printf '[smoke %s %4ds] %s\n' "$MODE" $((SECONDS - t0)) "$*"; }
find_python() {  # uv's search, else a pyenv-installed one (pyenv's shims hide versions not selected)
  "$UV" python find "$1" 2>/dev/null && return
  local v
  command -v pyenv > /dev/null && v=$(pyenv versions --bare 2>/dev/null | grep -E "^${1//./\\.}(\\.|\$)" | tail -n 1) &&
    [[ -n $v ]] && PYENV_VERSION=$v pyenv which "python$1" 2>/dev/null
}

step "build the sdist, and the wheel from it (what an index would serve)"
"$UV" build -q --out-dir "$WORK/dist" "$ROOT"
WHEEL=$(ls "$WORK"/dist/biofm-*.whl)

step "fresh venv; $TORCH first"
"$BASE_PY" -m venv "$WORK/venv"
PY=$WORK/venv/bin/python
"$PY" -m pip install -q "$TORCH"
echo "$TORCH" > "$WORK/torch.txt"
export VIRTUAL_ENV=$WORK/venv  # uv installs into it

if [[ $MODE == newest ]]; then
  step "install the wheel with the newest releases its ranges allow"
  # (a fresh venv, so "newest" is uv's default; no --upgrade, which would swap the CPU torch for PyPI's)
  "$UV" pip install -q --constraint "$WORK/torch.txt" "$WHEEL"
else
  step "install the wheel with every direct dependency at exactly its lower bound"
  # the wheel's own requirements, and each pinned to its floor as a constraint: uv then fails, naming the
  # conflict, when the floors cannot be installed together (the bound would be a promise nothing checks)
  "$ROOT/.venv/bin/python" - "$WHEEL" "$WORK" <<'EOF'  # (this venv has no packaging yet)
import sys, zipfile
from packaging.requirements import Requirement
with zipfile.ZipFile(sys.argv[1]) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    reqs = [line.split(":", 1)[1].strip() for line in z.read(meta).decode().splitlines()
            if line.startswith("Requires-Dist:") and "extra ==" not in line]
floors = []
for line in reqs:
    req = Requirement(line)
    low = [s.version for s in req.specifier if s.operator == ">="]
    if req.name != "torch" and low:  # torch: see the top of this script
        floors.append(f"{req.name}=={low[0]}")
open(f"{sys.argv[2]}/direct.txt", "w").write("\n".join(reqs) + "\n")
open(f"{sys.argv[2]}/floors.txt", "w").write("\n".join(floors) + "\n")
EOF
  # (installed, not compiled: uv then takes the installed CPU torch's own requirements, no CUDA wheels)
  "$UV" pip install -q -r "$WORK/direct.txt" --constraint "$WORK/floors.txt" --override "$WORK/torch.txt"
  "$UV" pip install -q --no-deps "$WHEEL"
  step "Python 3.10 (oldest declared): byte-compile, and resolve the same floors for it"
  if PY310=$(find_python 3.10); then
    mkdir "$WORK/src310" && (cd "$WORK/src310" && "$PY" -m zipfile -e "$WHEEL" .)
    "$PY310" -m compileall -q "$WORK/src310/biofm" >/dev/null
    "$UV" pip compile -q --no-header --python-version 3.10 --python-platform x86_64-manylinux_2_28 \
      "$WORK/direct.txt" --constraint "$WORK/floors.txt" --override "$WORK/torch.txt" -o "$WORK/floors310.txt"
    echo "  compiles and resolves for $("$PY310" -V)"
  else
    echo "  no Python 3.10 interpreter found: skipped"
  fi
fi
"$UV" pip check -q
step "every name biofm imports from a third-party package exists in these versions"
"$PY" "$ROOT/scripts/check_imports.py"
"$PY" -c 'import sys, torch; from importlib.metadata import version as v
print("  python", sys.version.split()[0], "| " + ", ".join(f"{p} {v(p)}" for p in
      ["torch", "transformers", "numpy", "pandas", "anndata", "scikit-learn", "datasets", "peft", "accelerate"]))'

# ------------------------------------------------------------------ every verb, tiny synthetic data
BIOFM=$WORK/venv/bin/biofm
cd "$WORK"
export BIOFM_OFFLINE=1 BIOFM_CACHE=$WORK/cache HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 OMP_NUM_THREADS=1
unset BIOFM_DATA_MIRROR
step "synthetic genome, motif task and cells"
"$PY" - <<'EOF'
import anndata as ad
import numpy as np
import scipy.sparse as sp
import yaml

rng = np.random.default_rng(0)
with open("g.fa", "w") as fh:
    for r in range(3):
        seq = "".join(rng.choice(list("ACGT"), 6000))
        fh.write(f">chr{r}\n" + "\n".join(seq[i:i + 70] for i in range(0, len(seq), 70)) + "\n")
rows = []
for i in range(60):
    s = list(rng.choice(list("ACGT"), 40))
    if i % 2:
        s[10:16] = list("GGGGGG")
    rows.append(f"{''.join(s)},{i % 2}")
open("motif.csv", "w").write("sequence,label\n" + "\n".join(rows) + "\n")
yaml.safe_dump({"name": "motif", "type": "classification", "table": "motif.csv"}, open("motif.yaml", "w"))
train = {"steps": 5, "global_batch_tokens": 512, "micro_batch_size": 8, "eval_every": 5, "log_every": 1,
         "checkpoint_every": 5, "warmup_steps": 1}
yaml.safe_dump({"name": "dna", "run_dir": "dna", "data": {"fasta": ["g.fa"], "region_bp": 2000, "val_fraction": 0.2},
                "tokenizer": {"k": 2}, "model": {"preset": "tiny", "block_tokens": 64}, "train": train},
               open("dna.yaml", "w"))
n, genes = 120, 60
kind = rng.integers(0, 2, n)
mu = np.full((n, genes), 0.5)
mu[kind == 0, :20] = 6.0
mu[kind == 1, 20:40] = 6.0
a = ad.AnnData(sp.csr_matrix(rng.poisson(mu).astype(np.float32)))
a.var_names = [f"G{i}" for i in range(genes)]
a.obs_names = [f"c{i}" for i in range(n)]
a.obs["cell_type"] = np.where(kind == 0, "A", "B")
a.obs["batch"] = np.where(rng.random(n) < 0.5, "b1", "b2")
a.write_h5ad("cells.h5ad")
yaml.safe_dump({"name": "cells", "run_dir": "cells", "modality": "cells",
                "data": {"h5ad": ["cells.h5ad"], "val_fraction": 0.2},
                "tokenizer": {"binning": "quantile", "n_bins": 5, "max_genes": 63},
                "model": {"preset": "tiny"}, "train": {**train, "global_batch_tokens": 1024}},
               open("cells.yaml", "w"))
EOF

step "biofm --help / info / data list"
"$BIOFM" --help > /dev/null
"$BIOFM" info tiny | tail -n 2
"$BIOFM" data list > data.txt && grep -q ecoli-k12 data.txt
step "biofm pretrain (DNA, 5 steps)"
"$BIOFM" pretrain dna.yaml > pretrain.log 2>&1 || { cat pretrain.log; exit 1; }
test -f dna/model/model.safetensors
if ! "$PY" -c 'import tensorboard' 2>/dev/null; then  # without the extra: one line naming it, run unharmed
  grep -q "biofm\[tensorboard\]" pretrain.log || { cat pretrain.log; echo "no tensorboard extra note"; exit 1; }
fi
step "biofm doctor"
rc=0; "$BIOFM" doctor --json dna > doctor.json || rc=$?  # 1 = "not learning" after 5 steps: a verdict, not a crash
[[ $rc -le 1 ]] && "$PY" -c 'import json; print("  verdict:", json.load(open("doctor.json"))["verdict"])'
step "biofm fill-mask / embed"
"$BIOFM" fill-mask --model dna --sequence 'ACGTAC<mask>TTGA' --top-k 2 | tail -n 3
"$BIOFM" embed --model dna --input g.fa --out emb.npy --long-sequences windows
"$PY" -c 'import numpy as np; e = np.load("emb.npy"); assert e.ndim == 3 and e.shape[0] == 3, e.shape'
step "biofm evaluate (DNA: probe, IA3 fine-tuning, k-mer baseline)"
"$BIOFM" evaluate --model dna --task motif.yaml --out ev --folds 2 --set 'probes.kinds=[logreg]' \
  --set 'finetune.methods=[ia3]' --set finetune.epochs=1 --set 'baselines.run=[kmer_logreg]' --set control=false \
  > ev.log 2>&1 || { cat ev.log; exit 1; }
grep -q baseline-kmer_logreg ev/results.csv
step "cells: pretrain, embed into h5ad, evaluate (PCA baseline, Leiden / ASW / iLISI table)"
"$BIOFM" pretrain cells.yaml > cells.log 2>&1 || { cat cells.log; exit 1; }
"$BIOFM" embed --model cells --input cells.h5ad --out cells_emb.h5ad
"$PY" -c 'import anndata as ad; a = ad.read_h5ad("cells_emb.h5ad"); assert a.obsm["X_biofm"].shape[0] == 120'
"$BIOFM" evaluate --model cells --task cells.h5ad:cell_type --out evc --folds 2 --set 'probes.kinds=[logreg]' \
  --set 'cell_baselines.run=[pca_logreg]' --set control=false > evc.log 2>&1 || { cat evc.log; exit 1; }
grep -q baseline-pca_logreg evc/results.csv
if [[ $MODE == newest ]]; then
  step "Python 3.12: pandas 3 / anndata 0.13 / newest numpy (they need 3.12; no CPU torch there): torch-free path"
  if PY312=$(find_python 3.12); then
    echo 'torch ; sys_platform == "never"' > "$WORK/no-torch.txt"  # drops torch and what needs it
    "$UV" venv -q --python "$PY312" "$WORK/venv312"
    VIRTUAL_ENV=$WORK/venv312 "$UV" pip install -q --override "$WORK/no-torch.txt" "$WHEEL"
    mkdir "$WORK/torchfree" && (cd "$WORK/torchfree" && "$WORK/venv312/bin/python" "$ROOT/scripts/smoke_torchfree.py")
  else
    echo "  no Python 3.12 interpreter found: skipped"
  fi
fi
step "passed"
