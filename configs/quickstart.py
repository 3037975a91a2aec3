"""The embedded default: runs offline with nothing downloaded.

Until the quickstart lands it plans a run for a bundled dataset description (the
1,797 8x8 handwritten digits that ship with scikit-learn): `make demo`.
"""

from bit_train import config as bit_config


def get_config(arg=None):
  config = bit_config.base_config()
  config.dataset = "digits"
  config.num_examples = 1797
  config.num_classes = 10
  config.image_size = (8, 8)
  config.model = "BiT-M-R50x1"
  config.batch_size = 64
  return bit_config.apply_arg(config, arg)
