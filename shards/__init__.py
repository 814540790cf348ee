"""The shard contract: how samples are written to and read from WebDataset tar shards with their Parquet index
and rejects (schemas and key rules in ``manifests``). Curation writes through it; training, evaluation and the
``vidrd shards`` commands read through it; it imports neither."""
