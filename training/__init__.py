"""Training: the VidRD model (``training.model``), the WebDataset data module and the Lightning modules."""
