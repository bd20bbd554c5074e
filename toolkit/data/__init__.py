"""Data loading shared by every command: feature/label files, images, bundled datasets.

All loaders validate what they read and raise :class:`toolkit.errors.InputError`
with the file, field and expected form on bad input.
"""

from toolkit.data.arrays import check_features, check_labels, load_features, load_labels
from toolkit.data.images import load_idx, load_image_folder

__all__ = ["check_features", "check_labels", "load_features", "load_labels", "load_idx",
           "load_image_folder"]
