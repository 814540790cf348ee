"""Inference: DDIM with classifier-free guidance, iterative long-video generation (FNR, PNS, DSG), evaluation."""
