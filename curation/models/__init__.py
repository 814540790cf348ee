"""Model wrappers the curation stages use (BLIP-2 so far; CLIP and MiniGPT-4 follow in issue 7)."""
