#!/bin/bash
# issue 28, third round: `today` and `metasgd` on the held-out third, realistic prior, seed 0,
# photos in the order fixed before the runs (docs/adaptation.md, "Issue 28, third round: Meta-SGD").
# usage: docs/adaptation-study-28c/check.sh SETTING [CHECKPOINT]   (one pass per setting, same cases)
export OMP_NUM_THREADS=1  # 2 threads on 2 cores shared with 4-6 other processes: steps up to 40x slower
common="--stage final --split check --prior oracle-restored --seed 0 --setting $1
        --lq-size 80 --face-lq 24 --degradation ood --degradation iid ${2:+--metasgd $2}"
for photo in img20.jpg img3.png img30.jpg img56.jpg img17.jpg img2.jpg img22.jpg img26.png img35.jpg img39.png img61.jpg; do
  .venv/bin/f2n-eval study run --out docs/adaptation-study-28c/check.jsonl $common --photo $photo
done
echo "done $?"
