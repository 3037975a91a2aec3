"""bit-train: fine-tune Big Transfer (BiT) models with the BiT-HyperRule."""

__version__ = "0.1.0"

from bit_train import console  # pylint: disable=g-import-not-at-top

# Before any module of ours imports TensorFlow: keep its C++ start-up lines out of
# a bit-train / bit-eval / bit-predict run (see console.py; --verbose shows them).
console.quiet_native_logs()
