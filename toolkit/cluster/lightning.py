"""Training LANDER with PyTorch Lightning on multi-level graphs (reference ``train_subg.py``).

Each training step takes one mini-batch of seed nodes from *every* training
graph (round robin, as the reference), averages their losses and takes one SGD
step (momentum 0.9, weight decay 1e-5, cosine annealing to 1e-5 stepped per
batch).  A mini-batch is the ``(num_conv + 1)``-hop in-neighbourhood subgraph
of its seeds, which gives the seeds' embeddings, densities and in-edge
linkages exactly; the loss is taken on the seeds only.  A graph with at most
``batch_size`` nodes is used whole.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset

from toolkit.cluster.model import Lander, lander_loss, lander_loss_se


class SeedBatches(IterableDataset):
    """One epoch of steps; each step yields a list with one (subgraph, seed mask) per training graph.

    Args:
        graphs: DGL graphs with ground truth.
        batch_size: seed nodes per graph per step.
        hops: neighbourhood depth (``num_conv + 1``).
        seed: RNG seed; each epoch draws new permutations.
    """

    def __init__(self, graphs: list, batch_size: int, hops: int, seed: int = 0) -> None:
        self.graphs = graphs
        self.batch_size = int(batch_size)
        self.hops = int(hops)
        self.rng = np.random.default_rng(seed)
        self.steps = max(1, math.ceil(graphs[0].num_nodes() / self.batch_size))

    def __len__(self) -> int:
        return self.steps

    def _batches(self, g):
        while True:
            perm = self.rng.permutation(g.num_nodes())
            for start in range(0, len(perm), self.batch_size):
                yield perm[start:start + self.batch_size]

    def __iter__(self):
        import dgl

        iters = [self._batches(g) for g in self.graphs]
        for _ in range(self.steps):
            items = []
            for g, it in zip(self.graphs, iters, strict=True):
                if g.num_nodes() <= self.batch_size:
                    items.append((g, None))
                    continue
                seeds = torch.from_numpy(np.sort(next(it)))
                sub, inverse = dgl.khop_in_subgraph(g, seeds, k=self.hops, store_ids=False)
                mask = torch.zeros(sub.num_nodes(), dtype=torch.bool)
                mask[inverse] = True
                items.append((sub, mask))
            yield items


class LanderModule(pl.LightningModule):
    """LightningModule wrapping :class:`toolkit.cluster.model.Lander`.

    Hyper-parameters are primitives only, so checkpoints load with ``weights_only=True``.

    Args:
        feature_dim: D.  hidden, num_conv, dropout, use_gat, gat_heads, use_cluster_feat, edge_features: see ``Lander``.
        lr: initial SGD learning rate; momentum, weight_decay: SGD settings.
        balance: balanced linkage loss.
        total_steps: optimiser steps of the whole run (cosine schedule length).
    """

    def __init__(self, feature_dim: int, hidden: int = 512, num_conv: int = 1, dropout: float = 0.0,
                 use_gat: bool = False, gat_heads: int = 1, use_cluster_feat: bool = True,
                 edge_features: tuple[str, ...] | list[str] = (), lr: float = 0.01,
                 momentum: float = 0.9, weight_decay: float = 1e-5, balance: bool = True,
                 total_steps: int = 1, rotate: bool = False) -> None:
        super().__init__()
        edge_features = [str(n) for n in edge_features]  # primitives only: checkpoints load with weights_only=True
        self.save_hyperparameters()
        self.model = Lander(feature_dim, hidden, num_conv, dropout, use_gat, gat_heads, use_cluster_feat,
                            edge_features)
        self.gen = torch.Generator().manual_seed(0)

    def training_step(self, batch: list, batch_idx: int) -> torch.Tensor:
        total = torch.zeros(())
        den = conn = 0.0
        for g, seed_mask in batch:
            # score only the seeds' in-edges: their densities stay exact and the linkage head, which dominates
            # the cost, skips the rest of the sampled neighbourhood (about (k-1)x fewer edges per hop)
            edge_ids = None if seed_mask is None else torch.nonzero(seed_mask[g.edges()[1]]).flatten()
            with g.local_scope():
                if self.hparams.rotate:
                    q = random_rotation(g.ndata["features"].shape[1], self.gen)
                    g.ndata["features"] = g.ndata["features"] @ q
                    g.ndata["cluster_features"] = g.ndata["cluster_features"] @ q
                logits, pred_den = self.model(g, edge_ids)
                loss, parts = lander_loss(logits, pred_den, g, seed_mask, None, self.hparams.balance, self.gen,
                                          edge_ids)
            total = total + loss
            den += parts["density_mse"]
            conn += parts["conn_ce"]
        n = len(batch)
        total = total / n  # mean over graphs: the step size does not grow with the number of graphs
        self.log("train/loss", total, prog_bar=True, on_step=False, on_epoch=True, batch_size=1)
        self.log("train/density_mse", den / n, on_step=False, on_epoch=True, batch_size=1)
        self.log("train/conn_ce", conn / n, on_step=False, on_epoch=True, batch_size=1)
        return total

    def validation_step(self, batch: list, batch_idx: int) -> None:
        """Unbalanced loss of the validation graphs and its standard error: ``val/loss`` (``val/loss_se``) is the
        mean over the untagged graphs, the graphs tagged ``name`` (``fit_lander``'s ``select_also``) give
        ``val/loss_<name>`` (``val/loss_<name>_se``); the standard error of a mean of G graph losses is
        ``sqrt(sum SE_g^2) / G``."""
        losses: dict[str | None, list[torch.Tensor]] = {}
        ses: dict[str | None, list[float]] = {}
        for g, tag in batch:
            logits, pred_den = self.model(g)
            losses.setdefault(tag, []).append(lander_loss(logits, pred_den, g, balance=False)[0])
            ses.setdefault(tag, []).append(lander_loss_se(logits, pred_den, g))
        for tag, values in losses.items():
            name = "val/loss" if tag is None else f"val/loss_{tag}"
            self.log(name, torch.stack(values).mean(), prog_bar=tag is None, batch_size=1)
            self.log(name + "_se", math.sqrt(sum(v * v for v in ses[tag])) / len(values), batch_size=1)

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=self.hparams.momentum,
                              weight_decay=self.hparams.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.hparams.total_steps),
                                                           eta_min=1e-5)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch  # CPU graphs; Lightning's generic collection walk does not know DGL graphs


def random_rotation(dim: int, generator: torch.Generator) -> torch.Tensor:
    """A Haar-random orthogonal matrix, float32 ``[dim, dim]`` (QR of a Gaussian matrix, signs fixed so the
    distribution is uniform; Mezzadri 2007, "How to generate random matrices from the classical compact groups").

    Clustering by cosine kNN is invariant to rotating the embedding space; rotating every training step's
    features (``model.train.rotate``) makes the GNN learn that invariance instead of where its few
    meta-training classes sit in the space, which is what it cannot transfer to unseen classes (issue 9).
    """
    a = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    return (q * torch.sign(torch.diagonal(r))[None, :]).to(torch.float32)


class EarliestWithinSE(pl.Callback):
    """Keep the weights of the *earliest* epoch whose held-out loss is within ``se_multiple`` standard errors of
    the lowest held-out loss: the one-standard-error rule, the most regularised model -- here the shortest
    training -- that cannot be told from the best (Breiman et al. 1984, "Classification and Regression Trees",
    section 3.4.3; Hastie, Tibshirani & Friedman, "The Elements of Statistical Learning", section 7.10).

    Applied online with bounded memory and exact: the margin is ``T = min_r (L_r + k * SE_r)`` over the epochs
    ``r`` that set a new lowest loss (so it never widens; at the end ``L_min <= T <= L_min + k * SE_argmin``),
    and the answer, the earliest epoch with ``L_e <= T``, is always such a record (every earlier epoch has a
    higher loss).  So only the records under the current margin are kept (their weights, in memory), and the
    file at ``path`` always holds the current answer.  ``se_multiple=0`` keeps the epoch of the minimum
    (ties: the first).

    Args:
        monitor: logged loss name, e.g. ``"val/loss"``; its standard error is read from ``monitor + "_se"``.
        path: file written (replaced) whenever the answer changes: ``{"epoch", "state_dict",
            "hyper_parameters"}``, the keys of a Lightning checkpoint that ``fit_lander`` and
            ``toolkit.cluster.command.fold_model`` read.
        se_multiple: k >= 0, the margin in standard errors.

    Attributes:
        selected_epoch: the epoch in ``path`` (-1 before any); margin: the current ``T``.

    Raises:
        ValueError: ``se_multiple`` negative or not a number.
    """

    def __init__(self, monitor: str, path: str | Path, se_multiple: float = 1.0) -> None:
        if not se_multiple >= 0:
            raise ValueError(f"se_multiple must be >= 0, got {se_multiple}")
        self.monitor, self.path, self.se_multiple = monitor, Path(path), float(se_multiple)
        self.margin, self.selected_epoch = math.inf, -1
        self._best = math.inf
        self._records: list[tuple[int, float, dict]] = []  # (epoch, loss, weights) of running minima within margin

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        loss = float(trainer.callback_metrics[self.monitor])
        if not math.isfinite(loss) or loss >= self._best:
            return  # not a new minimum: never the earliest epoch within the margin
        se = float(trainer.callback_metrics.get(self.monitor + "_se", 0.0))
        self._best = loss
        self.margin = min(self.margin, loss + self.se_multiple * se)
        weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        self._records = [r for r in self._records if r[1] <= self.margin] + [(int(trainer.current_epoch), loss, weights)]
        epoch, _, state = self._records[0]
        if epoch != self.selected_epoch:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            torch.save({"epoch": epoch, "state_dict": state, "hyper_parameters": dict(pl_module.hparams)}, tmp)
            tmp.replace(self.path)
            self.selected_epoch = epoch


def fit_lander(graphs: list, model_cfg, trainer_cfg, root_dir, checkpoint_dir, seed: int = 0,
               val_graphs: list | None = None, select_also: dict | None = None,
               stop_after_epochs: int | None = None) -> LanderModule:
    """Train LANDER on ``graphs`` with ``model_cfg`` (``configs/cluster/model/hilander.yaml``) and return the module.

    The run lasts ``model.train.epochs`` epochs, or more when that gives fewer than ``model.train.min_steps``
    optimiser steps (an epoch has ``ceil(nodes of the first graph / batch_size)`` steps); with ``val_graphs`` it
    stops earlier once the held-out loss has not reached a new minimum for ``model.train.select_patience``
    epochs (0: never).

    With ``val_graphs`` (graphs of held-out meta-training classes, by default their whole training hierarchy
    built as ``graphs`` were) the unbalanced validation loss (mean over the graphs) and its standard error are monitored
    every epoch and the weights of the earliest epoch within ``model.train.select_se`` standard errors of the
    lowest loss are returned (early model selection, ``model.train.select_best``; :class:`EarliestWithinSE`),
    their epoch in ``module.selected_epoch``; otherwise the last epoch's (``selected_epoch`` None).
    ``select_also`` (name -> list of graphs, needs ``val_graphs``) keeps, beside that, the epoch the same rule
    picks on each named list's own loss in ``checkpoint_dir/best_<name>.ckpt`` (``method=auto`` scores a fold of
    held-out classes with weights selected without them); the returned module's ``selected_checkpoints`` maps
    every name, and ``"last"`` (the final epoch), to its checkpoint file.

    ``stop_after_epochs`` ends training after that many epochs while the learning-rate schedule keeps the
    length of the whole run, so the weights are those a full run has at that epoch (``model.train.refit``:
    retraining on every meta-training class up to the epoch chosen on the held-out ones).

    Raises:
        ValueError: empty ``graphs``, or ``select_also`` without ``val_graphs``.
        RuntimeError: the weights became non-finite (training diverged), named with the learning rate to lower.
    """
    from toolkit.training import fit, make_trainer

    if not graphs:
        raise ValueError("no training graphs (meta-training set too small for model.train.knn_k)")
    if select_also and not val_graphs:
        raise ValueError("select_also needs val_graphs")
    pl.seed_everything(seed, verbose=False)
    tr = model_cfg.train
    feature_dim = int(graphs[0].ndata["features"].shape[1])
    data = SeedBatches(graphs, tr.batch_size, model_cfg.num_conv + 1, seed)
    # at least ``min_steps`` optimiser steps: a small meta-training set has one step per epoch, and 20 steps
    # leave P(same) squeezed into a narrow band where no tau separates classes
    epochs = max(int(tr.epochs), math.ceil(int(tr.min_steps) / len(data)))
    module = LanderModule(feature_dim, int(model_cfg.hidden), int(model_cfg.num_conv), float(model_cfg.dropout),
                          bool(model_cfg.use_gat), int(model_cfg.gat_heads), bool(model_cfg.use_cluster_feat),
                          [str(n) for n in model_cfg.edge_features], float(tr.lr), float(tr.momentum), float(tr.weight_decay), bool(tr.balance),
                          total_steps=epochs * len(data), rotate=bool(tr.rotate))
    loader = DataLoader(data, batch_size=None, collate_fn=_identity)
    val_loader = None
    extra = dict(select_also or {})
    if val_graphs:
        val_loader = DataLoader([[(g, None) for g in val_graphs]
                                 + [(g, name) for name, gs in extra.items() for g in gs]],
                                batch_size=None, collate_fn=_identity)
    k = float(tr.select_se)
    selectors = {name: EarliestWithinSE(f"val/loss_{name}", Path(checkpoint_dir) / f"best_{name}.ckpt", k)
                 for name in extra}
    main = EarliestWithinSE("val/loss", Path(checkpoint_dir) / "best.ckpt", k) if val_loader is not None else None
    callbacks = [*selectors.values(), *([main] if main else [])]
    patience = int(tr.select_patience)
    if main is not None and patience > 0:
        # stop once the held-out loss has not set a new minimum for `patience` epochs: after that the selected
        # epoch can only change through a later, lower minimum (Lightning's EarlyStopping: strict improvement)
        from pytorch_lightning.callbacks import EarlyStopping

        callbacks.append(EarlyStopping(monitor="val/loss", mode="min", patience=patience, min_delta=0.0,
                                       check_finite=False))
    run_epochs = epochs if stop_after_epochs is None else max(1, min(epochs, int(stop_after_epochs)))
    trainer = make_trainer({**dict(trainer_cfg), "max_epochs": run_epochs}, root_dir, checkpoint_dir,
                           callbacks=callbacks)
    fit(trainer, module, loader, val_loader)
    module.selected_checkpoints = {name: str(cb.path) if cb.selected_epoch >= 0 else ""
                                   for name, cb in selectors.items()}
    module.selected_epoch = None
    if main is not None:
        module.selected_checkpoints["last"] = str(Path(checkpoint_dir) / "last.ckpt")
        if main.selected_epoch >= 0:
            state = torch.load(main.path, map_location="cpu", weights_only=True)["state_dict"]
            module.load_state_dict(state)
            module.selected_epoch = main.selected_epoch
    if not all(torch.isfinite(p).all() for p in module.parameters()):
        # without this the NaN surfaced later as an unrelated "Input contains NaN" from the kNN/metrics code
        raise RuntimeError(f"Hi-LANDER training diverged: the GNN's weights are not finite after {run_epochs} epochs; "
                           f"lower model.train.lr (now {float(tr.lr):g})"
                           + ("" if bool(tr.balance) else " or set model.train.balance=true"))
    return module.eval()


def _identity(items):
    return items
