"""bit-train: fine-tune Big Transfer (BiT) models with the BiT-HyperRule.

Importing the package changes nothing in the process: the entry points (bit-train,
bit-eval, bit-predict) quiet the libraries' logs when they run (see console.py).
"""

__version__ = "0.1.0"
