"""Config composition with Hydra's compose API (no ``@hydra.main``).

Typer commands call :func:`compose_config` with the user's ``key=value``
overrides.  Hydra errors (unknown key, unknown group option, bad override
syntax) are turned into :class:`toolkit.errors.InputError` so the CLI exits
with code 2 and a one-line message.
"""

from __future__ import annotations

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


def compose_config(name: str, overrides: list[str] | None = None) -> DictConfig:
    """Compose primary config ``configs/<name>.yaml`` with Hydra overrides.

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

    overrides = list(overrides or [])
    for item in overrides:
        if item.startswith("-"):
            raise InputError("command line", item, "unknown option (overrides look like key=value)")
    try:
        with initialize_config_dir(config_dir=str(config_dir()), job_name=name, version_base="1.3"):
            return compose(config_name=name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"configs/{name}.yaml", "overrides", first) from None


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
