"""``toolkit compress``: config -> data -> train -> SVD-factorize -> fine-tune -> metrics and artifacts.

Outputs (in ``output_dir``; with several compression values, one subfolder ``compression_<p>/`` or
``rank_<k>/`` per value): ``compressed.pt`` (state dict, vocabulary, classes, rank), ``lr_schedule.png``
(the fine-tuning schedule actually used), per-value ``metrics.json``; at the top ``metrics.json``,
``config.yaml`` and ``tradeoff.png`` (accuracy vs embedding size for every method).
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from toolkit.compress import pipeline as P
from toolkit.compress.factorize import compression_of_rank
from toolkit.compress.plots import plot_lr_schedule, plot_tradeoff
from toolkit.console import log
from toolkit.errors import InputError
from toolkit.runtime import Run

SUMMARY_KEYS = ("accuracy", "macro_f1", "params", "bytes", "embedding_params", "embedding_bytes",
                "latency_ms_per_batch")


def _as_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, ListConfig | list | tuple):
        return list(value)
    return [value]


def _with_ratios(m: dict, base: dict) -> dict:
    m = dict(m)
    m["embedding_param_compression"] = 1.0 - m["embedding_params"] / base["embedding_params"]
    m["embedding_byte_compression"] = 1.0 - m["embedding_bytes"] / base["embedding_bytes"]
    if "dense_params" in m and "dense_params" in base:
        m["dense_param_compression"] = 1.0 - m["dense_params"] / base["dense_params"]
        m["dense_byte_compression"] = 1.0 - m["dense_bytes"] / base["dense_bytes"]
    return m


DENSE_LAYER = {"dan": "encoder.0 (first Linear of the MLP)", "lstm": "encoder (LSTM input weights W_ih, b_ih)",
               "textcnn": "head (output Linear)"}


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


def check_training_config(cfg: DictConfig, dim: int | None = None) -> None:
    """Validate the optimizer, schedule and baseline settings before any training starts.

    Without this, a bad value would only surface as a runtime error (exit 1) minutes into training.

    Args:
        cfg: the composed ``compress`` config.
        dim: the embedding dimension d once known (checks that 4-bit quantization gets an even d).

    Raises:
        InputError: unknown ``optimizer.name``; non-positive ``batch_size`` or ``pretrain.lr``; scheduler
            values the scheduler rejects (e.g. ``min_lr >= max_lr``, ``decay`` outside (0, 1]);
            ``baselines.quantize_bits`` other than 16, 8, 4, or 4 with an odd d.
    """
    import torch

    from toolkit.compress.schedulers import build_scheduler

    name = str(cfg.optimizer.get("name", "adam"))
    if name not in ("adam", "sgd"):
        raise InputError("optimizer.name", None, f"expected adam or sgd, got {name!r}")
    for key, value in (("batch_size", cfg.get("batch_size")), ("pretrain.lr", cfg.pretrain.get("lr"))):
        try:
            ok = float(value) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InputError(key, None, f"expected a positive number, got {value!r}")
    sched_cfg = OmegaConf.to_container(cfg.scheduler, resolve=True)
    sched_name = str(sched_cfg.pop("name", ""))
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    try:
        build_scheduler(sched_name, opt, sched_cfg, steps_per_epoch=10)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError("scheduler", sched_name or None, str(exc).strip("'\"")) from None
    if cfg.baselines.enabled:
        for bits in _as_list(cfg.baselines.quantize_bits):
            if isinstance(bits, bool) or bits not in (16, 8, 4):
                raise InputError("baselines.quantize_bits", None, f"expected a list of 16, 8 and/or 4, got {bits!r}")
            if bits == 4 and dim is not None and dim % 2:
                raise InputError("baselines.quantize_bits", None, f"4-bit quantization needs an even embedding "
                                 f"dimension, got d = {dim}; use baselines.quantize_bits=[16,8]")


def run(cfg: DictConfig, run: Run) -> dict:
    """Run one compression experiment (or a sweep over compression/rank values).

    Args:
        cfg: the composed ``compress`` config (``configs/compress/compress.yaml``).
        run: staged output directory; nothing is committed if this raises.

    Returns:
        ``{"metrics": ...}``: see ``docs/compress.md`` (Outputs).

    Raises:
        InputError: no dataset, bad data or vectors, compression outside (0, 1), rank out of range,
            with ``dense.factorize=true`` a ``dense.compression`` outside (0, 1) or leaving rank 0, or a
            ``dense.rank`` outside [1, min(m, n)] (checked before any training),
            bad optimizer / scheduler / baseline settings (:func:`check_training_config`).
    """
    data_cfg = cfg.get("data")
    if data_cfg is None or not data_cfg.get("train"):
        raise InputError("data", None, P.NO_DATA_HINT)
    ranks = _as_list(cfg.get("rank"))
    comps = [] if ranks else [P.check_compression(c) for c in _as_list(cfg.get("compression"))]
    if not ranks and not comps:
        raise InputError("compression", None, "set compression=P (fraction in (0, 1)) or rank=K")
    check_training_config(cfg)
    dense_on, dense_p, dense_k = dense_settings(cfg)
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    arch = str(model_cfg.get("arch", "lstm"))
    dim_cfg = model_cfg.get("embedding_dim")
    seed = int(cfg.seed or 0)
    if cfg.get("threads"):
        import torch

        torch.set_num_threads(int(cfg.threads))

    with run.timer("load_data"):
        data = P.load_text_data(OmegaConf.to_container(data_cfg, resolve=True), dim_cfg, seed)
    dim = int(data.vectors.shape[1]) if data.vectors is not None else int(dim_cfg or 50)
    vsize = len(data.vocab)
    check_training_config(cfg, dim)
    points = ([(f"rank_{r}", None, P.resolve_rank(vsize, dim, None, r)) for r in ranks] if ranks else
              [(f"compression_{p:g}", p, P.resolve_rank(vsize, dim, p, None)) for p in comps])
    dense_shape, ranks_d = None, []
    if dense_on:  # checked like the embedding's rank, before any output or training (exit 2, one line)
        probe = P.build_net(arch, data, dim, model_cfg, None, seed)  # only its layer shapes are used
        try:
            dense_shape = probe.first_dense_shape()
        except ValueError as exc:
            raise InputError("dense.factorize", None, str(exc)) from None
        ranks_d = dense_ranks(dense_shape, points, vsize, dim, dense_p, dense_k)
        del probe
    elif dense_p is not None or dense_k is not None:
        log("dense.factorize is false: dense.compression / dense.rank are ignored")
    if "vectors" in data.info:
        v = data.info["vectors"]
        log(f"word vectors: {v['found']}/{v['vocab_words']} vocabulary words found "
            f"({v['vocab_coverage']:.1%}), {v.get('train_token_coverage', 0):.1%} of training tokens; "
            "the rest are initialised randomly")
    log(f"data: {data.info['train']} train / {data.info['valid']} valid / {data.info['test']} test, "
        f"{len(data.classes)} classes, vocabulary {vsize} x {dim}")

    common = dict(optim_cfg=OmegaConf.to_container(cfg.optimizer, resolve=True),
                  trainer_cfg=OmegaConf.to_container(cfg.trainer, resolve=True),
                  batch_size=int(cfg.batch_size), seed=seed)
    eval_kw = dict(latency_batch=int(cfg.eval.latency_batch), latency_repeats=int(cfg.eval.latency_repeats),
                   dense=dense_on)
    pre_cfg = {"max_lr": float(cfg.pretrain.lr)}
    sched_cfg = OmegaConf.to_container(cfg.scheduler, resolve=True)
    sched_name = str(sched_cfg.pop("name"))

    with run.timer("pretrain"):
        log(f"training the uncompressed {arch} for {cfg.pretrain.epochs} epochs")
        net = P.build_net(arch, data, dim, model_cfg, data.vectors, seed)
        P.train_classifier(net, data, int(cfg.pretrain.epochs), "constant", pre_cfg, **common)
        base = P.evaluate(net, data, **eval_kw)
    base = _with_ratios(base, base)
    metrics: dict[str, Any] = {"data": data.info, "embedding_shape": [vsize, dim], "uncompressed": base}
    if dense_on:
        metrics["dense_layer"] = DENSE_LAYER[arch]
        metrics["dense_shape"] = list(dense_shape)
    curves: dict[str, list[tuple[float, float]]] = {}

    bl = cfg.baselines
    if bl.enabled and bl.quantize_bits:
        with run.timer("quantize"):
            for bits in _as_list(bl.quantize_bits):
                name = "fp16" if int(bits) == 16 else f"int{int(bits)}"
                q = _with_ratios(P.evaluate(P.quantized_copy(net, int(bits)), data, **eval_kw), base)
                metrics[f"quantize_{name}"] = q
                curves[f"quantize {name}"] = [(q["embedding_byte_compression"], q["accuracy"])]

    runs: dict[str, Any] = {}
    budget = int(cfg.pretrain.epochs) + int(cfg.finetune.epochs)
    for i, (label, p, k) in enumerate(points):
        sub = f"{label}/" if len(points) > 1 else ""
        res: dict[str, Any] = {"rank": k, "requested_compression": p}
        kd = ranks_d[i][0] if dense_on else None
        if dense_on:
            res["dense_rank"], res["requested_dense_compression"] = ranks_d[i]
        with run.timer("factorize"):
            fnet = P.factorized_copy(net, k, dense_rank=kd)
            res["svd_no_finetune"] = _with_ratios(P.evaluate(fnet, data, **eval_kw), base)
        with run.timer("finetune"):
            dense_note = f", first dense layer {dense_shape[0]} x {dense_shape[1]} at rank {kd}" if dense_on else ""
            log(f"{label}: rank {k}{dense_note}, fine-tuning {cfg.finetune.epochs} epochs with "
                f"scheduler={sched_name}")
            lrs = P.train_classifier(fnet, data, int(cfg.finetune.epochs), sched_name, sched_cfg, **common)
            res["svd_finetune"] = _with_ratios(P.evaluate(fnet, data, **eval_kw), base)
        res["accuracy_before"] = base["accuracy"]
        res["accuracy_after"] = res["svd_finetune"]["accuracy"]
        extra = {"rank": k, "compression": p, "model": model_cfg}
        if dense_on:
            extra["dense_rank"] = kd
        P.save_checkpoint(run.path(sub + "compressed.pt"), fnet, data, extra)
        if cfg.plot:
            spe = -(-data.info["train"] // int(cfg.batch_size))
            plot_lr_schedule(run.path(sub + "lr_schedule.png"), lrs, spe,
                             f"fine-tuning learning rate: {sched_name} (rank {k})")
        if bl.enabled and bl.from_scratch:
            width = P.equal_params_dim(vsize, dim, k)
            for name, from_svd in (("svd_before_training", True), ("small_embedding", False)):
                with run.timer(name):
                    log(f"{label}: baseline {name} (V x {width} table, {budget} epochs from scratch)")
                    table = P.small_table(data, dim, width, from_svd, seed)
                    bnet = P.build_net(arch, data, width, model_cfg, table, seed)
                    P.train_classifier(bnet, data, budget, "constant", pre_cfg, **common)
                    res[name] = _with_ratios(P.evaluate(bnet, data, **eval_kw), base)
        for method in ("svd_finetune", "svd_no_finetune", "svd_before_training", "small_embedding"):
            if method in res:
                curves.setdefault(method.replace("_", " "), []).append(
                    (res[method]["embedding_byte_compression"], res[method]["accuracy"]))
        if sub:
            run.write_json(sub + "metrics.json", res)
        runs[label] = res
    metrics["runs"] = runs if len(points) > 1 else None
    if len(points) == 1:
        metrics.update(next(iter(runs.values())))
    metrics = {k: v for k, v in metrics.items() if v is not None}
    if cfg.plot:
        plot_tradeoff(run.path("tradeoff.png"), curves, base["accuracy"],
                      f"{arch}: accuracy vs embedding size")
    return {"metrics": metrics}
