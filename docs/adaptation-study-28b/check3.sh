#!/bin/bash
# issue 28, second round: the check at seed 1, `today` only, as far as time allows (stopped at 13:15 UTC)
export OMP_NUM_THREADS=2
.venv/bin/f2n-eval study run --out docs/adaptation-study-28b/check.jsonl --stage final --split check --prior oracle-restored \
  --seed 1 --setting today --lq-size 80 --face-lq 24 --degradation ood --degradation iid
echo "done $?"
