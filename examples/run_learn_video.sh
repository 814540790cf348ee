#!/usr/bin/env bash
# The learning proof end to end, through the product's commands. Usage:
#   examples/run_learn_video.sh [OUT] [STEP...]      STEP: data curate base latents fit vae report long (default: all)
# data + curate run anywhere (Ray on the local CPUs); base, latents, fit, vae and report want a GPU. `latents`
# adds the base VAE's latents to the shards (OUT/latents), which `fit` trains from (no video decode, no VAE
# encode per step). `base` stops (exit 3) when its fitted VAE does not keep colour, direction and presence on
# unseen clips (OUT/base/autoencoder_check.json). `fit` resumes from OUT/train/checkpoints/last.ckpt when it exists, so
# calling it again trains further; Lightning's max_time counts earlier runs too, so give the total in FIT_TIME
# (DD:HH:MM:SS, default 00:00:05:00).
set -euo pipefail
OUT=${1:-runs/lv}
shift || true
STEPS=${*:-data curate base latents fit vae report long}
has() { [[ " $STEPS " == *" $1 "* ]]; }
if has data; then python -m examples.learn_video data --out "$OUT/webvid"; fi
if has curate; then
  vidrd manifest webvid "$OUT/webvid" --out "$OUT/webvid.parquet"
  vidrd curate captioned --manifest "$OUT/webvid.parquet" --out "$OUT/shards" --config examples/learn_video_curate.yaml
  vidrd shards verify "$OUT/shards"
fi
if has base; then python -m examples.learn_video base --out "$OUT/base"; fi
if has latents; then vidrd latents --pretrained "$OUT/base" --shards "$OUT/shards" --out "$OUT/latents" --size 64; fi
common=(--model.init_args.pretrained "$OUT/base")
if has fit; then
  resume=()
  [ -f "$OUT/train/checkpoints/last.ckpt" ] && resume=(--ckpt_path last)
  vidrd train fit --config examples/learn_video.yaml "${common[@]}" --data.train "[{path: $OUT/latents}]" \
    --model.init_args.export_dir "$OUT/export" \
    --trainer.default_root_dir "$OUT/train" --trainer.max_time "${FIT_TIME:-00:00:05:00}" "${resume[@]}"
fi
if has vae; then
  vidrd train fit --config examples/learn_video_vae.yaml "${common[@]}" --data.train "[{path: $OUT/shards}]" \
    --model.init_args.export_dir "$OUT/vae-export" \
    --trainer.default_root_dir "$OUT/vae-train"
fi
if has report; then
  python -m examples.learn_video report --checkpoint "$OUT/export" --run-dir "$OUT/train" --out "$OUT/report" --force
fi
if has long; then  # long videos at the seams, figure 6, and the temporal decoder's flicker
  python -m examples.learn_long_video --checkpoint "$OUT/export" --vae "$OUT/vae-export/vae" --out "$OUT/long-report" \
    --workers "${WORKERS:-8}" --force
fi
