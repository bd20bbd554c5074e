"""The bad-override table: every command exits 2 with one line naming the key, before any work (issue 11)."""

from __future__ import annotations

import pytest

from toolkit.cli import app

BAD = {
    "cluster": [
        ("model=lstm", "lstm"),                     # another command's group option
        ("model.no_such_key=1", "no_such_key"),
        ("seed=abc", "seed"),
        ("threads=0", "threads"),
        ("method=spectral", "method"),
        ("model.train.lr=-1", "model.train.lr"),
        ("model.train.lr=fast", "model.train.lr"),
        ("model.infer.tau=1.5", "model.infer.tau"),
        ("model.infer.tau_upper=1.5", "model.infer.tau_upper"),
        ("model.infer.tau_upper=lower", "model.infer.tau_upper"),
        ("model.infer.min_cluster_fraction=1", "model.infer.min_cluster_fraction"),
        ("model.infer.min_cluster_fraction=some", "model.infer.min_cluster_fraction"),
        ("model.infer.singletons=drop", "model.infer.singletons"),
        ("model.infer.knn_k=1", "model.infer.knn_k"),
        ("model.num_conv=7", "model.num_conv"),
        ("model.hidden=15", "model.hidden"),
        ("model.edge_features=[cosine,angle]", "model.edge_features"),
        ("model.train.val_fraction=1", "model.train.val_fraction"),
        ("encoder.class_fraction=0", "encoder.class_fraction"),
        ("encoder/network=vit", "encoder/network/vit"),          # no such shared network (configs/network/)
        ("encoder.network.width=-4", "encoder.network.width"),
        ("encoder/network=resnet encoder.network.blocks_per_stage=0", "encoder.network.blocks_per_stage"),
        ("encoder.network._target_=os.system", "encoder.network._target_"),   # only zoo networks
        ("baselines.kmeans_k=1", "baselines.kmeans_k"),
    ],
    "train-compatible": [
        ("model=hilander", "hilander"),
        ("method=distill", "method"),
        ("model._target_=os.system", "model._target_"),       # only zoo networks are instantiated
        ("model.embed_dim=0", "model.embed_dim"),
        ("model=cnn model.blocks=0", "model.blocks"),
        ("model.hidden_size=64", "hidden_size"),             # not an argument of the MLP
        ("model=vit", "model/vit"),                          # no such shared network (configs/network/)
        ("model=resnet model.width=-1", "model.width"),
        ("old.model=vit", "old.model"),
        ("train.epochs=0", "train.epochs"),
        ("train.lr=0", "train.lr"),
        ("fd.temperature=-1", "fd.temperature"),
        ("fd.lm_reduction=max", "fd.lm_reduction"),
        ("method=ldi ldi.margin=-0.5", "ldi.margin"),
        ("method=ldi ldi.p=0.5", "ldi.p"),                   # below 1 the gradient at the margin is infinite
        ("method=ldi ldi.top_k=0", "ldi.top_k"),
        ("method=ldi ldi.top_k=2.5", "ldi.top_k"),
        ("method=bct+ldi ldi.weight=-1", "ldi.weight"),
        ("old.train_fraction=1.5", "old.train_fraction"),
        ("data.test_fraction=1", "data.test_fraction"),
        ("data=compat_cifar10 data.channels=2", "data.channels"),
        ("data.train_classes=[0]", "train_classes"),    # the cluster command's key: not in this tree
        ("bootstrap.level=95", "bootstrap.level"),
    ],
    "compare-models": [
        ("max_nfr=1", "max_nfr"),
        ("max_nfr=-0.1", "max_nfr"),
        ("retrieval.criterion_metric=top3", "retrieval.criterion_metric"),
        ("bootstrap.n=-5", "bootstrap.n"),
        ("arch.old=vit", "arch.old"),
    ],
    "compress": [
        ("data=sst2 model=cnn", "cnn"),               # the compat zoo's name: compress's is model=textcnn
        ("data=sst2 model._target_=os.system", "model._target_"),   # only compress model classes
        ("data=sst2 model=dan model.dan_hidden=[30,0]", "model.dan_hidden"),
        ("data=sst2 compression=1.5", "compression"),
        ("data=sst2 compression=[0.5,0]", "compression"),
        ("data=sst2 rank=0", "rank"),
        ("data=sst2 compression_of=layers", "compression_of"),
        ("data=sst2 finetune.early_stopping_patience=0", "finetune.early_stopping_patience"),
        ("data=sst2 finetune.restore_best=maybe", "finetune.restore_best"),
        ("data=sst2 scheduler=step", "step"),
        ("data=sst2 scheduler.max_lr=-1", "scheduler.max_lr"),
        ("data=sst2 finetune.epochs=0", "finetune.epochs"),
        ("data=sst2 baselines.quantize_bits=[3]", "baselines.quantize_bits"),
        ("data=sst2 data.valid_fraction=0", "data.valid_fraction"),
    ],
    "train-encrypted": [
        ("train.iterations=0", "train.iterations"),
        ("train.lr=-2", "train.lr"),
        ("train.momentum=1", "train.momentum"),
        ("circuit=deep", "circuit"),
        ("step=predict", "step"),
        ("workers=0", "workers"),
        ("ckks.poly_modulus_degree=1000", "ckks.poly_modulus_degree"),
        ("data.test_fraction=0", "data.test_fraction"),
        ("model=mlp", "model"),
    ],
}
CASES = [(cmd, override, key) for cmd, rows in BAD.items() for override, key in rows]


@pytest.mark.parametrize(("command", "override", "key"), CASES, ids=[f"{c}:{o}" for c, o, _k in CASES])
def test_bad_override_exits_2_with_one_line(runner, tmp_path, command, override, key):
    out = tmp_path / "out"
    args = [command, *override.split(), f"output_dir={out}"]
    if command == "compare-models":
        args = [command, "old.npy", "new.npy", *override.split(), f"output_dir={out}"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0], lines
    assert not out.exists()  # nothing written
