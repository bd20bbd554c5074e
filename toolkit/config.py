"""Config composition with Hydra's compose API (no ``@hydra.main``).

Typer commands call :func:`compose_config` with the user's ``key=value``
overrides.  Hydra errors (unknown key, unknown group option, bad override
syntax) are turned into :class:`toolkit.errors.InputError` so the CLI exits
with code 2 and a one-line message.

Layout: one config tree per technique, ``configs/<tree>/<command>.yaml`` with its own groups beside it
(``configs/cluster/{data,model,encoder}``, ``configs/compat/{data,experiment}`` shared by
``train-compatible`` and ``compare-models``, which read the same data and networks,
``configs/compress/{data,model,scheduler}``, ``configs/encrypted/data``), so a group option of one command cannot
be composed into another's schema.  Only ``configs/trainer`` (the Lightning Trainer) and ``configs/network``
(the zoo network definitions, one YAML per network) are shared.  Before every composition they are registered in
Hydra's ConfigStore: ``trainer`` as group ``trainer`` of every tree, ``network`` at the group path the tree
mounts it on (:data:`MOUNTS`: compat's ``model``, cluster's ``encoder/network``), and only for that tree, so
``toolkit train-compatible model=cnn`` and ``toolkit cluster encoder/network=resnet`` are plain group choices
of the same file while ``toolkit cluster model=mlp`` stays an unknown option.  Preset data paths use
``${data_root:sub/dir}``: ``$TOOLKIT_DATA/sub/dir``, or ``<repository>/../shared/data/sub/dir`` when the variable
is unset -- never the current directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from toolkit.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from omegaconf import DictConfig


def config_dir() -> Path:
    """Return the directory holding the primary configs.

    Prefers configs packaged inside ``toolkit/configs`` (wheel layout) and falls
    back to the repository's top-level ``configs/`` (editable install).

    Raises:
        FileNotFoundError: when neither location exists.
    """
    here = Path(__file__).resolve().parent
    for candidate in (here / "configs", here.parent / "configs"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no configs directory next to {here}")


TREES = {"cluster": "cluster", "train_compatible": "compat", "compare_models": "compat", "compress": "compress",
         "train_encrypted": "encrypted"}
"""Primary config name -> its config tree under ``configs/``."""
SHARED_GROUPS = ("trainer", "network")
"""Groups under ``configs/`` that are no tree's own (see :data:`MOUNTS`)."""
MOUNTS: dict[str, dict[str, str]] = {
    "compat": {"network": "model"},
    "cluster": {"network": "encoder/network"},
}
"""Tree -> {shared group: group path it is an option set of in that tree}; a shared group not listed is mounted
under its own name (``trainer``) in every tree.  ``network`` is mounted only where a tree names it: compat's
``model`` (the new model; ``old.model`` and compare-models' ``arch.*`` name the same files) and the cluster
encoder's ``encoder/network``."""
DATA_ENV = "TOOLKIT_DATA"


def data_root(sub: str = "") -> str:
    """Directory of a bundled dataset: ``$TOOLKIT_DATA/<sub>``, else ``<repository>/../shared/data/<sub>``.

    The ``${data_root:...}`` resolver of the preset configs; the result is absolute, so presets work from any
    working directory.
    """
    base = os.environ.get(DATA_ENV)
    root = Path(base).expanduser() if base else config_dir().parent.parent / "shared" / "data"
    return str((root / sub).resolve()) if sub else str(root.resolve())


def _register(tree: str) -> None:
    """Register the ``data_root`` resolver and mount the shared groups for ``tree`` (see :data:`MOUNTS`).

    Mounts of other trees are removed first, so one tree's mount point never offers the zoo to another.
    """
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("data_root"):
        OmegaConf.register_new_resolver("data_root", data_root)
    store = ConfigStore.instance()
    for mounts in MOUNTS.values():  # unmount every tree's mount points
        for path in mounts.values():
            *parents, leaf = path.split("/")
            node = store.repo
            for part in parents:
                node = node.get(part, {})
            node.pop(leaf, None)
    for group in SHARED_GROUPS:
        mount = MOUNTS.get(tree, {}).get(group, group if group not in _MOUNTED else None)
        if mount is None:
            continue
        for path in shared_options(group):
            store.store(group=mount, name=path.stem, node=OmegaConf.load(path))


_MOUNTED = {group for mounts in MOUNTS.values() for group in mounts}


def shared_options(group: str) -> list[Path]:
    """The option files ``configs/<group>/*.yaml`` of a shared group, sorted by name."""
    return sorted((config_dir() / group).glob("*.yaml"))


def primary_path(name: str) -> Path:
    """``configs/<tree>/<name>.yaml`` of a primary config.

    Raises:
        KeyError: unknown primary name.
    """
    return config_dir() / TREES[name] / f"{name}.yaml"


RENAMED_KEYS: dict[str, dict[str, str]] = {
    "train_encrypted": {"train.learning_rate": "train.lr", "train.learning_rate_grid": "train.lr_grid"},
}
"""Primary config -> {old key: new key}: keys renamed for one name per concept (docs/cli.md); an override that
uses the old name is rewritten to the new one, with a note on stderr, so existing command lines keep working."""


def rename_overrides(name: str, overrides: list[str]) -> list[str]:
    """``overrides`` with every renamed key of primary config ``name`` (:data:`RENAMED_KEYS`) replaced.

    ``+key=value`` and ``~key`` forms are rewritten too; a note per renamed key goes to stderr.
    """
    from toolkit.console import log

    table = RENAMED_KEYS.get(name, {})
    out = []
    for item in overrides:
        body = item.lstrip("+~")
        prefix = item[: len(item) - len(body)]
        key, sep, value = body.partition("=")
        if key in table:
            log(f"note: {key} is now {table[key]} (the old name still works)")
            item = f"{prefix}{table[key]}{sep}{value}"
        out.append(item)
    return out


def quote_home(override: str) -> str:
    """Quote the value of ``key=~/path`` so Hydra's override grammar accepts it (an unquoted ``~`` is a lexer
    error there); the path keeps its ``~`` for the readers to expand.  Quoted, list, dict and ``~key`` (delete)
    overrides are returned unchanged."""
    key, sep, value = override.partition("=")
    if not sep or "~" not in value or key.startswith("~") or value[:1] in ("'", '"', "[", "{"):
        return override
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"{key}='{escaped}'"


def compose_config(name: str, overrides: list[str] | None = None) -> DictConfig:
    """Compose primary config ``configs/<tree>/<name>.yaml`` (see :data:`TREES`) with Hydra overrides.

    Args:
        name: primary config name without extension, e.g. ``"cluster"``.
        overrides: Hydra override strings such as ``["data=features", "model.tau=0.8"]``.

    Returns:
        The composed ``DictConfig`` (interpolations unresolved; struct mode on,
        so reading an unknown key raises).

    Raises:
        InputError: on an unknown key or group option, or malformed override.
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = [quote_home(o) for o in rename_overrides(name, list(overrides or []))]
    for item in overrides:
        if item.startswith("-"):
            raise InputError("command line", item, "unknown option (overrides look like key=value)")
    _register(TREES[name])
    tree = config_dir() / TREES[name]
    try:
        with initialize_config_dir(config_dir=str(tree), job_name=name, version_base="1.3"):
            return compose(config_name=name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"configs/{TREES[name]}/{name}.yaml", "overrides", first) from None


def to_container(cfg: DictConfig) -> dict:
    """Resolve all interpolations and return ``cfg`` as plain dicts/lists (JSON-safe).

    Raises:
        InputError: if an interpolation cannot be resolved.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        raise InputError("config", None, str(exc).splitlines()[0]) from None


def to_yaml(cfg: DictConfig, resolve: bool = True) -> str:
    """Render ``cfg`` as YAML text (resolved by default)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(cfg, resolve=resolve)
