"""What the trainer cuts from a shard's video by default, and so the fewest frames a curated video must have:
8 keyframes every 4 frames (``training.data.ClipConfig``'s defaults), 29 frames in all."""

KEYFRAMES = 8
KEYFRAME_STRIDE = 4
MIN_CLIP_FRAMES = (KEYFRAMES - 1) * KEYFRAME_STRIDE + 1
