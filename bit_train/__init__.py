"""bit-train: fine-tune Big Transfer (BiT) models with the BiT-HyperRule."""

__version__ = "0.1.0"
