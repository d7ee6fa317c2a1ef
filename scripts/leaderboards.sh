#!/usr/bin/env bash
# Rebuild leaderboards/ from real runs of the bundled reference models:
#   bash scripts/leaderboards.sh
# Evaluates reference_model/{tiny,tiny-nometa} at 0.75x and 1x of their 256-token
# window and beyond it (1.5x, 2x, allowed on purpose), and their YaRN-2x extensions
# at all four lengths, on the default suite with meta-tokens in place; analyses both
# base models (metabench analyze); then writes the HTML leaderboard and the
# regression baseline that the example CI workflow
# checks. Runs resume, so a second call only rebuilds the pages.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs/leaderboards}
common=(--suite default --context 256 --lengths 0.75x,1x,1.5x,2x --samples 20 --marker '<|meta|>' --quiet)
for m in tiny tiny-nometa tiny-yarn2x tiny-nometa-yarn2x; do
  metabench run --model "hf:reference_model/$m" --name "$m" --allow-beyond-context "${common[@]}" --out "$RUNS/$m"
done
# The paper's analyses of both base models (its suite at 1x, 10 prompts per task, with the
# zeroed-positional-encoding ablation); the page shows them in its Analyses section.
for m in tiny tiny-nometa; do
  [ -f "$RUNS/analysis/$m/analysis.json" ] || metabench analyze "reference_model/$m" --samples 10 --out "$RUNS/analysis/$m"
done
metabench report "$RUNS"/tiny "$RUNS"/tiny-nometa "$RUNS"/tiny-yarn2x "$RUNS"/tiny-nometa-yarn2x \
  --analysis tiny="$RUNS/analysis/tiny" --analysis tiny-nometa="$RUNS/analysis/tiny-nometa" \
  --title "metabench reference models (tiny)" --out leaderboards/reference-tiny/index.html
mkdir -p leaderboards/reference-tiny/runs
for m in tiny tiny-nometa tiny-yarn2x tiny-nometa-yarn2x; do
  cp "$RUNS/$m/summary.json" "leaderboards/reference-tiny/runs/$m.summary.json"
done
for m in tiny tiny-nometa; do
  cp "$RUNS/analysis/$m/analysis.json" "leaderboards/reference-tiny/runs/$m.analysis.json"
done
# The checkpoint-regression workflow's baseline: the bundled tiny model on the smoke suite.
metabench run --model hf:reference_model/tiny --name tiny --suite smoke --context 256 --lengths 0.75x,1x \
  --samples 50 --marker '<|meta|>' --quiet --out "$RUNS/tiny-smoke"
metabench baseline "$RUNS/tiny-smoke" --out leaderboards/baselines/smoke.json
