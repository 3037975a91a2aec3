"""Every way to name a BiT model -> images in [0, 1] in, logits or pre-logits out."""
