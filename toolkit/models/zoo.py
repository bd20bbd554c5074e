"""Embedding classifiers: ``backbone -> embedding [B, E] -> linear head [B, C]``.

Every model exposes ``embed(x)`` (the L2-unnormalised embedding), ``head``
(an ``nn.Linear(E, C)``) and ``forward(x) = head(embed(x))``, so commands can
use either the logits or the embedding.

Configs name a network by its class (the shared ``configs/network/*.yaml``, one file per network:
``_target_: toolkit.models.zoo.MLP``, ``_partial_: true`` and the class's keyword arguments; train-compatible's
``model``, ``old.model``, compare-models' ``arch.*`` and the cluster encoder's ``encoder.network`` all read them)
and :func:`model_from_config` builds it with ``hydra.utils.instantiate``, the lightning-hydra-template's pattern;
the data supply ``in_shape`` and ``num_classes``.  Checkpoints record the short name (:attr:`EmbeddingClassifier.arch`) and
:attr:`EmbeddingClassifier.arch_kwargs`, and :func:`build_model` rebuilds from those, so a checkpoint never
names code to import.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

MODEL_NAMES = ("mlp", "cnn", "resnet")


class EmbeddingClassifier(nn.Module):
    """Base class: subclasses set ``self.backbone`` mapping inputs to ``[B, embed_dim]``.

    Attributes:
        arch: short name of the architecture (a key of :data:`ZOO`), recorded in checkpoints.
        arch_kwargs: the keyword arguments the network was built with (besides ``in_shape`` and
            ``num_classes``); ``build_model(net.arch, in_shape, num_classes, **net.arch_kwargs)`` rebuilds it.
    """

    backbone: nn.Module
    arch: str = ""
    arch_kwargs: dict

    def __init__(self, embed_dim: int, num_classes: int) -> None:
        super().__init__()
        self.embed_dim = int(embed_dim)
        self.num_classes = int(num_classes)
        self.head = nn.Linear(self.embed_dim, self.num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding ``[B, embed_dim]`` float32 for a batch of inputs."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]``."""
        return self.head(self.embed(x))


class MLP(EmbeddingClassifier):
    """Multi-layer perceptron on flattened inputs (``arch = "mlp"``).

    Args:
        in_shape: input shape without the batch dimension, e.g. ``(64,)`` or ``(1, 28, 28)``.
        num_classes: C, the head's output size.
        embed_dim: E.
        hidden: width of the hidden layers.
        depth: number of hidden layers before the embedding layer.
        dropout: dropout probability after each hidden layer.
    """

    arch = "mlp"

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, embed_dim: int = 64,
                 hidden: int = 256, depth: int = 1, dropout: float = 0.1) -> None:
        super().__init__(embed_dim, num_classes)
        self.arch_kwargs = {"embed_dim": int(embed_dim), "hidden": int(hidden), "depth": int(depth),
                            "dropout": float(dropout)}
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(in_shape)
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        layers += [nn.Linear(width, embed_dim)]
        self.backbone = nn.Sequential(*layers)


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class SmallCNN(EmbeddingClassifier):
    """Four conv-BN-ReLU blocks with 2x2 max-pooling (the "Conv-4" of few-shot learning), then a linear embedding.

    Args:
        in_shape: ``(C, H, W)``; a flat ``(D,)`` input is reshaped to a square image when D is a square.
        num_classes: C.
        embed_dim: E.
        width: channels of every conv block.
        blocks: number of conv blocks (each halves H and W while they are >= 2).
    """

    arch = "cnn"

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, embed_dim: int = 64,
                 width: int = 32, blocks: int = 4) -> None:
        super().__init__(embed_dim, num_classes)
        self.arch_kwargs = {"embed_dim": int(embed_dim), "width": int(width), "blocks": int(blocks)}
        c, h, w = _as_image_shape(in_shape)
        layers: list[nn.Module] = [_Reshape((c, h, w))]
        cin = c
        for _ in range(blocks):
            layers.append(_conv_block(cin, width))
            if min(h, w) >= 2:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            cin = width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, embed_dim)]
        self.backbone = nn.Sequential(*layers)


class _Residual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))
        self.skip = (nn.Identity() if stride == 1 and cin == cout else
                     nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class ResNet(EmbeddingClassifier):
    """ResNet-style CNN (He et al., CVPR 2016, basic blocks): a stem and three stages of residual blocks.

    Args:
        in_shape: ``(C, H, W)`` (a square flat input is reshaped).
        num_classes: C.
        embed_dim: E.
        width: channels of the first stage (doubled at each later stage).
        blocks_per_stage: residual blocks per stage.
    """

    arch = "resnet"

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, embed_dim: int = 128,
                 width: int = 16, blocks_per_stage: int = 1) -> None:
        super().__init__(embed_dim, num_classes)
        self.arch_kwargs = {"embed_dim": int(embed_dim), "width": int(width),
                            "blocks_per_stage": int(blocks_per_stage)}
        c, h, w = _as_image_shape(in_shape)
        layers: list[nn.Module] = [_Reshape((c, h, w)), _conv_block(c, width)]
        cin = width
        for stage in range(3):
            cout = width * 2**stage
            for b in range(blocks_per_stage):
                layers.append(_Residual(cin, cout, stride=2 if (b == 0 and stage > 0) else 1))
                cin = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, embed_dim)]
        self.backbone = nn.Sequential(*layers)


class _Reshape(nn.Module):
    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)


def _as_image_shape(in_shape: tuple[int, ...]) -> tuple[int, int, int]:
    in_shape = tuple(int(s) for s in in_shape)
    if len(in_shape) == 3:
        return in_shape  # type: ignore[return-value]
    if len(in_shape) == 2:
        return (1, *in_shape)
    side = math.isqrt(in_shape[0])
    if side * side != in_shape[0]:
        raise ValueError(f"a CNN needs image inputs; flat input of size {in_shape[0]} is not a square image")
    return (1, side, side)


ZOO: dict[str, type[EmbeddingClassifier]] = {"mlp": MLP, "cnn": SmallCNN, "resnet": ResNet}
"""Short name -> class of every zoo network."""

ZOO_TARGETS: dict[str, str] = {f"{cls.__module__}.{cls.__qualname__}": name for name, cls in ZOO.items()}
_TARGET_OF: dict[str, str] = {name: target for target, name in ZOO_TARGETS.items()}
"""``_target_`` path -> short name (``toolkit.models.zoo.MLP`` -> ``mlp``)."""


def build_model(arch: str, in_shape: tuple[int, ...], num_classes: int, **kwargs: object) -> EmbeddingClassifier:
    """Build a zoo model by short name (how checkpoints are rebuilt).

    Args:
        arch: one of :data:`MODEL_NAMES`.
        in_shape: input shape without batch dimension.
        num_classes: classifier head size.
        **kwargs: architecture-specific keyword arguments (see each class).

    Raises:
        ValueError: unknown ``arch`` or an input shape the architecture cannot take.
    """
    if arch not in ZOO:
        raise ValueError(f"unknown model arch '{arch}' (expected one of {', '.join(MODEL_NAMES)})")
    return ZOO[arch](tuple(in_shape), num_classes, **kwargs)


def spec_from_config(node: Any, source: str = "model") -> tuple[str, dict]:
    """``(arch, kwargs)`` of a network config: ``_target_`` naming a zoo class and its keyword arguments.

    Args:
        node: mapping or ``DictConfig`` with ``_target_`` (and optionally ``_partial_``) and the class's
            keyword arguments (``in_shape``/``num_classes`` excluded: the data give them).
        source: config key or file named in errors.

    Raises:
        toolkit.errors.InputError: no ``_target_``, or one that is not a zoo class.
    """
    from omegaconf import DictConfig, OmegaConf

    from toolkit.errors import InputError

    spec = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    target = spec.get("_target_") if isinstance(spec, dict) else None
    if target not in ZOO_TARGETS:
        raise InputError(source, "_target_", f"got {target!r}; expected a zoo network: {', '.join(ZOO_TARGETS)} "
                         "(configs/network/)")
    kwargs = {k: v for k, v in spec.items() if not str(k).startswith("_")}
    return ZOO_TARGETS[target], kwargs


def network_config(name: str, source: str = "model") -> dict:
    """The shared network definition ``configs/network/<name>.yaml`` as a plain dict (``_target_``, ``_partial_``
    and the class's keyword arguments), for keys that name a network by its short name (``old.model``,
    compare-models' ``arch.old`` / ``arch.new``, a plain state_dict's architecture).

    Args:
        name: file stem, e.g. ``"mlp"``; source: config key named in errors.

    Raises:
        toolkit.errors.InputError: no such file, or one that does not name a zoo network.
    """
    from omegaconf import OmegaConf

    from toolkit.config import shared_options
    from toolkit.errors import InputError

    options = {p.stem: p for p in shared_options("network")}
    if name not in options:
        raise InputError(source, None, f"unknown network '{name}' (choices: {', '.join(sorted(options))}; "
                         "configs/network/)")
    spec = OmegaConf.to_container(OmegaConf.load(options[name]), resolve=True)
    spec_from_config(spec, str(options[name]))
    return spec  # type: ignore[return-value]


TRAINING_BYTES_PER_PARAM = 16
"""float32 weights, gradients and AdamW's first and second moments: 4 x 4 bytes per parameter."""


def model_from_config(node: Any, in_shape: tuple[int, ...], num_classes: int, source: str = "model"
                      ) -> EmbeddingClassifier:
    """Instantiate the network a config names (``hydra.utils.instantiate`` of its ``_target_``).

    Args:
        node: network config (see :func:`spec_from_config`).
        in_shape: input shape without batch dimension; num_classes: head size.
        source: config key named in errors.

    Raises:
        toolkit.errors.InputError: not a zoo network, an unknown keyword argument, an input shape the
            architecture cannot take, or a network whose training state (:data:`TRAINING_BYTES_PER_PARAM` per
            parameter, counted on the meta device before anything is allocated) exceeds the free memory.
    """
    import torch
    from hydra.utils import instantiate

    from toolkit.errors import InputError
    from toolkit.resources import check_memory

    arch, kwargs = spec_from_config(node, source)
    try:
        factory = instantiate({"_target_": _TARGET_OF[arch], "_partial_": True, **kwargs})
        with torch.device("meta"):  # sizes only, no memory: a width of 10^9 must fail here, not in the kernel
            params = sum(p.numel() for p in factory(tuple(in_shape), num_classes).parameters())
        check_memory(TRAINING_BYTES_PER_PARAM * params, f"{ZOO[arch].__name__} with {params:,} parameters "
                     "(weights, gradients and AdamW's two moments)", source, None,
                     "lower the width / embedding size, or the number of classes")
        return factory(tuple(in_shape), num_classes)
    except TypeError as exc:  # an argument the class does not take
        raise InputError(source, None, f"{ZOO[arch].__name__}: {str(exc).splitlines()[0]}") from None
    except ValueError as exc:
        raise InputError(source, None, str(exc)) from None
