#!/bin/bash
# issue 28, second round: the amended screen (ood, today vs lowpass-swd), then the check's today rows
export OMP_NUM_THREADS=2
.venv/bin/f2n-eval study run --out docs/adaptation-study-28b/screen.jsonl --stage screen --split tune \
  --photo img19.png --photo img36.jpg --photo img49.png \
  --prior oracle-restored --degradation ood --seed 0 \
  --setting today --setting lowpass-swd --lq-size 80 --face-lq 24
echo "done $?"
