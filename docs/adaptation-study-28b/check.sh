#!/bin/bash
# issue 28, second round: the check on the held-out third, seed 0: img3, img30, img35 first (the
# fixed draw), then the other eight held-out photos, until the deadline. $1 is the screen's pick.
export OMP_NUM_THREADS=2
PICK=${1:?pick}
.venv/bin/f2n-eval study run --out docs/adaptation-study-28b/check.jsonl --stage final --split check \
  --photo img3.png --photo img30.jpg --photo img35.jpg \
  --prior oracle-restored --degradation ood --degradation iid --seed 0 \
  --setting today --setting $PICK --lq-size 80 --face-lq 24
echo "first three done $?"
.venv/bin/f2n-eval study run --out docs/adaptation-study-28b/check.jsonl --stage final --split check \
  --photo img17.jpg --photo img2.jpg --photo img20.jpg --photo img22.jpg --photo img26.png \
  --photo img39.png --photo img56.jpg --photo img61.jpg \
  --prior oracle-restored --degradation ood --degradation iid --seed 0 \
  --setting today --setting $PICK --lq-size 80 --face-lq 24
echo "done $?"
