#!/usr/bin/env bash
# Trains the four bundled checkpoints on one GPU: the tiny preset with a longer schedule
# (--pretrain-steps/--finetune-steps), with and without meta-attention, then their YaRN 2x
# extensions with 150 fine-tuning steps at the new window. Each checkpoint is tarred into
# OUTDIR as soon as it exists. Usage: bash reference_model/gpu_train.sh OUTDIR
set -euo pipefail
out=${1:?output folder}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
steps="--pretrain-steps 800 --finetune-steps 3200 --workers 6 --device cuda --quiet"
w=/tmp/rm; mkdir -p $w
pack() { rm -f $w/$1/train_state.pt; tar -C $w -czf $out/$1.tar.gz $1; tail -n 1 $w/$1/train_log.jsonl; }
start=$(date +%s)
(python3 -m metabench.cli train --preset tiny --out $w/tiny $steps && pack tiny && echo "tiny $(( $(date +%s) - start )) s" \
  && python3 -m metabench.cli extend $w/tiny --factor 2 --out $w/tiny-yarn2x --steps 150 --workers 2 --device cuda >/dev/null \
  && pack tiny-yarn2x) &
(python3 -m metabench.cli train --preset tiny --no-meta-attention --out $w/tiny-nometa $steps && pack tiny-nometa \
  && echo "tiny-nometa $(( $(date +%s) - start )) s" \
  && python3 -m metabench.cli extend $w/tiny-nometa --factor 2 --out $w/tiny-nometa-yarn2x --steps 150 --workers 2 --device cuda >/dev/null \
  && pack tiny-nometa-yarn2x) &
wait
echo "all $(( $(date +%s) - start )) s"
