"""Model wrappers the curation stages use (BLIP-2, CLIP, MiniGPT-4)."""
