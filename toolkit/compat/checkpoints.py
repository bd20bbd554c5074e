"""Saving and safely loading models for compatible updates.

Formats read by :func:`load_model`:

* the toolkit's own ``model.pt`` (written by :func:`save_model`): a dict with ``format``, ``arch``,
  ``arch_kwargs``, ``in_shape``, ``num_classes``, ``state_dict`` and optionally ``projection``;
* a Lightning ``.ckpt`` of a toolkit module (``hyper_parameters`` with ``arch`` ..., weights under ``net.``);
* a plain PyTorch ``state_dict`` plus an architecture named in ``configs/network/`` (``arch_name``);
* a TorchScript archive whose ``forward`` returns logits (and optional ``embed`` method), only with
  ``trust_code=True``.

Every pickle is read with ``torch.load(weights_only=True)``: a file needing arbitrary code to unpickle
is refused with :class:`toolkit.errors.InputError`.  A TorchScript archive *is* code (its ``forward`` can
call any TorchScript operator, including ones that read and write files; PyTorch documents
``torch.jit.load`` as safe for trusted files only), so it is refused unless the caller opts in
(``old.trust_code=true`` / ``--trust-code``).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from toolkit.errors import InputError
from toolkit.models.zoo import build_model, network_config, spec_from_config

FORMAT = "toolkit-compat/1"


def model_config(name: str, source: str = "model") -> tuple[str, dict]:
    """``(arch, kwargs)`` of the shared network definition ``configs/network/<name>.yaml``
    (:func:`toolkit.models.zoo.network_config`).

    Raises:
        InputError: unknown name or a file that does not name a zoo network.
    """
    return spec_from_config(network_config(name, source), source)


class ScriptedClassifier(nn.Module):
    """Wrap a TorchScript classifier: ``forward`` gives logits, ``embed`` uses the script's ``embed``
    method when it has one (otherwise the logits stand in for the embedding)."""

    def __init__(self, scripted: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.scripted = scripted
        self.has_embed = hasattr(scripted, "embed")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, C]`` float32 of inputs ``x`` ``[B, ...]`` (the script's ``forward``)."""
        return self.scripted(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding ``[B, E]`` from the script's ``embed``; the logits ``[B, C]`` when it has none."""
        return self.scripted.embed(x) if self.has_embed else self.scripted(x)


def save_model(path: Path, net: nn.Module, arch: str, arch_kwargs: dict, in_shape: list[int],
               num_classes: int, projection: nn.Module | None = None, extra: dict | None = None) -> None:
    """Write a weights-only checkpoint (tensors, strings, numbers and lists only)."""
    doc: dict[str, Any] = {"format": FORMAT, "arch": arch, "arch_kwargs": dict(arch_kwargs),
                           "in_shape": [int(s) for s in in_shape], "num_classes": int(num_classes),
                           "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}}
    if projection is not None:
        doc["projection"] = {k: v.detach().cpu() for k, v in projection.state_dict().items()}
    doc.update(extra or {})
    torch.save(doc, path)


def _is_torchscript(p: Path) -> bool:
    try:
        with zipfile.ZipFile(p) as zf:
            return any(n.split("/", 2)[1:2] == ["code"] for n in zf.namelist() if "/" in n)
    except (zipfile.BadZipFile, OSError):
        return False


def load_model(path: str | Path, field: str, in_shape: tuple[int, ...],
               arch_name: str | None = None,
               arch_kwargs: dict | None = None,
               trust_code: bool = False,
               opt_in: str = "trust_code=true") -> tuple[nn.Module, nn.Module | None, dict]:
    """Load a classifier for inference, refusing untrusted pickles and (by default) TorchScript code.

    Args:
        path: the checkpoint file.
        field: config key naming it (for error messages), e.g. ``old.checkpoint``.
        in_shape: input shape of the data (without batch), checked against the checkpoint's.
        arch_name: ``configs/network/<name>`` for plain state_dicts.
        arch_kwargs: overrides of that config's ``kwargs`` (plain state_dicts only).
        trust_code: load TorchScript archives (code that runs with the user's rights); refused when False.
        opt_in: how the user sets ``trust_code`` (named in the refusal message).

    Returns:
        ``(net, projection or None, info)``; ``net`` has ``forward`` (logits) and ``embed``; ``info`` has
        ``arch``, ``num_classes``, ``embed_dim`` (None for TorchScript without ``embed``) and ``format``.

    Raises:
        InputError: missing file; untrusted pickle; TorchScript without ``trust_code``; unknown layout;
            weights not matching the architecture.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(p, field, "checkpoint file not found")
    if _is_torchscript(p):
        if not trust_code:
            raise InputError(p, field, "is a TorchScript archive: it carries code that would run with your "
                             f"rights, so it is refused; pass {opt_in} only for a file you trust, or give "
                             "a weights-only model.pt / state_dict")
        try:
            scripted = torch.jit.load(str(p), map_location="cpu")
        except (RuntimeError, ValueError) as exc:
            raise InputError(p, field, f"cannot load TorchScript ({str(exc).splitlines()[0]})") from None
        return ScriptedClassifier(scripted).eval(), None, {"arch": "torchscript", "num_classes": None,
                                                           "embed_dim": None, "format": "torchscript"}
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError, EOFError ... from an unsafe/corrupt file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(p, field, "refusing to load: not a weights-only PyTorch checkpoint (loaded with "
                         f"weights_only=True; {first[:160]})") from None
    if not isinstance(obj, dict):
        raise InputError(p, field, f"expected a checkpoint dict or state_dict, got {type(obj).__name__}")
    projection_state = None
    if obj.get("format") == FORMAT:
        arch, kwargs, state = obj["arch"], dict(obj.get("arch_kwargs") or {}), obj["state_dict"]
        ck_shape = tuple(obj.get("in_shape") or ())
        projection_state = obj.get("projection")
        fmt = FORMAT
    elif isinstance(obj.get("hyper_parameters"), dict) and "state_dict" in obj:
        hp = obj["hyper_parameters"]
        arch, kwargs = hp.get("arch"), dict(hp.get("arch_kwargs") or {})
        ck_shape = tuple(hp.get("in_shape") or ())
        state = {k[4:]: v for k, v in obj["state_dict"].items() if k.startswith("net.")}
        projection_state = {k[11:]: v for k, v in obj["state_dict"].items() if k.startswith("projection.")} or None
        fmt = "lightning"
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        if not arch_name:
            raise InputError(p, field, "a plain state_dict needs a named architecture (set the model key to "
                             "a configs/network/ name, e.g. old.model=mlp)")
        arch, kwargs = model_config(arch_name, field)
        kwargs.update(arch_kwargs or {})
        state, ck_shape, fmt = obj, (), "state_dict"
    else:
        raise InputError(p, field, "unrecognised checkpoint layout (expected a toolkit model.pt, a Lightning "
                         ".ckpt of a toolkit model, or a state_dict)")
    if ck_shape and tuple(int(s) for s in ck_shape) != tuple(int(s) for s in in_shape):
        raise InputError(p, field, f"checkpoint expects inputs of shape {list(ck_shape)}, the data has "
                         f"{list(in_shape)}")
    head = state.get("head.weight")
    if not isinstance(head, torch.Tensor) or head.ndim != 2:
        raise InputError(p, field, f"no classifier head ('head.weight') for architecture '{arch}'")
    num_classes, embed_dim = int(head.shape[0]), int(head.shape[1])
    try:
        net = build_model(str(arch), tuple(in_shape), num_classes, **kwargs)
        net.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise InputError(p, field, f"weights do not match architecture '{arch}' {kwargs} "
                         f"({str(exc).strip().splitlines()[0][:200]})") from None
    projection = None
    if projection_state:
        w = projection_state["weight"]
        projection = nn.Linear(int(w.shape[1]), int(w.shape[0]), bias=False)
        projection.load_state_dict(projection_state)
        projection.eval()
    return net.eval(), projection, {"arch": str(arch), "num_classes": num_classes, "embed_dim": embed_dim,
                                    "format": fmt}


@torch.no_grad()
def infer(net: nn.Module, x: Any, projection: nn.Module | None = None, batch_size: int = 512,
          embeddings: bool = True) -> tuple[Any, Any]:
    """Logits ``[N, C]`` and (compatible) embeddings ``[N, E]`` (float32 numpy) of ``x`` ``[N, ...]``.

    The embedding is ``projection(net.embed(x))`` when a projection is given; None when
    ``embeddings`` is False.
    """
    import numpy as np

    net.eval()
    logits, embs = [], []
    for start in range(0, len(x), batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(x[start:start + batch_size], dtype=np.float32))
        if embeddings:
            z = net.embed(xb)
            head = getattr(net, "head", None)
            logits.append((head(z) if head is not None else net(xb)).numpy())
            embs.append((projection(z) if projection is not None else z).numpy())
        else:
            logits.append(net(xb).numpy())
    lg = np.concatenate(logits).astype(np.float32)
    return lg, (np.concatenate(embs).astype(np.float32) if embeddings else None)
