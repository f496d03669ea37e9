#!/usr/bin/env bash
# Rebuild the shipped `demo` reward model from scratch on CPU (about 1.5 hours on 2 cores):
# collect FetchReach trajectories, train a tiny Qwen3-VL Robometer, evaluate it on held-out
# episodes, then add hard negatives (gripper pressed on the table / stopped at a decoy point away
# from the target: the exploit SAC found), fine-tune on the union, evaluate old vs new on both
# held-out sets, and copy the fine-tuned model (only if it passes the compare.py gate, else the
# from-scratch one) with a regenerated model card into rlrm/models/assets/demo.
#
#   bash experiments/demo_model/run.sh            # everything
#   STAGES="eval ship" bash experiments/demo_model/run.sh   # only some stages (ship = from-scratch model)
#   STAGES="hardneg finetune compare ship_finetuned" bash experiments/demo_model/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export MUJOCO_GL="${MUJOCO_GL:-egl}" HF_HUB_OFFLINE=1
PY="${PY:-python}"
OUT="${OUT:-outputs/demo_model}"
OUT2="${OUT2:-outputs/demo_model_v2}"   # hard negatives + fine-tune
STAGES="${STAGES:-collect train eval hardneg finetune compare ship_finetuned}"
DISTRACTORS=("open the drawer" "pick up the black block and move it to the red target" "close the gripper"
             "wipe the table with the sponge" "stack the red block on the blue block" "turn on the faucet")

for stage in $STAGES; do
  case "$stage" in
    collect)  # ~5 min: 310 train + 68 held-out episodes of 51 frames (128x128, rlrm/FetchReach-v0 defaults)
      "$PY" experiments/demo_model/collect.py --out "$OUT/data" ;;
    train)    # ~45 min on 2 shared cores; checkpoints every 50 steps, resumes if interrupted
      "$PY" -m rlrm train --config demo data="$OUT/data/train" output_dir="$OUT/run" ;;
    eval)     # held-out metrics: one query per episode (full) and one per step as RL sees it (dense)
      "$PY" -m rlrm eval "$OUT/data/heldout" --model "$OUT/run/model" --json "$OUT/eval_full.json" \
        --plots "$OUT/plots" --instructions "${DISTRACTORS[@]}"
      "$PY" -m rlrm eval "$OUT/data/heldout" --model "$OUT/run/model" --mode dense --no-confusion \
        --json "$OUT/eval_dense.json" --plots "$OUT/plots_dense" ;;
    ship)     # weights + tokenizer + MODEL_CARD.md (numbers read from the eval JSONs)
      "$PY" experiments/demo_model/ship.py --run "$OUT/run" --full "$OUT/eval_full.json" \
        --dense "$OUT/eval_dense.json" --plots "$OUT/plots" ;;
    hardneg)  # ~2 min: 160 train + 25 held-out hard negatives (table, decoy, hover), + symlinks to the $OUT/data episodes
      "$PY" experiments/demo_model/collect.py --hard-negatives --link "$OUT/data" --out "$OUT2/data" ;;
    finetune) # ~10 min, 1 thread: from $OUT/run/model, lower lr, 500 steps on original + hard negatives
      "$PY" -m rlrm train --config demo_hardneg model="$OUT/run/model" data="$OUT2/data/train" \
        output_dir="$OUT2/run" ;;
    compare)  # old vs new, full and dense, on the original held-out set and the hard negatives
      for which in old new; do
        model="$OUT/run/model"; [ "$which" = new ] && model="$OUT2/run/model"
        mkdir -p "$OUT2/eval_$which"
        for set in orig hard; do
          data="$OUT/data/heldout"; [ "$set" = hard ] && data="$OUT2/data/heldout_hard"
          conf=(--no-confusion); [ "$set" = orig ] && conf=(--instructions "${DISTRACTORS[@]}")
          "$PY" -m rlrm eval "$data" --model "$model" --json "$OUT2/eval_$which/${set}_full.json" \
            --plots "$OUT2/plots_${which}_$set" "${conf[@]}"
          "$PY" -m rlrm eval "$data" --model "$model" --mode dense --no-confusion \
            --json "$OUT2/eval_$which/${set}_dense.json"
        done
      done
      "$PY" experiments/demo_model/compare.py --old "$OUT2/eval_old" --new "$OUT2/eval_new" \
        --json "$OUT2/compare.json" || true ;;   # exit 1 = gate failed; ship_finetuned reads the JSON
    ship_finetuned)  # the fine-tuned model if compare.json says ship, else the from-scratch one
      if "$PY" -c "import json,sys; sys.exit(0 if json.load(open('$OUT2/compare.json'))['ship'] else 1)"; then
        "$PY" experiments/demo_model/ship.py --run "$OUT2/run" --full "$OUT2/eval_new/orig_full.json" \
          --dense "$OUT2/eval_new/orig_dense.json" --plots "$OUT2/plots_new_orig" --heldout "$OUT2/data/heldout" \
          --base-run "$OUT/run" --compare "$OUT2/compare.json"
      else
        echo "fine-tune failed the compare.py gate: shipping the from-scratch model" >&2
        "$PY" experiments/demo_model/ship.py --run "$OUT/run" --full "$OUT/eval_full.json" \
          --dense "$OUT/eval_dense.json" --plots "$OUT/plots"
      fi ;;
    *) echo "unknown stage $stage (expected collect, train, eval, ship, hardneg, finetune, compare, ship_finetuned)" >&2
       exit 2 ;;
  esac
done
