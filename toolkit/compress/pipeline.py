"""The compression experiment: load text data, train, factorize, fine-tune, and the baselines.

Pure functions over plain values (no Hydra, no CLI); :mod:`toolkit.compress.command` and
``benchmarks/bench_compress.py`` both drive them.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from toolkit.compress import metrics as M
from toolkit.compress.factorize import FactorizedEmbedding, head_rows_for, rank_for_compression
from toolkit.compress.files import check_encoding
from toolkit.compress.models import TextClassifier, TextClassifierModule, build_classifier
from toolkit.compress.quantize import QuantizedEmbedding
from toolkit.compress.schema import UNSEEN_POLICIES
from toolkit.compress.splits import apply_unseen_policy, carve
from toolkit.compress.text import TextSplit, Vocabulary, load_word_vectors, make_tokenizer, read_split
from toolkit.console import log
from toolkit.errors import InputError

NO_DATA_HINT = ("no dataset given: pass data=sst2, data=trec or data=snips (files under ../shared/data/text), "
                "or data=text data.train=PATH data.test=PATH [data.format=csv|tsv|jsonl|lines|snips]")


@dataclass
class TextData:
    """Encoded splits (token ids long [N, T], labels long [N]), vocabulary, classes and vectors."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_valid: torch.Tensor
    y_valid: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    vocab: Vocabulary
    classes: list[str]
    vectors: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)


def _split_settings(data_cfg: Mapping[str, Any], seed: int) -> tuple[bool, int]:
    split = data_cfg.get("split") or {}
    stratify = split.get("stratify", False)
    if not isinstance(stratify, bool):
        raise InputError("data.split.stratify", None, f"got {stratify!r}; expected true or false")
    s = split.get("seed")
    return stratify, int(seed if s is None else s)


def load_text_data(data_cfg: Mapping[str, Any] | None, expected_dim: int | None = None, seed: int = 0) -> TextData:
    """Read, tokenize and encode train/valid/test splits and load word vectors.

    Config keys (``configs/compress/data/text.yaml``, documented in ``docs/compress.md``): ``train``; ``test``
    (else ``test_fraction`` of train is carved out as the test split); ``valid`` (else ``valid_fraction`` of
    train is held out); ``split.stratify`` and ``split.seed`` (how train is carved; the seed defaults to
    ``seed``); ``unseen_labels`` (``error`` | ``drop`` | ``other``: valid/test labels absent from training);
    ``format``, ``header``, ``text_column``, ``label_column``, ``int_labels``, ``encoding``; ``lowercase``,
    ``max_len``, ``min_freq``, ``max_vocab``; ``vectors`` (GloVe/word2vec text, ``.gz`` or ``.zip``, or null),
    ``vectors_member``, ``vectors_encoding``.  Every path may use ``~`` and ``$VAR``.

    Returns:
        :class:`TextData`; the classes are the training split's labels.  With ``unseen_labels=other`` the unseen
        valid/test rows have label index ``len(classes)``, which the classifier never predicts.  ``info`` holds
        the split sizes, ``split`` (when train was carved), ``unseen_labels`` (with ``drop``/``other``: rows and
        labels per split) and ``vectors`` (coverage).

    Raises:
        InputError: no dataset configured, reader errors, bad split fractions, test/valid labels absent from
            train (with ``unseen_labels=error``), vector file errors.
    """
    if not data_cfg or not data_cfg.get("train"):
        raise InputError("data", None, NO_DATA_HINT)
    test_fraction = data_cfg.get("test_fraction")
    if data_cfg.get("test") and test_fraction is not None:
        raise InputError("data.test_fraction", None, f"is {test_fraction} but data.test is given too: set one "
                         "(data.test_fraction=null to read the test file)")
    if not data_cfg.get("test") and test_fraction is None:
        raise InputError("data.test", None, "no test split given (data.test=PATH, or data.test_fraction=F to "
                         "carve it from data.train)")
    policy = str(data_cfg.get("unseen_labels", "error"))
    if policy not in UNSEEN_POLICIES:
        raise InputError("data.unseen_labels", None, f"got {policy!r}; expected one of {', '.join(UNSEEN_POLICIES)}")
    encoding = check_encoding(data_cfg.get("encoding", "utf-8"), "data.encoding")
    kw = dict(fmt=str(data_cfg.get("format", "auto")), text_column=data_cfg.get("text_column", "text"),
              label_column=data_cfg.get("label_column", "label"), int_labels=bool(data_cfg.get("int_labels", False)),
              header=bool(data_cfg.get("header", True)), encoding=encoding)
    train = read_split(data_cfg["train"], key="data.train", **kw)
    test = read_split(data_cfg["test"], key="data.test", **kw) if data_cfg.get("test") else None
    valid = read_split(data_cfg["valid"], key="data.valid", **kw) if data_cfg.get("valid") else None
    info: dict[str, Any] = {}
    if test is None or valid is None:
        stratify, split_seed = _split_settings(data_cfg, seed)
        valid_fraction = float(data_cfg.get("valid_fraction", 0.1)) if valid is None else None
        source = train.source
        train, carved_valid, carved_test = carve(train, float(test_fraction) if test is None else None,
                                                 valid_fraction, stratify, split_seed)
        valid, test = valid or carved_valid, test or carved_test
        info["split"] = {"source": source, "test_fraction": float(test_fraction) if carved_test else None,
                         "valid_fraction": valid_fraction, "stratify": stratify, "seed": split_seed}
    classes = sorted(set(train.labels), key=lambda s: (len(s), s) if s.lstrip("-").isdigit() else (0, s))
    unseen: dict[str, Any] = {"policy": policy}
    for name in ("valid", "test"):
        split = valid if name == "valid" else test
        split, unseen[name] = apply_unseen_policy(split, name, classes, policy, train.source)
        if name == "valid":
            valid = split
        else:
            test = split
    if policy != "error":
        if policy == "other":
            unseen["class_index"] = len(classes)
        log(f"data.unseen_labels={policy}: " + ", ".join(
            f"{unseen[n]['rows']} {n} rows ({'dropped' if policy == 'drop' else 'scored as errors'})"
            for n in ("valid", "test")))
    tokenize = make_tokenizer(bool(data_cfg.get("lowercase", True)))
    toks = {name: [tokenize(t) for t in s.texts] for name, s in (("train", train), ("valid", valid), ("test", test))}
    vocab = Vocabulary.build(toks["train"], int(data_cfg.get("min_freq", 1)), data_cfg.get("max_vocab"))
    max_len = int(data_cfg.get("max_len", 40))
    index = {c: i for i, c in enumerate(classes)}
    other = len(classes)  # only reached with unseen_labels=other: the class no output stands for

    def enc(name: str, split: TextSplit) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(vocab.encode(toks[name], max_len))
        y = torch.tensor([index.get(c, other) for c in split.labels], dtype=torch.long)
        return x, y

    (xtr, ytr), (xva, yva), (xte, yte) = enc("train", train), enc("valid", valid), enc("test", test)
    info = {"train": len(ytr), "valid": len(yva), "test": len(yte), "classes": len(classes),
            "vocab_size": len(vocab), **info}
    if policy != "error":
        info["unseen_labels"] = unseen
    vectors = None
    if data_cfg.get("vectors"):
        counts = np.bincount(xtr.reshape(-1).numpy(), minlength=len(vocab))
        vectors, cov = load_word_vectors(data_cfg["vectors"], vocab, expected_dim, seed, token_counts=counts,
                                         member=data_cfg.get("vectors_member") or None,
                                         encoding=check_encoding(data_cfg.get("vectors_encoding", "utf-8"),
                                                                 "data.vectors_encoding"))
        info["vectors"] = {**cov, "path": str(data_cfg["vectors"])}
    return TextData(xtr, ytr, xva, yva, xte, yte, vocab, classes, vectors, info)


class BucketBatchSampler(torch.utils.data.Sampler):
    """Random batches of similar-length sentences (less padding, so shorter LSTM unrolls).

    Each epoch: shuffle, cut into pools of ``pool`` batches, sort each pool by length, cut into batches
    of ``batch_size`` and shuffle the batch order.  Every example appears once per epoch.

    Args:
        lengths: int [N] number of real tokens per example.
        batch_size: examples per batch.
        seed: base seed (the epoch counter is added so each epoch differs).
        pool: batches per sorting pool.
    """

    def __init__(self, lengths: torch.Tensor, batch_size: int, seed: int = 0, pool: int = 20) -> None:
        self.lengths, self.batch_size, self.seed, self.pool = lengths, int(batch_size), int(seed), int(pool)
        self.epoch = 0

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        order = torch.randperm(len(self.lengths), generator=gen)
        chunk = self.batch_size * self.pool
        batches = []
        for start in range(0, len(order), chunk):
            idx = order[start: start + chunk]
            idx = idx[torch.argsort(self.lengths[idx], stable=True)]
            batches += [idx[i: i + self.batch_size].tolist() for i in range(0, len(idx), self.batch_size)]
        for b in torch.randperm(len(batches), generator=gen).tolist():
            yield batches[b]


def _loader(x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    if shuffle:
        sampler = BucketBatchSampler((x != 0).sum(1), batch_size, seed)
        return DataLoader(TensorDataset(x, y), batch_sampler=sampler)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)


@dataclass
class TrainResult:
    """What one training run did (:func:`fit_classifier`).

    Attributes:
        lrs: learning rate of every update taken (list[float]).
        history: per-epoch rows ``{"epoch", "train_loss", "val_loss", "val_acc"}`` (see
            :attr:`~toolkit.compress.models.TextClassifierModule.history`); empty without validation.
        updates_per_epoch: optimizer updates per epoch the schedule was built with.
        best_epoch: 1-based epoch of the highest validation accuracy (earliest on ties), or None.
        restored_epoch: with ``restore_best``, the epoch whose weights the model holds at the end (the best
            epoch; equal to the last one when that was best), else None (the last epoch's weights).
        stopped_early: True when ``early_stopping_patience`` ended training before ``epochs``.
        still_rising: True when the last epoch's validation accuracy is higher than every earlier epoch's
            (at least 2 epochs): more epochs would probably help.
        start_val_acc: validation accuracy of the weights training started from (float in [0, 1]), or None
            without validation.
    """

    lrs: list[float]
    history: list[dict[str, Any]]
    updates_per_epoch: int
    best_epoch: int | None = None
    restored_epoch: int | None = None
    stopped_early: bool = False
    still_rising: bool = False
    start_val_acc: float | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-ready dict for ``metrics.json``: every field except ``lrs``, plus ``epochs_run``."""
        return {"epochs_run": len(self.history), "updates_per_epoch": self.updates_per_epoch,
                "best_epoch": self.best_epoch, "best_val_acc": (self.history[self.best_epoch - 1]["val_acc"]
                                                                if self.best_epoch else None),
                "restored_epoch": self.restored_epoch, "stopped_early": self.stopped_early,
                "still_rising": self.still_rising, "start_val_acc": self.start_val_acc,
                "curve": list(self.history)}


def still_rising(val_acc: list[float]) -> bool:
    """True when the last of >= 2 per-epoch validation accuracies is above every earlier one (floats in [0, 1])."""
    return len(val_acc) >= 2 and val_acc[-1] > max(val_acc[:-1])


def fit_classifier(net: TextClassifier, data: TextData, epochs: int, scheduler: str,
                   scheduler_cfg: Mapping[str, Any], optim_cfg: Mapping[str, Any] | None = None,
                   trainer_cfg: Mapping[str, Any] | None = None, batch_size: int = 50, seed: int = 0,
                   validate: bool = True, restore_best: bool = False,
                   early_stopping_patience: int | None = None, teacher: TextClassifier | None = None,
                   distill_weight: float = 0.0, temperature: float = 1.0) -> TrainResult:
    """Train ``net`` in place with the Lightning Trainer (``toolkit.training.make_trainer``).

    Validation accuracy is measured after every epoch (exactly, over the whole valid split).  With
    ``restore_best`` Lightning's ``ModelCheckpoint(monitor="val/acc", mode="max")`` keeps the best epoch's
    weights (the earliest on ties) and they are loaded back at the end; with ``early_stopping_patience=n``
    Lightning's ``EarlyStopping`` on ``val/acc`` stops after n epochs without improvement (usually with
    ``restore_best``, else the model ends with the last epoch's weights).

    Args:
        net: classifier to train (modified in place).
        data: encoded data (train split for updates; valid split for the curve when ``validate``).
        epochs: at most this many passes over the training split (>= 1).
        scheduler / scheduler_cfg: per-step learning-rate schedule (see ``build_scheduler``).
        optim_cfg: ``name`` (adam|sgd), ``adam_eps``, ``momentum``, ``weight_decay``.
        trainer_cfg: shared trainer settings (``configs/trainer``).
        batch_size: examples per update.
        seed: shuffling and dropout seed.
        validate: measure the valid split every epoch (needed by ``restore_best`` and early stopping).
        restore_best: end with the weights of the epoch of best validation accuracy.
        early_stopping_patience: epochs without a validation-accuracy gain before stopping; None: never stop.
        teacher / distill_weight / temperature: knowledge distillation from ``teacher`` (see
            :class:`~toolkit.compress.models.TextClassifierModule`); ``distill_weight=0``: none.

    Returns:
        :class:`TrainResult`.

    Raises:
        ValueError: ``restore_best`` or ``early_stopping_patience`` without ``validate``, or a patience < 1.
    """
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

    from toolkit.runtime import seed_everything
    from toolkit.training import fit, make_trainer

    if (restore_best or early_stopping_patience is not None) and not validate:
        raise ValueError("restore_best and early stopping need validate=True")
    if early_stopping_patience is not None and int(early_stopping_patience) < 1:
        raise ValueError(f"early_stopping_patience must be >= 1, got {early_stopping_patience}")
    start_acc = validation_accuracy(net, data) if validate else None
    seed_everything(seed)
    optim_cfg = dict(optim_cfg or {})
    train_dl = _loader(data.x_train, data.y_train, batch_size, True, seed)
    module = TextClassifierModule(net, optimizer=str(optim_cfg.get("name", "adam")), scheduler=scheduler,
                                  scheduler_cfg=dict(scheduler_cfg), steps_per_epoch=len(train_dl),
                                  adam_eps=float(optim_cfg.get("adam_eps", 1e-8)),
                                  momentum=float(optim_cfg.get("momentum", 0.9)),
                                  weight_decay=float(optim_cfg.get("weight_decay", 0.0)),
                                  teacher=teacher, distill_weight=float(distill_weight),
                                  temperature=float(temperature))
    tcfg = {k: v for k, v in dict(trainer_cfg or {}).items() if k != "max_epochs"}
    stopper = None
    with tempfile.TemporaryDirectory(prefix="toolkit-compress-") as root:
        callbacks: list = []
        best = None
        if restore_best:
            best = ModelCheckpoint(dirpath=root, filename="best", monitor="val/acc", mode="max", save_top_k=1,
                                   save_weights_only=True, enable_version_counter=False)
            callbacks.append(best)
        if early_stopping_patience is not None:
            stopper = EarlyStopping(monitor="val/acc", mode="max", patience=int(early_stopping_patience),
                                    min_delta=0.0)
            callbacks.append(stopper)
        trainer = make_trainer(tcfg, Path(root), max_epochs=int(epochs), logger=False,
                               enable_checkpointing=best is not None, callbacks=callbacks, num_sanity_val_steps=0,
                               limit_val_batches=1.0 if validate else 0)
        val_dl = _loader(data.x_valid, data.y_valid, 500, False, seed) if validate else None
        net.train()
        fit(trainer, module, train_dl, val_dl)
        history = list(module.history)
        accs = [row["val_acc"] for row in history]
        best_epoch = (accs.index(max(accs)) + 1) if accs else None
        restored = None
        if best is not None and best_epoch is not None:
            if best_epoch != len(history):  # the last epoch's weights are already in place otherwise
                ckpt = torch.load(best.best_model_path, map_location="cpu", weights_only=True)
                module.load_state_dict(ckpt["state_dict"])
            restored = best_epoch
    net.eval()
    return TrainResult(lrs=module.lr_trace, history=history, updates_per_epoch=module.updates_per_epoch,
                       best_epoch=best_epoch, restored_epoch=restored,
                       stopped_early=bool(stopper is not None and len(history) < int(epochs)),
                       still_rising=still_rising(accs), start_val_acc=start_acc)


def train_classifier(net: TextClassifier, data: TextData, epochs: int, scheduler: str,
                     scheduler_cfg: Mapping[str, Any], optim_cfg: Mapping[str, Any] | None = None,
                     trainer_cfg: Mapping[str, Any] | None = None, batch_size: int = 50, seed: int = 0,
                     validate: bool = True) -> list[float]:
    """:func:`fit_classifier` without best-epoch restoring or early stopping; returns only the learning rates.

    Returns:
        The learning rate of every update (list[float]).
    """
    return fit_classifier(net, data, epochs, scheduler, scheduler_cfg, optim_cfg, trainer_cfg, batch_size, seed,
                          validate).lrs


def evaluate(net: torch.nn.Module, data: TextData, latency_batch: int = 50, latency_repeats: int = 20,
             dense: bool = False) -> dict:
    """Test-split metrics of ``net``: accuracy, macro/per-class F1, size, parameters and CPU latency.

    Args:
        net: a :class:`TextClassifier` (its ``embedding`` is measured by
            :func:`~toolkit.compress.metrics.model_size`).
        data: encoded data; the test split is used.
        latency_batch: test sentences in the timed forward pass.
        latency_repeats: timed repeats (median reported); 0 skips timing (latency None).
        dense: also report ``dense_params`` / ``dense_bytes``, the first dense layer's size.

    Returns:
        dict with ``accuracy``, ``macro_f1``, ``per_class_f1``, ``params``, ``bytes``,
        ``embedding_params``, ``embedding_bytes``, ``latency_ms_per_batch``, ``latency_batch``
        (and ``dense_params``, ``dense_bytes`` when ``dense``).
    """
    pred = M.predict(net, data.x_test)
    out = M.classification_metrics(data.y_test.numpy(), pred, data.classes)
    out.update(M.model_size(net, dense=dense))
    batch = data.x_test[:latency_batch]
    out["latency_ms_per_batch"] = M.latency_ms(net, batch, repeats=latency_repeats) if latency_repeats else None
    out["latency_batch"] = int(len(batch))
    return out


def _rank_or_compression(m: int, n: int, compression: Any, rank: Any, keys: tuple[str, str], layer: str,
                         symbols: str, hint: str) -> int:
    """Shared rule of :func:`resolve_rank` and :func:`resolve_dense_rank` for an m x n matrix.

    ``rank`` wins when given (an integer in [1, min(m, n)]); otherwise k = floor((1 - p) m n / (m + n)).
    ``keys`` = (rank key, compression key) and ``layer``/``symbols``/``hint`` only shape the error text.

    Raises:
        InputError: naming the rank key (bad rank) or the compression key (outside (0, 1) or rank 0).
    """
    limit = min(m, n)
    if rank is not None:
        if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= limit:
            raise InputError(keys[0], None, f"must be an integer in [1, min({symbols})] = [1, {limit}] "
                             f"for {layer}, got {rank}")
        return int(rank)
    p = check_compression(compression, keys[1], "embedding" if keys[1] == "compression" else "dense layer")
    k = rank_for_compression(m, n, p)
    if k < 1:
        raise InputError(keys[1], None, f"{p:g} leaves rank 0 for {layer}; {hint}")
    return k


def resolve_rank(vocab_size: int, dim: int, compression: float | None, rank: int | None) -> int:
    """Rank of the factorized embedding E [V, d]: ``rank`` if given, else k = floor((1-p) V d / (V + d)).

    Raises:
        InputError: compression outside (0, 1), rank outside [1, min(V, d)], or a rank of 0.
    """
    return _rank_or_compression(int(vocab_size), int(dim), compression, rank, ("rank", "compression"),
                                f"a {vocab_size} x {dim} table", "V, d", "use a smaller compression")


def check_compression(value: Any, key: str = "compression", what: str = "embedding") -> float:
    """Validate one compression fraction; returns it as float.

    Args:
        value: the configured fraction.
        key: config key named in the error (``compression`` or ``dense.compression``).
        what: the compressed layer named in the error (``embedding`` or ``dense layer``).

    Raises:
        InputError: unless 0 < value < 1.
    """
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise InputError(key, None, f"expected a fraction in (0, 1), got {value!r}") from None
    if isinstance(value, bool) or not 0.0 < p < 1.0:
        raise InputError(key, None, f"expected a fraction in (0, 1) of {what} parameters "
                         f"removed, got {value!r}")
    return p


def resolve_dense_rank(shape: tuple[int, int], compression: Any, rank: Any) -> int:
    """Rank of the factorized first dense layer, W of shape m x n (outputs x inputs).

    ``rank`` (``dense.rank``) wins; otherwise k = floor((1 - p) m n / (m + n)) for p = ``compression``
    (``dense.compression``, which the caller defaults to the embedding's compression).

    Args:
        shape: ``(m, n)`` of the layer's weight (LSTM input map: (4H, d)).
        compression: p in (0, 1), or None when ``rank`` is given.
        rank: k in [1, min(m, n)], or None.

    Returns:
        k (int).

    Raises:
        InputError: naming ``dense.rank`` (not an integer in [1, min(m, n)]) or ``dense.compression``
            (outside (0, 1), or so high that the rank is 0).
    """
    m, n = int(shape[0]), int(shape[1])
    return _rank_or_compression(m, n, compression, rank, ("dense.rank", "dense.compression"),
                                f"the {m} x {n} first dense layer", "m, n",
                                "use a smaller dense.compression or set dense.rank")


def word_counts(data: TextData) -> torch.Tensor:
    """How often each vocabulary id occurs in the training split, float64 [V] (padding id 0 counts 0)."""
    ids = data.x_train.reshape(-1)
    counts = torch.bincount(ids[ids != 0], minlength=len(data.vocab)).double()
    return counts[: len(data.vocab)]


def factorized_copy(net: TextClassifier, rank: int, dense_rank: int | None = None,
                    row_weights: torch.Tensor | None = None, metric: torch.Tensor | None = None,
                    head: int = 0) -> TextClassifier:
    """Deep copy of ``net`` whose dense embedding E [V, d] is replaced by its rank-``rank`` truncated SVD.

    The copy's embedding is a :class:`FactorizedEmbedding` holding U_k [V, k] and S_k V_k^T [k, d]
    (Acharya et al. 2019), so before any update it computes exactly the rank-k approximation of E;
    every other layer keeps its trained weights.  With ``dense_rank`` the first dense layer after the
    embedding is factorized too (:meth:`~toolkit.compress.models.TextClassifier.factorize_first_dense`).
    ``net`` is not modified.  ``row_weights`` [V] / ``metric`` [d, d] make it the weighted optimum of
    :func:`~toolkit.compress.factorize.weighted_truncated_svd` instead of the plain SVD.  With ``head`` the
    ``head`` most frequent words keep their rows exactly and only the rest is factorized (frequency split,
    :class:`FactorizedEmbedding`).

    Raises:
        ValueError: if ``rank`` is outside [1, min(V, d)] or ``dense_rank`` outside [1, min(m, n)]
            (see :func:`~toolkit.compress.factorize.truncated_svd`), or bad weights or ``head``.
    """
    new = copy.deepcopy(net)
    new.replace_embedding(FactorizedEmbedding.from_weight(net.embedding.weight.detach(), rank, row_weights,
                                                          metric, head=head))
    if dense_rank is not None:
        new.factorize_first_dense(dense_rank)
    return new


#: fractions of the rank k tried as the tail rank by ``svd.tail_rank=validation`` (1: the plain factorization).
TAIL_RANK_FRACTIONS = (1.0, 0.75, 0.5, 0.25, 0.0)


def split_candidates(vocab_size: int, dim: int, rank: int) -> list[tuple[int, int]]:
    """``(tail rank r, head rows h)`` pairs with the parameters of a rank-``rank`` factorization.

    r runs over ``round(f k)`` for f in :data:`TAIL_RANK_FRACTIONS` (unique, largest first, so the plain
    factorization r = k, h = 0 comes first); h is :func:`~toolkit.compress.factorize.head_rows_for`.  Pairs
    whose tail would be shorter than its rank (0 < V - h < r) are dropped.

    Raises:
        ValueError: from :func:`~toolkit.compress.factorize.head_rows_for`.
    """
    out = [(int(rank), 0)]
    for r in sorted({round(f * rank) for f in TAIL_RANK_FRACTIONS} - {rank}, reverse=True):
        h = head_rows_for(vocab_size, dim, rank, r)
        if not 0 < vocab_size - h < r:
            out.append((int(r), int(h)))
    return out


def validation_accuracy(net: torch.nn.Module, data: TextData) -> float | None:
    """Accuracy of ``net`` (a classifier of token ids long [N, T] -> logits [N, C]) on ``data``'s validation split:
    a float in [0, 1], or None without validation examples.  Puts ``net`` in eval mode."""
    if len(data.y_valid) == 0:
        return None
    return float((M.predict(net, data.x_valid) == data.y_valid.numpy()).mean())


def choose_split(net: TextClassifier, data: TextData, rank: int, metric: torch.Tensor | None = None,
                 row_weights: torch.Tensor | None = None) -> tuple[int, int, list[dict[str, Any]]]:
    """Frequency split of a rank-``rank`` budget chosen by validation accuracy before fine-tuning.

    Every :func:`split_candidates` pair is built from ``net``'s trained table (:func:`factorized_copy`, same
    ``metric`` / ``row_weights``) and scored on the validation split without any training; the highest accuracy
    wins, ties going to the larger tail rank (the plain factorization first).  Costs one validation pass per
    candidate (at most 5).  Only the embedding is factorized here: with ``dense.factorize`` the first dense layer
    is factorized afterwards, the same for every candidate.

    Returns:
        ``(tail rank, head rows, candidates)`` with ``candidates`` one ``{"tail_rank", "head_rows",
        "head_token_share", "val_acc"}`` per pair tried (``head_token_share``: the fraction of training tokens,
        padding excluded, whose word is in the head); without validation examples the plain factorization
        ``(rank, 0)``.
    """
    cands = split_candidates(len(data.vocab), int(net.embedding_dim), rank)
    counts = word_counts(data)
    total = float(counts.sum()) or 1.0
    rows: list[dict[str, Any]] = []
    best = (rank, 0, -1.0)
    for r, h in cands:
        acc = validation_accuracy(factorized_copy(net, r, row_weights=row_weights, metric=metric, head=h), data)
        rows.append({"tail_rank": r, "head_rows": h, "head_token_share": float(counts[:h].sum()) / total,
                     "val_acc": acc})
        if acc is not None and acc > best[2]:
            best = (r, h, acc)
    return best[0], best[1], rows


def quantized_copy(net: TextClassifier, bits: int) -> TextClassifier:
    """Deep copy of ``net`` with its embedding quantized to ``bits`` (16, 8 or 4); ``net`` is not modified.

    Raises:
        ValueError: on other bit widths, or 4 bits with an odd embedding dimension
            (see :class:`~toolkit.compress.quantize.QuantizedEmbedding`).
    """
    new = copy.deepcopy(net)
    new.replace_embedding(QuantizedEmbedding(net.embedding.weight.detach(), bits))
    return new


def equal_params_dim(vocab_size: int, dim: int, rank: int) -> int:
    """Width d' of a plain V x d' table with no more parameters than a rank-k factorization.

    d' = min(d, floor(k (V + d) / V)), at least 1.  The cap at d matters only for an explicit ``rank``
    close to d on a small vocabulary (k (V + d) / V > d when k > d V / (V + d), i.e. a factorization
    larger than the table itself): the SVD of a V x d table has only d coordinates to keep.
    """
    return max(1, min(int(dim), (rank * (vocab_size + dim)) // vocab_size))


def small_table(data: TextData, dim: int, width: int, from_svd: bool, seed: int) -> torch.Tensor | None:
    """Initial V x d' table for the from-scratch baselines.

    ``from_svd``: compress-before-training, U_k S_k of the pretrained vectors (the rank-k coordinates of
    the best rank-k approximation; the authors' code keeps U_k alone, whose rows have tiny norms);
    otherwise None (random init).
    """
    if not from_svd:
        return None
    if data.vectors is None:
        gen = torch.Generator().manual_seed(seed)
        base = torch.randn(len(data.vocab), dim, generator=gen)
    else:
        base = torch.from_numpy(data.vectors)
    u, s, _ = torch.linalg.svd(base.double(), full_matrices=False)
    return (u[:, :width] * s[:width]).float()


def build_net(model_cfg: Mapping[str, Any], data: TextData, dim: int,
              table: torch.Tensor | np.ndarray | None, seed: int | None = None) -> TextClassifier:
    """A fresh classifier of width ``dim`` over ``data``'s vocabulary and classes (weights seeded by ``seed``).

    ``model_cfg`` is a ``configs/compress/model/<arch>.yaml`` mapping (``_target_`` and arguments), built by
    :func:`toolkit.compress.models.build_classifier`; ``table`` is an optional float [V, dim] initial embedding.

    Raises:
        InputError: as :func:`~toolkit.compress.models.build_classifier`.
    """
    if seed is not None:
        torch.manual_seed(int(seed))
    pre = None if table is None else torch.as_tensor(table, dtype=torch.float32)
    return build_classifier(model_cfg, len(data.vocab), dim, len(data.classes), pre)


def save_checkpoint(path: Path, net: TextClassifier, data: TextData, extra: Mapping[str, Any]) -> None:
    """Write ``state_dict``, vocabulary, classes and metadata (primitives only) with ``torch.save``."""
    torch.save({"state_dict": {k: v for k, v in net.state_dict().items() if isinstance(v, torch.Tensor)},
                "vocab": list(data.vocab.itos), "classes": list(data.classes), "arch": net.arch,
                "embedding_dim": net.embedding_dim, **dict(extra)}, path)
