"""Few-shot linear evaluation of a model's frozen pre-logits, with bit-eval.

  bit-eval --config fewshot:dataset=cifar10,model=BiT-M-R50x1 --workdir E
  bit-eval --config fewshot:dataset=image_folder,data_dir=photos,model_path=W/export --workdir E
  bit-eval --config fewshot:dataset=oxford_iiit_pet --config.evals.fewshot.shots='(1,5)' --workdir E

For k = 1, 5, 10 and 25 examples per class of the dataset's train split and three
seeds, a ridge classifier is fitted to the pre-logits and measured on the eval split
(see bit_train/evaluators/fewshot.py). head=new: the model's own head is not used,
so any model loads (a feature-vector or classification hub module, an .npz with or
without its head, a native model, a trainer export's hub module).
"""

from ml_collections import config_dict

from bit_train import config as bit_config


def get_config(arg=None):
  config = bit_config.base_config()
  config.head = "new"
  config.eval_batch_size = 64
  config.evals.fewshot = dict(
      type="fewshot", shots=(1, 5, 10, 25), seeds=(0, 1, 2), l2_reg=1024.0,
      split=config_dict.placeholder(str),  # held-out split; None: the eval split
      train_split=config_dict.placeholder(str))  # None: the dataset's train split
  return bit_config.apply_arg(config, arg)
