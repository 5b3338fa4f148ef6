"""ips: Iterative Patch Selection on images of any size, from Python.

The same C++ library as the ``ips`` command line: configs, slides and their tissue tiles, models
that predict and select, and the train / features / tiles jobs. Tensors are torch.Tensor values
shared with the library, not copied. docs/PYTHON.md has a worked example.
"""
import torch  # noqa: F401  (first: the extension uses torch's own libraries and tensor types)

from ._ips import (  # noqa: F401
    Config,
    Model,
    Slide,
    Tiles,
    __version__,
    features,
    set_threads,
    tiles,
    train,
    versions,
)

__all__ = ["Config", "Model", "Slide", "Tiles", "features", "set_threads", "tiles", "train", "versions"]
