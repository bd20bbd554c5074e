"""toolkit: command-line tools for four pieces of applied ML research.

``toolkit cluster`` (Hi-LANDER), ``toolkit train-compatible`` (BCT / PCT),
``toolkit compress`` (SVD-factorised embeddings) and ``toolkit train-encrypted``
(CKKS logistic regression).  Importing this package is cheap: heavy libraries
(torch, dgl, tenseal) are imported inside the commands that need them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("toolkit")
except PackageNotFoundError:  # running from a checkout without installation
    __version__ = "0.0.0+local"

__all__ = ["__version__"]
