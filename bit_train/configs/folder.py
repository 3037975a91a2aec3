"""Fine-tune on your own images: one sub-folder per class.

  bit-train --config folder:data_dir=/path/to/root --workdir W

The root holds `<class>/*.jpg` (png, bmp, gif, webp too), or `train/<class>/...` and
`test/<class>/...`. Without an eval split folder, holdout_fraction of every class is
held out for evaluation. The image size is measured from the images.
"""

from bit_train import config as bit_config


def get_config(arg=None):
  config = bit_config.base_config()
  config.dataset = "image_folder"
  return bit_config.apply_arg(config, arg)
