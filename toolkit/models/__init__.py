"""Model zoo shared by commands (MLP, small CNN, ResNet-style CNN) and supervised training."""

from toolkit.models.zoo import MODEL_NAMES, build_model

__all__ = ["MODEL_NAMES", "build_model"]
