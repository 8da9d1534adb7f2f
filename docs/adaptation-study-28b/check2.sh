#!/bin/bash
# issue 28, second round: the rest of the check, `today` only (the decision needs only its rows:
# the ceiling is read off them); img30 iid, then img35, then the other eight held-out photos.
export OMP_NUM_THREADS=2
common="--stage final --split check --prior oracle-restored --seed 0 --setting today --lq-size 80 --face-lq 24"
.venv/bin/f2n-eval study run --out docs/adaptation-study-28b/check.jsonl $common --photo img30.jpg --degradation iid
.venv/bin/f2n-eval study run --out docs/adaptation-study-28b/check.jsonl $common --photo img35.jpg --degradation ood --degradation iid
.venv/bin/f2n-eval study run --out docs/adaptation-study-28b/check.jsonl $common \
  --photo img17.jpg --photo img2.jpg --photo img20.jpg --photo img22.jpg --photo img26.png \
  --photo img39.png --photo img56.jpg --photo img61.jpg --degradation ood --degradation iid
echo "done $?"
