"""Every config in configs/ composes (primary configs, and each group option under each primary)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from toolkit.config import compose_config, config_dir

PRIMARY = sorted(p.stem for p in config_dir().glob("*.yaml"))
GROUP_OPTIONS = sorted(
    (group.name, option.stem)
    for group in config_dir().iterdir() if group.is_dir()
    for option in group.glob("*.yaml")
)


def _primary_for(group: str) -> list[str]:
    users = []
    for name in PRIMARY:
        primary = OmegaConf.to_container(OmegaConf.load(config_dir() / f"{name}.yaml"))
        for entry in primary.get("defaults", []):
            if (isinstance(entry, dict) and group in entry) or entry == group:
                users.append(name)
    return users


@pytest.mark.parametrize("name", PRIMARY)
def test_primary_config_composes_and_resolves(name):
    cfg = compose_config(name)
    OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS)
def test_group_option_composes_with_its_commands(group, option):
    users = _primary_for(group)
    assert users, f"configs/{group}/{option}.yaml is used by no primary config"
    for name in users:
        cfg = compose_config(name, [f"{group}={option}"])
        OmegaConf.to_container(cfg, resolve=True)
