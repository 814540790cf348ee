#!/usr/bin/env bash
# The learning proof end to end, through the product's commands. Usage:
#   examples/run_learn_video.sh [OUT] [STEP...]      STEP: data curate base latents fit vae report long (default: all)
# data + curate run anywhere (Ray on the local CPUs); base, latents, fit, vae, report and long want a GPU. `latents`
# adds the base VAE's latents to the shards (OUT/latents), which `fit` trains from (no video decode, no VAE
# encode per step). `base` stops (exit 3) when its fitted VAE does not keep colour, direction and presence on
# unseen clips (OUT/base/autoencoder_check.json). `fit` resumes from OUT/train/checkpoints/last.ckpt when it exists, so
# calling it again trains further; Lightning's max_time counts earlier runs too, so give the total in FIT_TIME
# (DD:HH:MM:SS, default 00:00:05:00).
# GPU time is what such a run costs, so two pairs share the GPU when both of a pair are asked: the temporal VAE
# fine-tune (`vae`, needs only `base`) trains beside `fit`, and the short-clip `report` runs beside `long`; the second
# of each pair writes OUT/logs/STEP.log. Each step prints when it ended, in seconds from the start.
# Environment: FIT_TIME; BASE_VAE, a VAE folder fitted by an earlier `base` (OUT/base/vae), which `base` then uses
# instead of fitting one (its latents stay valid); REPORT_ARGS and LONG_ARGS, more arguments of the two reports
# (e.g. LONG_ARGS="--sweep shifted --budget-minutes 5").
set -euo pipefail
OUT=${1:-runs/lv}
shift || true
STEPS=${*:-data curate base latents fit vae report long}
for s in $STEPS; do
  case $s in data | curate | base | latents | fit | vae | report | long) ;;
    *) echo "run_learn_video: unknown step '$s' (steps: data curate base latents fit vae report long)" >&2; exit 2 ;;
  esac
done
has() { [[ " $STEPS " == *" $1 "* ]]; }
began=$SECONDS
common=(--model.init_args.pretrained "$OUT/base")

step_data() { python -m examples.learn_video data --out "$OUT/webvid"; }
step_curate() {
  vidrd manifest webvid "$OUT/webvid" --out "$OUT/webvid.parquet"
  vidrd curate captioned --manifest "$OUT/webvid.parquet" --out "$OUT/shards" --config examples/learn_video_curate.yaml
  vidrd shards verify "$OUT/shards"
}
step_base() {
  local reuse=()
  [ -n "${BASE_VAE:-}" ] && reuse=(--vae-from "$BASE_VAE")
  python -m examples.learn_video base --out "$OUT/base" "${reuse[@]}"
}
step_latents() { vidrd latents --pretrained "$OUT/base" --shards "$OUT/shards" --out "$OUT/latents" --size 64; }
step_fit() {
  local resume=()
  [ -f "$OUT/train/checkpoints/last.ckpt" ] && resume=(--ckpt_path last)
  vidrd train fit --config examples/learn_video.yaml "${common[@]}" --data.train "[{path: $OUT/latents}]" \
    --model.init_args.export_dir "$OUT/export" \
    --trainer.default_root_dir "$OUT/train" --trainer.max_time "${FIT_TIME:-00:00:05:00}" "${resume[@]}"
}
step_vae() {
  vidrd train fit --config examples/learn_video_vae.yaml "${common[@]}" --data.train "[{path: $OUT/shards}]" \
    --model.init_args.export_dir "$OUT/vae-export" \
    --trainer.default_root_dir "$OUT/vae-train"
}
step_report() {
  # shellcheck disable=SC2086  # REPORT_ARGS is a list of arguments
  python -m examples.learn_video report --checkpoint "$OUT/export" --run-dir "$OUT/train" --out "$OUT/report" \
    --force ${REPORT_ARGS:-}
}
step_long() {  # long videos at the seams, figure 6, and the temporal decoder's flicker (when `vae` has run)
  local vae=()
  [ -d "$OUT/vae-export/vae" ] && vae=(--vae "$OUT/vae-export/vae")
  # shellcheck disable=SC2086  # LONG_ARGS is a list of arguments
  python -m examples.learn_long_video --checkpoint "$OUT/export" "${vae[@]}" --out "$OUT/long-report" \
    --workers "${WORKERS:-8}" --force ${LONG_ARGS:-}
}

run() { "step_$1"; echo "run_learn_video: $1 ended at $((SECONDS - began)) s"; }
# `first` in the foreground and `second` beside it when both are asked; either failing fails the pair.
pair() {
  local first=$1 second=$2
  if has "$first" && has "$second"; then
    mkdir -p "$OUT/logs"
    run "$second" > "$OUT/logs/$second.log" 2>&1 &
    local pid=$! rc
    # Not `run ... || rc=$?`: bash ignores `set -e` inside a command that `||` tests, so a failing step would go on.
    set +e
    (set -e; run "$first")
    rc=$?
    wait "$pid" || { echo "run_learn_video: $second failed ($OUT/logs/$second.log)" >&2; rc=1; }
    set -e
    return "$rc"
  fi
  if has "$first"; then run "$first"; fi
  if has "$second"; then run "$second"; fi
}

for s in data curate base latents; do
  if has "$s"; then run "$s"; fi
done
pair fit vae
pair long report
