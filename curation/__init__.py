"""Curation: Ray stages that turn source manifests into WebDataset shards, and tools to inspect them."""
