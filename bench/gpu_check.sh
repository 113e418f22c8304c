#!/usr/bin/env bash
# The CUDA check of the inference benchmark, as one script for a lent GPU machine (a few minutes):
# installs the Python environment if it is missing, shows the GPU, then runs bench/inference.py on
# CUDA for a small phantom and a 512 x 512 x ~300 one (1 mm slices), 5 folds, with the paper's
# mirroring, with and without the region focus. No Debian
# packages are needed for this. Usage: bash bench/gpu_check.sh [OUT_DIR]   (prints everything; also
# writes OUT_DIR/gpu_check.txt when given, e.g. "$OUT" on the device machine).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-}"
{
  if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import nnunetv2, highdicom, holoscan" 2>/dev/null; then
    python3 -m venv .venv
    .venv/bin/python -m pip install --quiet -r requirements.txt
    .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  .venv/bin/python -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.is_available())"
  export nnUNet_n_proc_DA=0 nnUNet_def_n_proc=2
  .venv/bin/python bench/inference.py --device cuda
  .venv/bin/python bench/inference.py --device cuda --full --slice-thickness 1 --folds 0 0 0 0 0 --region-focus
} 2>&1 | if [ -n "$out" ]; then mkdir -p "$out"; tee "$out/gpu_check.txt"; else cat; fi
