"""``vidrd shards``: look at what the pipeline wrote (ls, stats, show, verify, gallery)."""
