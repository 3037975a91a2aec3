"""Every way to name a model -> images in [0, 1] in, logits or pre-logits out.

The families that ship register themselves on import: BiT's ResNet-v2 (`bit`).
"""

from bit_train.models import bit  # noqa: F401 (registers ResNet-v2 and the BiT models)
from bit_train.models.factory import create_model  # noqa: F401
from bit_train.models.factory import model_location  # noqa: F401
from bit_train.models.factory import model_name  # noqa: F401
from bit_train.models.hub import export_module  # noqa: F401
