#!/bin/bash
# issue 28, second round: the screen (docs/adaptation.md "The rule for this round")
export OMP_NUM_THREADS=2
.venv/bin/f2n-eval study run --out docs/adaptation-study-28b/screen.jsonl --stage screen --split tune \
  --photo img19.png --photo img23.png --photo img33.png --photo img36.jpg --photo img49.png \
  --prior oracle-restored --degradation iid --degradation ood --seed 0 \
  --setting today --setting lowpass --setting lowpass-swd --setting lowpass-swd3 --lq-size 80 --face-lq 24
echo "done $?"
