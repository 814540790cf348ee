"""The training clip the trainer cuts from a shard's video by default, and so the fewest frames a curated video must
have: 8 frames every 4 frames (``training.data.ClipConfig``'s defaults), 29 frames in all."""

TRAIN_CLIP_FRAMES = 8
TRAIN_CLIP_STRIDE = 4
MIN_CLIP_FRAMES = (TRAIN_CLIP_FRAMES - 1) * TRAIN_CLIP_STRIDE + 1
