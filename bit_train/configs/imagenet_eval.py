"""Evaluate a BiT classifier on ILSVRC-2012 validation (plus ReaL, ImageNet-V2, ...).

  bit-eval --config imagenet_eval:model=BiT-S-R101x3,manual_dir=/data/ilsvrc --workdir W
  bit-eval --config "imagenet_eval:model=BiT-M-R50x1,extra_evals=imagenet2012_real;imagenet_v2" --workdir W

The model keeps its own head (the ILSVRC-2012 classifier of the named model, or
model_path: a TF Hub classification module, an .npz file with its head, a trainer
export W/export). The resolution is crop when set, else a trainer export's, else
the HyperRule's for the dataset (imagenet2012: 480, or 384 with
resolution_rule=paper).
"""

from bit_train import config as bit_config


def get_config(arg=None):
  config = bit_config.base_config()
  config.dataset = "imagenet2012"
  # eval_split None: the dataset's eval split (validation for imagenet2012).
  config.model = "BiT-S-R101x3"
  config.head = "keep"
  # A folder without an eval split folder is measured whole (every image).
  config.holdout_fraction = 0.0
  config.eval_batch_size = 64
  return bit_config.apply_arg(config, arg)
