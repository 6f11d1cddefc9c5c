#!/usr/bin/env bash
# Every figure and table of the study in docs/results.md, from the runs under results/study (their config.json
# and metrics.jsonl are in the repository):      bash studies/figures.sh        (writes docs/figures/study/)
# With the virtual environment of the README, `wsrl` is .venv/bin/wsrl: activate it or set WSRL=.venv/bin/wsrl.
# STUDY and FIGURES name another results root and output folder (absolute paths).
set -euo pipefail
cd "$(dirname "$0")/.."
WSRL=${WSRL:-wsrl}
S=${STUDY:-results/study}
F=${FIGURES:-docs/figures/study}
runs() {  # the run folders of these labels, on every task that has them
    for label in "$@"; do find "$S" -mindepth 2 -maxdepth 2 -type d -name "$label" | sort; done
}
"$WSRL" plot $(runs wsrl wsrl-no-warmup calql-ft iql-ft sac-fast) --out "$F/no-retention"            # F1, F2, F3
"$WSRL" plot $(runs wsrl calql-ft-retain iql-ft-retain rlpd) --out "$F/retention"                     # F4
"$WSRL" plot $(runs wsrl wsrl-warmup-uniform wsrl-warmup-dataset) --out "$F/warmup-source"           # F5
"$WSRL" plot $(runs wsrl wsrl-init-policy wsrl-init-critic wsrl-init-none) --out "$F/initialisation"  # F6
"$WSRL" summary "$S" > "$F/summary.txt"
"$WSRL" findings "$S" --json "$F/findings.json" > "$F/findings.md"                                   # the table of findings
echo "wrote $F"
