"""Every way to name a model -> images in [0, 1] in, logits or pre-logits out.

The families that ship register themselves on import: BiT's ResNet-v2 (`bit`).
Building a model is `factory.create_model`; importing this package imports no
TensorFlow (the registry's names and records only).
"""

from bit_train.models import bit  # noqa: F401 (registers ResNet-v2 and the BiT models)
