"""Class names of a model's outputs and how they line up with a dataset's classes.

A label file lists one class per line, line i naming output i: a trainer export's
`class_names.txt`, the ILSVRC-2012 WordNet ids (`n01440764`), or a lemma list
(`tench, Tinca tinca`). The standard ILSVRC-2012 order, which the official BiT
classifiers use, is the sorted WordNet ids: the order of TFDS `imagenet2012` labels.
"""

from bit_train import reading
from bit_train.errors import UserError


def read_names(path, distinct=False):
  """The class names in a label file, one per line (blank lines at the end dropped).
  distinct: a name twice makes the file unreadable (one the trainer wrote, which
  names each class once; a user's lemma list may name two classes alike)."""
  names = reading.read_lines(path, "label file",
                             "save it as UTF-8 text, one class name per line", distinct)
  if not names:
    raise UserError(f"the label file {path!r} is empty: it needs one class name per "
                    "line, line i naming the model's output i.")
  return names


def class_order(model_names, dataset_names, where):
  """The model's output index of every dataset class; None when they are in order.

  A model name matches a dataset name when the whole line does, or else its first
  word does (`n01440764 tench` matches `n01440764`). Every dataset class must be
  found among the model's outputs exactly once; `where` names the label file.
  """
  dataset_names = list(dataset_names)
  if len(model_names) != len(dataset_names):
    raise UserError(f"{where} lists {len(model_names)} classes but the dataset has "
                    f"{len(dataset_names)}: give the label file of this model.")
  index = {name: i for i, name in enumerate(model_names)}
  if not set(dataset_names) <= set(index):
    index = {(name.split() or [""])[0]: i for i, name in enumerate(model_names)}
  missing = [name for name in dataset_names if name not in index]
  if missing or len(index) != len(model_names):
    what = (f"lacks {len(missing)} of the dataset's classes (e.g. "
            f"{', '.join(missing[:3])})" if missing else "names a class twice")
    raise UserError(f"{where} {what}: its lines must name the dataset's classes "
                    f"({', '.join(dataset_names[:3])}, ...), one per model output.")
  order = [index[name] for name in dataset_names]
  return None if order == list(range(len(order))) else order
