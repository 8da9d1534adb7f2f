#!/bin/bash
# issue 28, third round, the control: `metasgd` with the training run's initial state (step 0: α at
# its init, MaskNet at m ≈ 1), same cases and order as check.sh, its own rows file.
export OMP_NUM_THREADS=1
common="--stage final --split check --prior oracle-restored --seed 0 --setting metasgd
        --lq-size 80 --face-lq 24 --degradation ood --degradation iid
        --metasgd docs/adaptation-study-28c/metasgd-step0.safetensors"
for photo in img20.jpg img3.png img30.jpg img56.jpg img17.jpg img2.jpg img22.jpg img26.png img35.jpg img39.png img61.jpg; do
  .venv/bin/f2n-eval study run --out docs/adaptation-study-28c/control.jsonl $common --photo $photo
done
echo "done $?"
