"""Fine-tune a BiT model on a TFDS dataset or image folder with the BiT-HyperRule.

  bit-train --config transfer:dataset=cifar10,model=BiT-M-R50x1 --workdir W

Any field of bit_train/config.py can follow the colon (`key=val`, tuples as 300x400)
or be set with --config.<field>=<value>.
"""

from bit_train import config as bit_config


def get_config(arg=None):
  return bit_config.apply_arg(bit_config.base_config(), arg)
