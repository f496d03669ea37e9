#!/usr/bin/env bash
# Rebuild the shipped `demo` reward model from scratch on CPU (about an hour on 2 cores):
# collect FetchReach trajectories as `python run_rl.py` renders them (success ball, front + side views
# tiled), train a tiny Qwen3-VL Robometer, evaluate it on held-out episodes, check the ship gate, and
# copy it with a regenerated model card into rlrm/models/assets/demo.
#
#   bash experiments/demo_model/run.sh                      # everything
#   STAGES="eval gate ship" bash experiments/demo_model/run.sh   # only some stages
set -euo pipefail
cd "$(dirname "$0")/../.."
export MUJOCO_GL="${MUJOCO_GL:-egl}" HF_HUB_OFFLINE=1
PY="${PY:-python}"
OUT="${OUT:-outputs/demo4}"
STAGES="${STAGES:-collect train eval gate ship}"
DISTRACTORS=("open the drawer" "pick up the black block and move it to the red target" "close the gripper"
             "wipe the table with the sponge" "stack the red block on the blue block" "turn on the faucet")

for stage in $STAGES; do
  case "$stage" in
    collect)  # ~5 min: 510 train + 91 held-out episodes of 51 tiled 128x256 frames, hard negatives included
      "$PY" experiments/demo_model/collect.py --out "$OUT/data" ;;
    train)    # ~55 min on 1 core of a shared 2-core box; checkpoints every 50 steps, resumes if interrupted
      "$PY" -m rlrm train --config demo data="$OUT/data/train" output_dir="$OUT/run" ;;
    eval)     # held-out metrics: one query per episode (full) and one per step as RL sees it (dense)
      "$PY" -m rlrm eval "$OUT/data/heldout" --model "$OUT/run/model" --json "$OUT/eval_full.json" \
        --plots "$OUT/plots" --instructions "${DISTRACTORS[@]}"
      "$PY" -m rlrm eval "$OUT/data/heldout" --model "$OUT/run/model" --mode dense --no-confusion \
        --json "$OUT/eval_dense.json" --plots "$OUT/plots_dense" ;;
    gate)     # per-kind final progress, VOC, final-frame success F1 against the targets (exit 1 = a target missed)
      "$PY" experiments/demo_model/gate.py "$OUT/eval_full.json" --json "$OUT/gate.json" || true ;;
    ship)     # weights + tokenizer + MODEL_CARD.md (numbers read from the eval JSONs)
      "$PY" experiments/demo_model/ship.py --run "$OUT/run" --full "$OUT/eval_full.json" \
        --dense "$OUT/eval_dense.json" --plots "$OUT/plots" ;;
    *) echo "unknown stage $stage (expected collect, train, eval, gate, ship)" >&2
       exit 2 ;;
  esac
done
