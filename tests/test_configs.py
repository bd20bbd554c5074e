"""Every config in configs/ composes, resolves and passes its command's declared constraints; bad values exit 2."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from toolkit.config import (
    MOUNTS,
    SHARED_GROUPS,
    TREES,
    compose_config,
    config_dir,
    primary_path,
    shared_options,
)
from toolkit.errors import InputError
from toolkit.validation import checks_for, validate

PRIMARY = sorted(TREES)


def _defaults_groups(name):
    return {next(iter(entry)) if isinstance(entry, dict) else entry
            for entry in OmegaConf.to_container(OmegaConf.load(primary_path(name))).get("defaults", [])}


GROUP_OPTIONS = sorted(
    {(name, group.name, option.stem)
     for name in PRIMARY
     for group in primary_path(name).parent.iterdir() if group.is_dir()
     for option in group.glob("*.yaml")
     if group.name in _defaults_groups(name)}
    | {(name, mount, option.stem)  # shared groups mounted into the tree (configs/network as compat's model, ...)
       for name in PRIMARY
       for shared, mount in MOUNTS.get(TREES[name], {}).items()
       for option in shared_options(shared)
       if mount.split("/")[0] in _defaults_groups(name)}
)
MOUNTED = [(name, group, option) for name, group, option in GROUP_OPTIONS
           if group in MOUNTS.get(TREES[name], {}).values()]


def test_every_yaml_belongs_to_a_tree_or_a_shared_group():
    trees = {config_dir() / t for t in TREES.values()}
    shared = {config_dir() / g for g in SHARED_GROUPS}
    for path in config_dir().rglob("*.yaml"):
        assert any(root in path.parents for root in trees | shared), f"{path} is in no config tree"


def test_every_group_option_has_a_primary_that_uses_it():
    used = {(TREES[n], g, o) for n, g, o in GROUP_OPTIONS}
    for tree in set(TREES.values()):
        for group in (config_dir() / tree).iterdir():
            if group.is_dir():
                for option in group.glob("*.yaml"):
                    assert (tree, group.name, option.stem) in used, f"{option} is used by no primary config"


@pytest.mark.parametrize("name", PRIMARY)
def test_primary_config_composes_resolves_and_validates(name):
    cfg = compose_config(name, ["data=sst2"] if name == "compress" else [])
    OmegaConf.to_container(cfg, resolve=True)
    validate(name, cfg)
    assert checks_for(name), f"{name} declares no constraints"


@pytest.mark.parametrize(("name", "group", "option"), GROUP_OPTIONS)
def test_group_option_composes_resolves_and_validates(name, group, option):
    extra = ["data=sst2"] if name == "compress" and group != "data" else []
    cfg = compose_config(name, [*extra, f"{group}={option}"])
    OmegaConf.to_container(cfg, resolve=True)
    validate(name, cfg)


def test_constraint_keys_exist_in_some_composition():
    """A check on a key no config has would never fire: every declared key occurs in some composed config."""
    def keys(d, prefix=""):
        for k, v in d.items():
            yield prefix + k
            if isinstance(v, dict):
                yield from keys(v, prefix + k + ".")

    for name in PRIMARY:
        seen = set()
        base = ["data=sst2"] if name == "compress" else []
        seen |= set(keys(OmegaConf.to_container(compose_config(name, base), resolve=True)))
        for n, group, option in GROUP_OPTIONS:
            if n == name:
                extra = base if group != "data" else []
                seen |= set(keys(OmegaConf.to_container(compose_config(name, [*extra, f"{group}={option}"]),
                                                        resolve=True)))
        missing = [c.key for c in checks_for(name) if c.key not in seen]
        assert not missing, f"{name}: checks on keys no config has: {missing}"


def test_data_presets_resolve_against_toolkit_data_not_the_cwd(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    cfg = compose_config("cluster", ["data=omniglot"])
    assert OmegaConf.to_container(cfg, resolve=True)["data"]["root"] == str((config_dir().parent.parent / "shared"
                                                                             / "data" / "omniglot").resolve())
    monkeypatch.setenv("TOOLKIT_DATA", str(tmp_path / "elsewhere"))
    cfg = compose_config("train_compatible", ["data=compat_mnist"])
    assert OmegaConf.to_container(cfg, resolve=True)["data"]["train_images"].startswith(str(tmp_path / "elsewhere"))


def test_validate_names_key_value_and_form():
    cfg = compose_config("cluster", ["model.train.lr=-0.5"])
    with pytest.raises(InputError) as err:
        validate("cluster", cfg)
    assert str(err.value) == "config: model.train.lr: got -0.5; expected a number > 0"


def test_every_shared_option_is_mounted_somewhere():
    """configs/network/* (and any other mounted shared group) are group options of some tree."""
    for shared in {g for mounts in MOUNTS.values() for g in mounts}:
        for option in shared_options(shared):
            assert any(g in MOUNTS[TREES[n]].values() and o == option.stem for n, g, o in MOUNTED), option


# the MLP takes `hidden`, not `width`: the cluster encoder's width override must be dropped for it (docs/cluster.md)
_NETWORK_EXTRA = {("cluster", "encoder/network", "mlp"): ["~encoder.network.width"]}


@pytest.mark.parametrize(("name", "group", "option"), MOUNTED)
def test_every_network_config_is_instantiated(name, group, option):
    """configs/network/* build through hydra.utils.instantiate, as each tree mounts them (train-compatible's
    ``model``, the cluster encoder's ``encoder/network``), and run a forward pass; the built network's
    ``arch_kwargs`` are exactly the config's arguments (none ignored)."""
    import torch

    from toolkit.models.zoo import model_from_config

    cfg = compose_config(name, [f"{group}={option}", *_NETWORK_EXTRA.get((name, group, option), [])])
    node = OmegaConf.select(cfg, group.replace("/", "."))
    validate(name, cfg)
    net = model_from_config(node, (1, 16, 16), 3)
    assert net.arch == option  # the file's name is the short name checkpoints record
    assert net(torch.zeros(2, 1, 16, 16)).shape == (2, 3)
    assert net.arch_kwargs == {k: v for k, v in OmegaConf.to_container(node).items() if not k.startswith("_")}


@pytest.mark.parametrize("option", sorted(p.stem for p in (config_dir() / "compress" / "model").glob("*.yaml")))
def test_every_compress_model_config_is_instantiated(option):
    """configs/compress/model/* build through hydra.utils.instantiate (their ``_target_``) and run a forward pass;
    the network records the file's name as its short architecture name."""
    import torch

    from toolkit.compress.models import build_classifier

    cfg = compose_config("compress", ["data=sst2", f"model={option}"])
    net = build_classifier(cfg.model, 30, 8, 3)
    assert net.arch == option
    assert net(torch.randint(1, 30, (2, 6))).shape == (2, 3)


@pytest.mark.parametrize("option", [p.stem for p in shared_options("network")])
def test_network_named_by_old_model_is_the_same_file(option):
    """old.model / arch.* name configs/network/<name> directly: the same definition as model=<name>."""
    from toolkit.models.zoo import network_config

    cfg = compose_config("train_compatible", [f"model={option}"])
    assert network_config(option) == OmegaConf.to_container(cfg.model, resolve=True)


def test_cluster_encoder_network_keeps_its_sizes():
    """The cluster encoder's own sizes override the zoo's defaults; the other arguments come from the zoo file."""
    from toolkit.models.zoo import network_config

    enc = OmegaConf.to_container(compose_config("cluster", []).encoder, resolve=True)
    assert enc["network"] == {**network_config("cnn"), "embed_dim": 128, "width": 64}
    enc = OmegaConf.to_container(compose_config("cluster", ["encoder/network=resnet"]).encoder, resolve=True)
    assert enc["network"] == {**network_config("resnet"), "embed_dim": 128, "width": 64}
    assert "network" not in compose_config("cluster", ["encoder=dlib-face"]).encoder


def test_mounts_do_not_leak_into_other_trees():
    """The zoo is compat's ``model`` group only while compat composes: cluster's model=mlp stays unknown."""
    compose_config("train_compatible", ["model=cnn"])
    with pytest.raises(InputError, match="model/mlp"):
        compose_config("cluster", ["model=mlp"])
    with pytest.raises(InputError, match="encoder/network"):
        compose_config("train_compatible", ["encoder/network=cnn"])


def test_renamed_keys_still_work_from_the_command_line(capsys):
    """train-encrypted's train.learning_rate became train.lr (one name per concept); the old name is rewritten."""
    from toolkit.config import RENAMED_KEYS

    cfg = compose_config("train_encrypted", ["train.learning_rate=2.5", "train.learning_rate_grid=[1.0,2.0]"])
    assert cfg.train.lr == 2.5 and list(cfg.train.lr_grid) == [1.0, 2.0]
    assert "learning_rate" not in cfg.train
    assert "train.learning_rate is now train.lr" in capsys.readouterr().err
    for name, table in RENAMED_KEYS.items():  # every new name exists in its tree, no old name does
        top = compose_config(name, [])
        for old, new in table.items():
            assert OmegaConf.select(top, new) is not None and OmegaConf.select(top, old) is None, (old, new)
