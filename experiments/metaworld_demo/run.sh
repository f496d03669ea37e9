#!/usr/bin/env bash
# Rebuild the multi-task MetaWorld `demo_mw` reward model and the BC base policies from scratch on CPU:
# collect scripted push / pick-place / drawer-open episodes as RL renders them (front + side views tiled),
# train a tiny Qwen3-VL Robometer, judge it on held-out episodes, ship it into rlrm/models/assets/demo_mw,
# and train the mediocre base policies shipped in envs/assets/bases.
#
#   bash experiments/metaworld_demo/run.sh                         # everything (~1.5 h on 2 cores)
#   STAGES="gate ship" bash experiments/metaworld_demo/run.sh      # only some stages
#   STAGES="hard finetune gate ship" OUT=outputs/demo_mw3 BASE_OUT=outputs/demo_mw bash ...   # the third model:
#     hard negatives (decoys, base-policy rollouts, more near misses) added to a copy of BASE_OUT's data, then
#     the second model fine-tuned on all of it
set -euo pipefail
cd "$(dirname "$0")/../.."
export MUJOCO_GL="${MUJOCO_GL:-egl}" HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
PY="${PY:-python}"
OUT="${OUT:-outputs/demo_mw}"
STAGES="${STAGES:-collect train gate ship bases}"

for stage in $STAGES; do
  case "$stage" in
    collect)  # one process per task (~8 min each), then the counterfactual episodes from what they wrote
      for task in push-v3 pick-place-v3 drawer-open-v3; do
        "$PY" experiments/metaworld_demo/collect.py --out "$OUT/data" --tasks "$task" --no-counterfactual &
      done
      wait
      "$PY" experiments/metaworld_demo/collect.py --out "$OUT/data" --counterfactual-only ;;
    hard)     # hard negatives (collect.py --hard-negatives) on a hard-linked copy of $BASE_OUT/data
      [ -d "$OUT/data" ] || { mkdir -p "$OUT"; cp -al "${BASE_OUT:?set BASE_OUT}/data" "$OUT/data"; }
      for task in push-v3 pick-place-v3 drawer-open-v3; do
        "$PY" experiments/metaworld_demo/collect.py --out "$OUT/data" --tasks "$task" --hard-negatives 30 30 15
      done ;;
    finetune) # the model of $BASE_OUT fine-tuned on $OUT's data (a lower learning rate, resumes like train)
      "$PY" -m rlrm train --config demo_mw data="$OUT/data/train" output_dir="$OUT/run" \
        model="${BASE_OUT:?set BASE_OUT}/run/model" "~tiny" lr=3.0e-4 steps="${FINETUNE_STEPS:-3000}" \
        warmup_steps=20 max_minutes="${FINETUNE_MINUTES:-35}" ;;
    train)    # checkpoints every 50 steps and resumes; max_minutes in configs/train/demo_mw.yaml stops it
      "$PY" -m rlrm train --config demo_mw data="$OUT/data/train" output_dir="$OUT/run" ;;
    gate)     # held-out targets per task (exit 1 = a target missed; the report is written either way)
      "$PY" experiments/metaworld_demo/gate.py --model "$OUT/run/model" --data "$OUT/data/heldout" \
        --json "$OUT/gate.json" || true ;;
    ship)     # weights + MODEL_CARD.md into rlrm/models/assets/demo_mw, summary into results/
      "$PY" experiments/metaworld_demo/ship.py --run "$OUT/run" --gate "$OUT/gate.json" --data "$OUT/data" ;;
    bases)    # BC on 2..20 expert demos per task; ships the one nearest 0.35 success (<= 0.5)
      "$PY" experiments/metaworld_demo/base_policies.py --out envs/assets/bases \
        --json experiments/results/metaworld_base_policies.json ;;
    *) echo "unknown stage $stage (expected collect, hard, train, finetune, gate, ship, bases)" >&2
       exit 2 ;;
  esac
done
