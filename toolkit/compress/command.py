"""``toolkit compress``: config -> data -> train -> SVD-factorize -> fine-tune -> metrics and artifacts (a :class:`Task`).

Outputs (in ``output_dir``; with several compression values, one subfolder ``compression_<p>/`` or
``rank_<k>/`` per value): ``compressed.pt`` (state dict, vocabulary, classes, rank, frequency split), ``lr_schedule.png``
(the fine-tuning schedule actually used), ``training.png`` (validation accuracy and loss per epoch of
pretraining and fine-tuning), per-value ``metrics.json``; at the top ``metrics.json``, ``config.yaml`` and
``tradeoff.png`` (accuracy vs embedding size, or whole-model size with ``compression_of=model``).
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from toolkit.compress import pipeline as P
from toolkit.compress.factorize import compression_of_rank, head_rows_for, retained_energy
from toolkit.compress.models import arch_of
from toolkit.compress.plots import plot_lr_schedule, plot_tradeoff, plot_training
from toolkit.compress.schema import is_tail_rank
from toolkit.console import log
from toolkit.errors import InputError
from toolkit.runtime import Run, set_threads
from toolkit.task import Task, run_task

SUMMARY_KEYS = ("accuracy", "macro_f1", "model_params", "model_bytes", "embedding_params", "embedding_bytes",
                "latency_ms_per_batch")


def _as_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, ListConfig | list | tuple):
        return list(value)
    return [value]


def _with_ratios(m: dict, base: dict) -> dict:
    """``m`` with the fractions of embedding, whole-model (and dense-layer) parameters and bytes removed
    relative to ``base`` (the uncompressed model's metrics)."""
    m = dict(m)
    m["embedding_param_compression"] = 1.0 - m["embedding_params"] / base["embedding_params"]
    m["embedding_byte_compression"] = 1.0 - m["embedding_bytes"] / base["embedding_bytes"]
    m["model_param_compression"] = 1.0 - m["model_params"] / base["model_params"]
    m["model_byte_compression"] = 1.0 - m["model_bytes"] / base["model_bytes"]
    if "dense_params" in m and "dense_params" in base:
        m["dense_param_compression"] = 1.0 - m["dense_params"] / base["dense_params"]
        m["dense_byte_compression"] = 1.0 - m["dense_bytes"] / base["dense_bytes"]
    return m


DENSE_LAYER = {"dan": "encoder.0 (first Linear of the MLP)", "lstm": "encoder (LSTM input weights W_ih, b_ih)",
               "textcnn": "head (output Linear)"}


def _log_size_table(label: str, res: dict, base: dict, quantized: dict) -> None:
    """stderr table of one point: accuracy, embedding and whole-model parameters/bytes of every method
    (``quantized``: the ``quantize_*`` metrics of the uncompressed model)."""
    rows = [("uncompressed", base)] + [(m, res[m]) for m in ("svd_finetune", "svd_no_finetune",
                                                             "svd_before_training", "small_embedding") if m in res]
    rows += list(quantized.items())
    log(f"{label}: {'method':<20} {'accuracy':>8} {'embedding params':>17} {'removed':>7} "
        f"{'model params':>13} {'removed':>7} {'model bytes':>12}")
    for name, m in rows:
        log(f"{label}: {name:<20} {m['accuracy']:>8.4f} {m['embedding_params']:>17,} "
            f"{m['embedding_param_compression']:>7.1%} {m['model_params']:>13,} {m['model_param_compression']:>7.1%} "
            f"{m['model_bytes']:>12,}")


def _log_curve(stage: str, result: P.TrainResult) -> None:
    """One stderr line with the per-epoch validation accuracy of a stage (and the restored epoch)."""
    if not result.history:
        return
    accs = " ".join(f"{row['val_acc']:.3f}" for row in result.history)
    note = f"; weights of epoch {result.restored_epoch} restored" if result.restored_epoch else ""
    stop = "; stopped early" if result.stopped_early else ""
    log(f"{stage}: validation accuracy per epoch {accs}{stop}{note}")


def dense_settings(cfg: DictConfig) -> tuple[bool, Any, Any]:
    """``(factorize, compression, rank)`` of the ``dense`` config group (absent: off).

    Raises:
        InputError: ``dense.factorize`` not a boolean.
    """
    dense = cfg.get("dense") or {}
    on = dense.get("factorize", False)
    if not isinstance(on, bool):
        raise InputError("dense.factorize", None, f"expected true or false, got {on!r}")
    return on, dense.get("compression"), dense.get("rank")


def dense_ranks(shape: tuple[int, int], points: list[tuple[str, float | None, int]], vocab_size: int, dim: int,
                compression: Any, rank: Any) -> list[tuple[int, float | None]]:
    """Rank of the factorized first dense layer for every (label, p, k) point of the sweep.

    ``dense.rank`` wins, then ``dense.compression``; when both are null the point's embedding compression p is
    used, or, for an explicit embedding ``rank=k``, the compression that rank achieves, 1 - k (V + d) / (V d).

    Returns:
        One ``(dense rank, dense compression used or None for dense.rank)`` per point.

    Raises:
        InputError: naming ``dense.rank`` or ``dense.compression`` (see
            :func:`toolkit.compress.pipeline.resolve_dense_rank`).
    """
    out = []
    for _, p, k in points:
        if rank is not None:
            out.append((P.resolve_dense_rank(shape, None, rank), None))
        elif compression is not None:
            pd = P.check_compression(compression, "dense.compression", "dense layer")
            out.append((P.resolve_dense_rank(shape, pd, None), pd))
        else:
            pd = p if p is not None else compression_of_rank(vocab_size, dim, k)
            if not 0.0 < pd < 1.0:
                raise InputError("dense.compression", None, f"the embedding's rank {k} removes {pd:.3g} of its "
                                 "parameters, not a fraction in (0, 1); set dense.compression or dense.rank")
            out.append((P.resolve_dense_rank(shape, pd, None), float(pd)))
    return out


def model_target_ranks(points_p: list[float], total_params: int, embedding_shape: tuple[int, int],
                       dense_shape: tuple[int, int] | None, dense_p: Any, dense_k: Any
                       ) -> list[tuple[int, tuple[int, float | None] | None]]:
    """Ranks for ``compression_of=model``: per requested p, the embedding's rank and (with the dense layer on)
    ``(dense rank, dense.compression or None)``, chosen by
    :func:`toolkit.compress.factorize.ranks_for_model_compression`.

    ``dense.rank`` or ``dense.compression``, when set, fix the dense layer's rank and the embedding gets the rest
    of the budget; otherwise both layers keep the same share of their weights.

    Raises:
        InputError: naming ``compression`` when the layers that are not factorized (plus rank-1 factors) already
            exceed the target, with the largest reachable value; ``dense.rank`` / ``dense.compression`` errors.
    """
    from toolkit.compress.factorize import max_model_compression, ranks_for_model_compression

    fixed_d = None
    if dense_shape is not None and (dense_k is not None or dense_p is not None):
        pd = None if dense_k is not None else P.check_compression(dense_p, "dense.compression", "dense layer")
        fixed_d = P.resolve_dense_rank(dense_shape, pd, dense_k)
    out = []
    for p in points_p:
        k, k_d = ranks_for_model_compression(total_params, embedding_shape, p, dense_shape, fixed_d)
        if k < 1:
            most = max_model_compression(total_params, embedding_shape, dense_shape, fixed_d)
            v, d = embedding_shape
            other = total_params - v * d - (dense_shape[0] * dense_shape[1] if dense_shape else 0)
            layers = "embedding and first dense layer" if dense_shape else "embedding"
            reach = (f"at most {most:.4g} is reachable" if most > 0 else "no compression is reachable")
            raise InputError("compression", None, f"{p:g} of the whole model ({total_params:,} parameters) is "
                             f"unreachable with compression_of=model: the layers besides the {layers} hold "
                             f"{other:,} ({other / total_params:.1%}) and stay; {reach} (rank 1); use a smaller "
                             "compression, dense.factorize=true, or compression_of=embedding")
        out.append((int(k), None if k_d is None else (int(k_d), None if dense_k is not None or dense_p is None
                                                         else float(dense_p))))
    return out


def svd_metric(value: str, arch: str) -> str:
    """The factorization metric ``svd.metric`` resolves to for a model: ``none`` or ``input_layers``.

    ``auto`` is ``input_layers`` for ``textcnn`` and ``none`` (the paper's plain SVD) for ``lstm`` and ``dan``:
    at rank 4 of a 50-d table the CNN's loss is the subspace the plain SVD keeps (its width-3/4/5 filters read
    each word only through linear taps), and the output-aware subspace recovers part of it (TREC +2.2 points,
    95% CI [+1.3, +3.1], 3 seeds), while the LSTM and DAN recover in fine-tuning either way and gain nothing
    significant from it (TREC LSTM -1.0 [-2.3, +0.3]); ``benchmarks/compress_variants.py``, docs/compress.md.

    Raises:
        ValueError: an unknown value.
    """
    if value == "auto":
        return "input_layers" if arch == "textcnn" else "none"
    if value not in ("none", "input_layers"):
        raise ValueError(f"unknown svd.metric {value!r}")
    return value


def tail_rank_setting(value: Any, arch: str) -> Any:
    """What ``svd.tail_rank`` resolves to for a model: ``none``, ``validation``, ``finetuned`` or an integer.

    ``auto`` is ``validation`` for ``textcnn`` and ``finetuned`` for ``lstm`` and ``dan``. Over 10 seeds the split
    lifts the CNN on every set (TREC +4.0 points, 95% CI [+0.6, +7.5]; SST-2 +1.5; SNIPS +0.7), and choosing
    between split and plain only after fine-tuning gives it back 0.3 points on average. The LSTM and DAN rebuild
    their embedding in fine-tuning from the plain factorization's damaged start, which on TREC beats the split
    (DAN -4.2 [-9.2, +0.8] with the split), while the split wins on SNIPS; fine-tuning both and keeping the better
    on validation is at least as good as the plain factorization on all six cells (+0.0 to +0.8 points, SNIPS LSTM
    +0.8 [+0.3, +1.4]), at twice the fine-tuning time; ``benchmarks/compress_variants.py``, docs/compress.md
    "Frequency split".

    Raises:
        ValueError: an unknown value.
    """
    if not is_tail_rank(value):
        raise ValueError(f"unknown svd.tail_rank {value!r}")
    if value == "auto":
        return "validation" if arch == "textcnn" else "finetuned"
    return value


def check_tail_rank(setting: Any, rank: int) -> int:
    """An integer ``svd.tail_rank`` checked against a point's rank k; returns it as an int.

    Raises:
        InputError: naming ``svd.tail_rank`` when it is above k.
    """
    r = int(setting)
    if r > rank:
        raise InputError("svd.tail_rank", None, f"must be at most the rank {rank} of every point, got {r}; "
                         "use svd.tail_rank=validation or none")
    return r


def split_for_point(setting: Any, net: Any, data: Any, rank: int, metric: Any, row_weights: Any
                    ) -> tuple[int, int, list[dict[str, Any]] | None]:
    """``(tail rank, head rows, candidates or None)`` of one point's frequency split (``svd.tail_rank``, resolved
    by :func:`tail_rank_setting`).

    ``none``: the plain factorization (rank k, no head rows; the paper).  An integer r: the ``head_rows_for``
    rows that r frees from the rank-k budget stay dense.  ``validation``: every :func:`~toolkit.compress.pipeline.
    split_candidates` pair scored on validation accuracy before fine-tuning (:func:`~toolkit.compress.pipeline.
    choose_split`).

    Raises:
        InputError: naming ``svd.tail_rank``: an integer above the point's rank, or one whose tail would hold
            fewer rows than its rank.
    """
    if setting == "none":
        return rank, 0, None
    if setting in ("validation", "finetuned"):
        return P.choose_split(net, data, rank, metric=metric, row_weights=row_weights)
    r = check_tail_rank(setting, rank)
    h = 0 if r == rank else head_rows_for(len(data.vocab), int(net.embedding_dim), rank, r)
    if 0 < len(data.vocab) - h < r:
        raise InputError("svd.tail_rank", None, f"leaves {len(data.vocab) - h} tail rows for rank {r}; "
                         "use a smaller svd.tail_rank")
    return r, h, None


def stop_settings(cfg: DictConfig, stage: str) -> dict[str, Any]:
    """``restore_best`` and ``early_stopping_patience`` of ``pretrain`` or ``finetune`` (absent: off).

    Returns:
        keyword arguments of :func:`toolkit.compress.pipeline.fit_classifier`.
    """
    group = cfg.get(stage) or {}
    patience = group.get("early_stopping_patience")
    return {"restore_best": bool(group.get("restore_best", False)),
            "early_stopping_patience": None if patience is None else int(patience)}


def warn_if_rising(result: P.TrainResult, stage: str, key: str) -> None:
    """Log a warning on stderr when validation accuracy is still rising at the last epoch of a stage.

    Args:
        result: the stage's :class:`~toolkit.compress.pipeline.TrainResult`.
        stage: name in the message (``pretraining``, ``compression_0.9: fine-tuning``).
        key: the config key to raise (``pretrain.epochs`` / ``finetune.epochs``).
    """
    if result.still_rising:
        acc = [row["val_acc"] for row in result.history]
        log(f"warning: {stage}: validation accuracy still rising at the last epoch ({max(acc[:-1]):.4f} before, "
            f"{acc[-1]:.4f} at epoch {len(acc)}): under-trained: raise {key}")


def calr_restarts(sched_name: str, sched_cfg: dict, updates_per_epoch: int, updates: int) -> int | None:
    """Warm restarts CALR makes in ``updates`` updates (None for the other schedules)."""
    if sched_name != "calr":
        return None
    import torch

    from toolkit.compress.schedulers import build_scheduler

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    return build_scheduler("calr", opt, sched_cfg, updates_per_epoch).restarts_within(updates)


def check_schedule(cfg: DictConfig) -> None:
    """Build the fine-tuning scheduler once on a dummy optimizer, so values only the scheduler can judge
    (e.g. ``min_lr >= max_lr``) exit 2 before training instead of failing minutes into it.

    Single-key ranges are declared in :mod:`toolkit.compress.schema`.

    Raises:
        InputError: naming ``scheduler`` and the scheduler's own message.
    """
    import torch

    from toolkit.compress.schedulers import build_scheduler

    sched_cfg = OmegaConf.to_container(cfg.scheduler, resolve=True)
    sched_name = str(sched_cfg.pop("name", ""))
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    try:
        build_scheduler(sched_name, opt, sched_cfg, steps_per_epoch=10)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError("scheduler", sched_name or None, str(exc).strip("'\"")) from None


def check_quantize_dim(cfg: DictConfig, dim: int) -> None:
    """4-bit quantization packs two values per byte: refuse it for an odd embedding dimension ``dim`` (d).

    Raises:
        InputError: naming ``baselines.quantize_bits``.
    """
    if cfg.baselines.enabled and 4 in _as_list(cfg.baselines.quantize_bits) and dim % 2:
        raise InputError("baselines.quantize_bits", None, f"4-bit quantization needs an even embedding "
                         f"dimension, got d = {dim}; use baselines.quantize_bits=[16,8]")


class Compress(Task):
    """``toolkit compress``: one compression experiment, or a sweep over compression/rank values.

    Stages (:mod:`toolkit.task`): ``validate`` (declared constraints, the data and compression keys, optimizer,
    schedule and baseline settings); ``setup`` (text data, the embedding dimension d, every point's rank, the
    dense layer's ranks, for ``compression_of=model`` chosen for the whole model's parameter budget, all checked
    before training); ``fit`` (pre-train the uncompressed model; per point: truncated SVD, fine-tuning with
    ``scheduler``, the from-scratch baselines; every stage records its validation curve, may restore its best
    epoch or stop early, and warns when validation accuracy still rises at its last epoch); ``evaluate``
    (accuracy, macro F1, embedding and whole-model sizes and latency of every model, quantization baselines,
    the curves); ``save`` (``compressed.pt`` per point, per-point ``metrics.json`` in a sweep,
    ``lr_schedule.png``, ``training.png``, ``tradeoff.png``).

    Raises (from its stages):
        InputError: no dataset, bad data or vectors, compression outside (0, 1), rank out of range,
            with ``compression_of=model`` a target the layers that stay already exceed,
            with ``dense.factorize=true`` a ``dense.compression`` outside (0, 1) or leaving rank 0, or a
            ``dense.rank`` outside [1, min(m, n)] (all before any training), bad optimizer / scheduler /
            baseline settings (:mod:`toolkit.compress.schema`, :func:`check_schedule`, :func:`check_quantize_dim`).
    """

    config_name = "compress"

    def validate(self) -> None:
        """Declared constraints; data given; compression or rank; the schedule (:func:`check_schedule`); ``model``
        naming a compress model class."""
        super().validate()
        cfg = self.cfg
        data_cfg = cfg.get("data")
        if data_cfg is None or not data_cfg.get("train"):
            raise InputError("data", None, P.NO_DATA_HINT)
        self.ranks = _as_list(cfg.get("rank"))
        self.comps = [] if self.ranks else [P.check_compression(c) for c in _as_list(cfg.get("compression"))]
        if not self.ranks and not self.comps:
            raise InputError("compression", None, "set compression=P (fraction in (0, 1)) or rank=K")
        check_schedule(cfg)
        self.dense_on, self.dense_p, self.dense_k = dense_settings(cfg)
        arch_of(cfg.model)  # a compress model class (the schema checks the same; a task run directly gets it too)

    def setup(self) -> None:
        """Text data, d, the sweep's points ``(label, p, k)`` and dense ranks; training settings."""
        cfg, run = self.cfg, self.run
        self.model_cfg = model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
        self.arch = arch_of(model_cfg)  # the short name (lstm | dan | textcnn) logs and checkpoints carry
        dim_cfg = model_cfg.get("embedding_dim")
        self.seed = seed = int(cfg.seed or 0)
        set_threads(cfg.get("threads"))
        with run.timer("load_data"):
            data = self.data = P.load_text_data(OmegaConf.to_container(cfg.data, resolve=True), dim_cfg, seed)
        dim = self.dim = int(data.vectors.shape[1]) if data.vectors is not None else int(dim_cfg or 50)
        vsize = len(data.vocab)
        check_quantize_dim(cfg, dim)
        from toolkit.compress.metrics import model_size

        probe = P.build_net(model_cfg, data, dim, None, seed)  # only its layer shapes and size are used
        self.base_params = int(model_size(probe)["model_params"])
        self.dense_shape, self.ranks_d = None, []
        if self.dense_on:  # checked like the embedding's rank, before any output or training (exit 2, one line)
            try:
                self.dense_shape = probe.first_dense_shape()
            except ValueError as exc:
                raise InputError("dense.factorize", None, str(exc)) from None
        elif self.dense_p is not None or self.dense_k is not None:
            log("dense.factorize is false: dense.compression / dense.rank are ignored")
        del probe
        self.target = str(cfg.get("compression_of") or "embedding")
        if self.ranks and self.target == "model":
            log("rank= is set: compression_of=model is ignored (the rank is fixed)")
            self.target = "embedding"
        if self.ranks:
            points = [(f"rank_{r}", None, P.resolve_rank(vsize, dim, None, r)) for r in self.ranks]
        elif self.target == "model":
            chosen = model_target_ranks(self.comps, self.base_params, (vsize, dim), self.dense_shape,
                                        self.dense_p, self.dense_k)
            points = [(f"compression_{p:g}", p, k) for p, (k, _) in zip(self.comps, chosen, strict=True)]
            self.ranks_d = [kd for _, kd in chosen] if self.dense_on else []
        else:
            points = [(f"compression_{p:g}", p, P.resolve_rank(vsize, dim, p, None)) for p in self.comps]
        if self.dense_on and self.target != "model":
            self.ranks_d = dense_ranks(self.dense_shape, points, vsize, dim, self.dense_p, self.dense_k)
        self.points = points
        self.tail_setting = tail_rank_setting((cfg.get("svd") or {}).get("tail_rank", "none"), self.arch)
        if self.tail_setting not in ("none", "validation", "finetuned"):
            for _label, _p, k in points:  # before any training: exit 2 with one line
                check_tail_rank(self.tail_setting, k)
        if "vectors" in data.info:
            v = data.info["vectors"]
            log(f"word vectors: {v['found']}/{v['vocab_words']} vocabulary words found "
                f"({v['vocab_coverage']:.1%}), {v.get('train_token_coverage', 0):.1%} of training tokens; "
                "the rest are initialised randomly")
        log(f"data: {data.info['train']} train / {data.info['valid']} valid / {data.info['test']} test, "
            f"{len(data.classes)} classes, vocabulary {vsize} x {dim}")
        self.common = dict(optim_cfg=OmegaConf.to_container(cfg.optimizer, resolve=True),
                           trainer_cfg=OmegaConf.to_container(cfg.trainer, resolve=True),
                           batch_size=int(cfg.batch_size), seed=seed)
        self.pre_cfg = {"max_lr": float(cfg.pretrain.lr)}
        self.pre_stop = stop_settings(cfg, "pretrain")
        self.ft_stop = stop_settings(cfg, "finetune")
        distill = cfg.finetune.get("distill") or {}
        self.distill = {"distill_weight": float(distill.get("weight", 0.0) or 0.0),
                        "temperature": float(distill.get("temperature", 1.0) or 1.0)}
        self.sched_cfg = OmegaConf.to_container(cfg.scheduler, resolve=True)
        self.sched_name = str(self.sched_cfg.pop("name"))

    def fit(self) -> None:
        """Pre-train; per point: factorize (a copy is kept for the no-fine-tuning row), fine-tune (with
        ``svd.tail_rank=finetuned`` two starts, the better on validation kept), baselines."""
        cfg, run, data, arch = self.cfg, self.run, self.data, self.arch
        with run.timer("pretrain"):
            log(f"training the uncompressed {arch} for {cfg.pretrain.epochs} epochs")
            self.net = P.build_net(self.model_cfg, data, self.dim, data.vectors, self.seed)
            self.pre_result = P.fit_classifier(self.net, data, int(cfg.pretrain.epochs), "constant", self.pre_cfg,
                                               **self.common, **self.pre_stop)
            _log_curve("pretraining", self.pre_result)
            warn_if_rising(self.pre_result, "pretraining", "pretrain.epochs")
        bl = cfg.baselines
        budget = int(cfg.pretrain.epochs) + int(cfg.finetune.epochs)
        spe = -(-int(data.info["train"]) // int(cfg.batch_size))
        if calr_restarts(self.sched_name, self.sched_cfg, spe, spe * int(cfg.finetune.epochs)) == 0:
            log(f"note: scheduler=calr makes no warm restart in finetune.epochs={cfg.finetune.epochs} (its peak "
                "only decays); raise finetune.epochs, scheduler.decay or scheduler.min_lr for a restart")
        self.models: dict[str, dict[str, Any]] = {}
        svd_cfg = cfg.get("svd") or {}
        row_weights = metric = None
        if str(svd_cfg.get("row_weights", "none")) == "frequency":
            row_weights = P.word_counts(data)
        self.svd_metric = svd_metric(str(svd_cfg.get("metric", "none")), arch)
        if self.svd_metric == "input_layers":
            metric = self.net.input_metric()
        for i, (label, _p, k) in enumerate(self.points):
            nets: dict[str, Any] = {"dense_rank": self.ranks_d[i][0] if self.dense_on else None}
            with run.timer("factorize"):
                r, h, cands = split_for_point(self.tail_setting, self.net, data, k, metric, row_weights)
                if cands:
                    log(f"{label}: frequency split chosen on validation before fine-tuning: " + ", ".join(
                        f"tail rank {c['tail_rank']} + {c['head_rows']} head rows ({c['head_token_share']:.0%} of "
                        f"tokens) " + ("n/a" if c["val_acc"] is None else f"{c['val_acc']:.3f}") for c in cands))
            starts = [(r, h)]
            if self.tail_setting == "finetuned":
                # the plain factorization and the best split (validation accuracy before fine-tuning, among tail
                # ranks below k) are both fine-tuned; the one with the better validation accuracy after it is kept
                splits = [c for c in cands or [] if c["tail_rank"] < k and c["val_acc"] is not None]
                best_split = max(splits, key=lambda c: c["val_acc"]) if splits else None  # first (larger r) on ties
                starts = [(k, 0)] + ([(best_split["tail_rank"], best_split["head_rows"])] if best_split else [])
            runs = [self._finetune_start(label, k, r_s, h_s, nets, metric, row_weights) for r_s, h_s in starts]
            tried = [{"tail_rank": r_s, "head_rows": h_s, "best_val_acc": res.summary()["best_val_acc"]}
                     for (r_s, h_s), (_, res, _) in zip(starts, runs, strict=True)]
            pick = max(range(len(tried)), key=lambda i: (-1.0 if tried[i]["best_val_acc"] is None
                                                         else tried[i]["best_val_acc"], -i))  # the first on ties
            chosen = tried[pick]
            fnet, res, nets["svd_no_finetune"] = runs[pick]
            nets["split"] = {"tail_rank": chosen["tail_rank"], "head_rows": chosen["head_rows"], "candidates": cands,
                             "finetuned": tried if len(tried) > 1 else None}
            if len(tried) > 1:
                log(f"{label}: kept the " + ("plain factorization" if chosen["head_rows"] == 0 else
                                             f"split (tail rank {chosen['tail_rank']})") +
                    " by validation accuracy after fine-tuning: " + ", ".join(
                        f"tail rank {t['tail_rank']} " + ("n/a" if t["best_val_acc"] is None else
                                                          f"{t['best_val_acc']:.3f}") for t in tried))
            nets["lrs"], nets["finetune"] = res.lrs, res
            nets["svd_finetune"] = fnet
            if bl.enabled and bl.from_scratch:
                width = P.equal_params_dim(len(data.vocab), self.dim, k)
                for name, from_svd in (("svd_before_training", True), ("small_embedding", False)):
                    with run.timer(name):
                        log(f"{label}: baseline {name} (V x {width} table, {budget} epochs from scratch)")
                        table = P.small_table(data, self.dim, width, from_svd, self.seed)
                        bnet = P.build_net(self.model_cfg, data, width, table, self.seed)
                        nets[f"{name}_training"] = P.fit_classifier(bnet, data, budget, "constant", self.pre_cfg,
                                                                    **self.common, **self.ft_stop)
                        nets[name] = bnet
            self.models[label] = nets

    def _finetune_start(self, label: str, k: int, r: int, h: int, nets: dict, metric: Any, row_weights: Any):
        """Factorize the trained model with tail rank ``r`` and ``h`` dense head rows, fine-tune it.

        Returns:
            ``(fine-tuned net, its TrainResult, a copy of the factorized net before fine-tuning)``.
        """
        import copy

        cfg, run, data = self.cfg, self.run, self.data
        with run.timer("factorize"):
            fnet = P.factorized_copy(self.net, r, dense_rank=nets["dense_rank"], row_weights=row_weights,
                                     metric=metric, head=h)
            before = copy.deepcopy(fnet)
        with run.timer("finetune"):
            dense_note = (f", first dense layer {self.dense_shape[0]} x {self.dense_shape[1]} at rank "
                          f"{nets['dense_rank']}" if self.dense_on else "")
            rest = f"the rest at rank {r}" if r else "the other words as zero vectors"
            split_note = f" budget: the {h} most frequent words' rows dense, {rest}" if h else ""
            log(f"{label}: rank {k}{split_note}{dense_note}, fine-tuning {cfg.finetune.epochs} epochs with "
                f"scheduler={self.sched_name}")
            teacher = self.net if self.distill["distill_weight"] > 0 else None
            res = P.fit_classifier(fnet, data, int(cfg.finetune.epochs), self.sched_name, self.sched_cfg,
                                   **self.common, **self.ft_stop, teacher=teacher, **self.distill)
            _log_curve(f"{label}: fine-tuning", res)
            warn_if_rising(res, f"{label}: fine-tuning", "finetune.epochs")
        return fnet, res, before

    def evaluate(self) -> dict:
        """Every model on the test split; sizes and compression ratios against the uncompressed model."""
        cfg, data = self.cfg, self.data
        eval_kw = dict(latency_batch=int(cfg.eval.latency_batch), latency_repeats=int(cfg.eval.latency_repeats),
                       dense=self.dense_on)
        self.size_key = "model_byte_compression" if self.target == "model" else "embedding_byte_compression"
        with self.run.timer("evaluate"):
            base = P.evaluate(self.net, data, **eval_kw)
            base = _with_ratios(base, base)
            metrics: dict[str, Any] = {"data": data.info, "embedding_shape": [len(data.vocab), self.dim],
                                       "compression_of": self.target, "uncompressed": base,
                                       "pretrain": self.pre_result.summary()}
            under = ["pretrain"] if self.pre_result.still_rising else []
            if self.dense_on:
                metrics["dense_layer"] = DENSE_LAYER[self.arch]
                metrics["dense_shape"] = list(self.dense_shape)
            self.curves: dict[str, list[tuple[float, float]]] = {}
            bl = cfg.baselines
            if bl.enabled and bl.quantize_bits:
                for bits in _as_list(bl.quantize_bits):
                    name = "fp16" if int(bits) == 16 else f"int{int(bits)}"
                    q = _with_ratios(P.evaluate(P.quantized_copy(self.net, int(bits)), data, **eval_kw), base)
                    metrics[f"quantize_{name}"] = q
                    self.curves[f"quantize {name}"] = [(q[self.size_key], q["accuracy"])]
            runs: dict[str, Any] = {}
            for i, (label, p, k) in enumerate(self.points):
                nets = self.models[label]
                res: dict[str, Any] = {"rank": k, "requested_compression": p,
                                       "svd_energy": retained_energy(self.net.embedding.weight, [k])[0],
                                       "svd_metric": self.svd_metric, "tail_rank": nets["split"]["tail_rank"],
                                       "head_rows": nets["split"]["head_rows"]}
                if nets["split"]["candidates"] is not None:
                    res["split_candidates"] = nets["split"]["candidates"]
                if nets["split"].get("finetuned"):
                    res["finetuned_candidates"] = nets["split"]["finetuned"]
                if self.dense_on:
                    res["dense_rank"], res["requested_dense_compression"] = self.ranks_d[i]
                for method in ("svd_no_finetune", "svd_finetune", "svd_before_training", "small_embedding"):
                    if method in nets:
                        res[method] = _with_ratios(P.evaluate(nets[method], data, **eval_kw), base)
                res["accuracy_before"] = base["accuracy"]
                res["accuracy_after"] = res["svd_finetune"]["accuracy"]
                res["embedding_compression"] = res["svd_finetune"]["embedding_param_compression"]
                res["model_compression"] = res["svd_finetune"]["model_param_compression"]
                ft = nets["finetune"]
                res["finetune"] = {**ft.summary(), "calr_restarts": calr_restarts(
                    self.sched_name, self.sched_cfg, ft.updates_per_epoch, len(ft.lrs))}
                if ft.still_rising:
                    under.append(f"{label}/finetune")
                trained = {m: nets[f"{m}_training"].summary() for m in ("svd_before_training", "small_embedding")
                           if f"{m}_training" in nets}
                if trained:
                    res["baseline_training"] = trained
                _log_size_table(label, res, base, {k: v for k, v in metrics.items() if k.startswith("quantize_")})
                for method in ("svd_finetune", "svd_no_finetune", "svd_before_training", "small_embedding"):
                    if method in res:
                        self.curves.setdefault(method.replace("_", " "), []).append(
                            (res[method][self.size_key], res[method]["accuracy"]))
                runs[label] = res
        metrics["under_trained"] = under
        metrics["runs"] = runs if len(self.points) > 1 else None
        if len(self.points) == 1:
            metrics.update(next(iter(runs.values())))
        self.runs = runs
        return {k: v for k, v in metrics.items() if v is not None}

    def save(self, metrics: dict) -> None:
        """``compressed.pt`` per point (in ``<point>/`` for a sweep, with its ``metrics.json``) and the plots."""
        cfg, run, data = self.cfg, self.run, self.data
        for label, p, k in self.points:
            sub = f"{label}/" if len(self.points) > 1 else ""
            nets = self.models[label]
            extra = {"rank": k, "compression": p,  # the model's arguments, not its class path (checkpoints: `arch`)
                     "tail_rank": nets["split"]["tail_rank"], "head_rows": nets["split"]["head_rows"],
                     "model": {key: v for key, v in self.model_cfg.items() if not key.startswith("_")}}
            if self.dense_on:
                extra["dense_rank"] = nets["dense_rank"]
            P.save_checkpoint(run.path(sub + "compressed.pt"), nets["svd_finetune"], data, extra)
            if cfg.plot:
                spe = nets["finetune"].updates_per_epoch
                plot_lr_schedule(run.path(sub + "lr_schedule.png"), nets["lrs"], spe,
                                 f"fine-tuning learning rate: {self.sched_name} (rank {k})")
                plot_training(run.path(sub + "training.png"), self.pre_result.history, nets["finetune"].history,
                              f"{self.arch}: validation curve (fine-tuning at rank {k})",
                              pre_best=self.pre_result.restored_epoch, ft_best=nets["finetune"].restored_epoch)
            if sub:
                run.write_json(sub + "metrics.json", self.runs[label])
        if cfg.plot:
            what = "model" if self.target == "model" else "embedding"
            plot_tradeoff(run.path("tradeoff.png"), self.curves, metrics["uncompressed"]["accuracy"],
                          f"{self.arch}: accuracy vs {what} size",
                          xlabel=f"{what} size reduction (fraction of bytes removed)")


def run(cfg: DictConfig, run: Run) -> dict:
    """Run ``toolkit compress`` (:class:`Compress` through :func:`toolkit.task.run_task`).

    Args:
        cfg: the composed ``compress`` config (``configs/compress/compress.yaml``).
        run: staged output directory; nothing is committed if this raises.

    Returns:
        ``{"metrics": ...}``: see ``docs/compress.md`` (Outputs).

    Raises:
        InputError: see :class:`Compress`.
    """
    return run_task(Compress(cfg, run))
