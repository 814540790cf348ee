"""Zero-shot UCF-101 evaluation: FVD (I3D), IS (C3D), CLIPSIM, with the paper's 101 prompts."""
