#!/usr/bin/env bash
# CPU latency of this checkout against another commit, in the same run: `mambairv2 bench` for
# light x4 at 128² and base x4 at 64², alternating between the two trees ROUNDS times so that
# both see the same machine state. JSON per run into OUT_DIR; a summary (median of the rounds'
# medians) on stdout.
#   bash benchmarks/compare_commits.sh REV [ROUNDS] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
rev=$1; rounds=${2:-3}; out=${3:-benchmarks/results/compare}
mkdir -p "$out"
other=$(mktemp -d)
trap 'git worktree remove --force "$other" >/dev/null 2>&1 || rm -rf "$other"' EXIT
git worktree add -q --detach "$other" "$rev"
declare -A trees=([base]="$other/src" [head]="$PWD/src")
for r in $(seq "$rounds"); do
  for which in base head; do
    for spec in "light 128 5" "base 64 3"; do
      set -- $spec
      PYTHONPATH="${trees[$which]}" python3 -m mambairv2 bench --variant "$1" --scale 4 --size "$2" \
        --threads 2 --repeats "$3" --json "$out/${which}_$1_x4_$2_r$r.json" 2>/dev/null
    done
  done
done
python3 - "$out" "$rev" <<'PY'
import json, statistics, sys
from pathlib import Path
out, rev = Path(sys.argv[1]), sys.argv[2]
for model in ("light_x4_128", "base_x4_64"):
    row = {}
    for which in ("base", "head"):
        runs = [json.loads(p.read_text())["results"][0]["latency_s"] for p in sorted(out.glob(f"{which}_{model}_r*.json"))]
        row[which] = (statistics.median(runs), runs)
    b, h = row["base"][0], row["head"][0]
    print(f"{model}: {rev} {b:.3f} s, this checkout {h:.3f} s ({h / b:.3f}x); rounds {row['base'][1]} vs {row['head'][1]}")
PY
