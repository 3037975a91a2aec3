"""Multi-label (ReaL) scoring: a prediction is right when it hits any of an image's
labels; images without a label are left out. The labels come from the dataset's
ReaL feature (imagenet2012_real's `real_label`), or the entry's label_key."""

from bit_train.errors import UserError
from bit_train.evaluators import classification


class Real(classification.Classification):
  MULTILABEL = True
  SCORING = "ReaL (any label)"

  def _label_key(self):
    key = self.entry.label_key or self.source.multilabel_key
    if key is None:
      raise UserError(f"{self.source.spec.dataset!r} has no ReaL labels: set the "
                      "entry's label_key to a feature holding several labels.")
    return key

  def _why_empty(self):
    return " (for ReaL: no image has a ReaL label)"
