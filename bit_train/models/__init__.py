"""Every way to name a BiT model -> images in [0, 1] in, logits or pre-logits out."""

from bit_train.models.factory import create_model  # noqa: F401
from bit_train.models.factory import model_name  # noqa: F401
from bit_train.models.weights import export_hub_module  # noqa: F401
