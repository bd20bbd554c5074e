"""``toolkit cluster``: load data, learn Hi-LANDER (or reuse a checkpoint) or run a baseline, evaluate, write outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.console import log
from toolkit.errors import InputError
from toolkit.runtime import Run, seed_everything, set_threads
from toolkit.task import Task, run_task

AUTO_CANDIDATES = ("hilander", "hac", "dbscan", "hdbscan")  # k-means needs K: a candidate only when baselines.kmeans_k is set
AUTO_CONFIDENT = 0.9  # below this share of held-out class resamples won, method=auto warns that its choice is noisy
AUTO_MIN_CLASSES = 5  # with fewer held-out classes method=auto always warns: 2 classes have 3 distinct class
# resamples (4: 35), so a 100% bootstrap win says nothing (digits: Hi-LANDER 1.000 on 2 held-out digits,
# 100% of resamples, and 0.06 below HAC on the test digits; docs/cluster.md, method=auto)
CHECKPOINT_FORMAT = "toolkit.hilander/1"
MODEL_KEYS = ("hidden", "num_conv", "dropout", "use_gat", "gat_heads", "use_cluster_feat", "edge_features")


def knn_kwargs(model_cfg) -> dict:
    """faiss settings from ``model.knn`` as keyword arguments of ``knn_search``."""
    k = model_cfg.knn
    return {"exact_max_points": int(k.exact_max_points), "hnsw_m": int(k.hnsw_m),
            "ef_search": int(k.hnsw_ef_search), "ef_construction": int(k.hnsw_ef_construction)}


def save_checkpoint(model, feature_dim: int, model_cfg, path: Path, tau: float) -> None:
    """Write a LANDER checkpoint loadable with ``weights_only=True``.

    Contents: ``{"format", "hparams", "state_dict", "tau", "tau_upper", "knn_on", "min_cluster_fraction"}``;
    ``tau`` is the threshold
    chosen at training time, used again when a later run sets ``model.infer.tau=auto`` with this checkpoint;
    ``tau_upper`` the threshold of levels >= 1 (``None``: ``tau``), read from ``model.tau_upper``; ``knn_on``
    is the level graph the GNN was trained on (``model.knn_on``), used again at inference;
    ``min_cluster_fraction`` the fragment cut (``model.min_cluster_fraction``, :func:`tune_fragments`).
    """
    import torch

    hparams = {"feature_dim": int(feature_dim), **{k: model_cfg[k] for k in MODEL_KEYS}}
    hparams["edge_features"] = [str(n) for n in hparams["edge_features"]]
    torch.save({"format": CHECKPOINT_FORMAT, "hparams": hparams, "state_dict": model.state_dict(),
                "tau": float(tau), "tau_upper": getattr(model, "tau_upper", None), "knn_on": str(model_cfg.knn_on),
                "min_cluster_fraction": float(getattr(model, "min_cluster_fraction", 0.0))},
               path)


TAU_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.97, 0.98, 0.99)
TAU_QUANTILES = (0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def tau_candidates(p_same: np.ndarray) -> list[float]:
    """Candidate thresholds: the fixed grid plus quantiles of the model's own P(same) on the tuning graph.

    A GNN trained on few meta-training classes is confident (most level-0 edges get P(same) > 0.99), so a
    fixed grid ending at 0.99 cannot reach the threshold that separates its edges; quantiles of the
    predicted probabilities follow the model's scale wherever it lies (issue 9: the chosen tau sat at the
    grid's top edge).

    Args:
        p_same: float ``[E]`` P(same) of the level-0 edges of the tuning graph.

    Returns:
        Sorted unique thresholds in ``(0, 1)``, rounded to 6 decimals.
    """
    qs = np.quantile(p_same, TAU_QUANTILES) if len(p_same) else np.array([])
    vals = {round(float(v), 6) for v in (*TAU_GRID, *qs) if 0.0 < v < 1.0}
    return sorted(vals)


def _level0_p_same(model, x: np.ndarray, k: int, knn_kw: dict) -> tuple[np.ndarray, np.ndarray, object]:
    """P(same) and cosine of the level-0 kNN edges of ``x`` (float32 ``[N, D]``), and the graph."""
    from toolkit.cluster.graph import build_graph
    from toolkit.cluster.knn import knn_search, l2_normalize

    xn = l2_normalize(x)
    nbrs, sims = knn_search(xn, k, **knn_kw)
    g = build_graph(xn, xn, nbrs, sims)
    p_same, _ = model.predict(g)
    return p_same.numpy(), g.edata["raw_affine"].numpy(), g


def fragment_rule(infer_cfg) -> str:
    """``model.infer.fragment_rule`` of a config (``vote`` when absent, e.g. in a config saved before the key)."""
    return str(infer_cfg.get("fragment_rule", "vote") or "vote")


def run_hierarchy(model, x: np.ndarray, infer_cfg, knn_kw: dict, tau: float, tau_upper: float | None,
                  **kwargs) -> tuple[np.ndarray, list]:
    """:func:`toolkit.cluster.hierarchy.cluster_hierarchy` of ``x`` with ``model`` and the ``model.infer`` config.

    The one place that turns the config (``knn_k``, ``threshold``, ``max_levels``, ``early_stop``, ``singletons``,
    ``fragment_rule``)
    and the model's ``knn_on`` and ``min_cluster_fraction`` (0 when unset) into the hierarchy's arguments.

    Args:
        model: trained ``Lander``; x: float32 ``[N, D]`` features; infer_cfg: ``model.infer``; knn_kw:
            :func:`knn_kwargs`; tau / tau_upper: thresholds of level 0 and of levels >= 1 (``None``: tau).
        kwargs: passed through (``log``, ``memo``, ``min_cluster_fraction`` to override the model's).

    Returns:
        ``(labels, stats)``: int64 ``[N]`` cluster ids and one ``LevelStats`` per level.

    Raises:
        ValueError: from :func:`cluster_hierarchy` (``N <= k``, unknown options).
    """
    from toolkit.cluster.hierarchy import cluster_hierarchy

    kwargs.setdefault("min_cluster_fraction", float(getattr(model, "min_cluster_fraction", 0.0)))
    kwargs.setdefault("fragment_rule", fragment_rule(infer_cfg))
    return cluster_hierarchy(x, model.predict, int(infer_cfg.knn_k), float(tau), str(infer_cfg.threshold),
                             int(infer_cfg.max_levels), bool(infer_cfg.early_stop), knn_kw, knn_on=model.knn_on,
                             tau_upper=tau_upper, singletons=str(infer_cfg.singletons), **kwargs)


def score_thresholds(model, x: np.ndarray, y: np.ndarray, infer_cfg, knn_kw: dict,
                     pairs: list[tuple[float, float | None]]) -> list[float]:
    """Pairwise F of the hierarchy of ``x`` for each ``(tau, tau_upper)`` pair (``tau_upper`` ``None``: tau).

    The pairs share one memo (:func:`cluster_hierarchy`), so level 0 is computed once and level 1 once per tau.

    Args:
        model: trained ``Lander``; x: float32 ``[N, D]`` features; y: int64 ``[N]`` labels.
        pairs: thresholds of level 0 and of levels >= 1.

    Returns:
        float pairwise F per pair, in order.
    """
    from toolkit.cluster.metrics import pairwise_f

    memo: dict = {}
    out = []
    for tau, upper in pairs:
        labels, _ = run_hierarchy(model, x, infer_cfg, knn_kw, tau, upper, memo=memo)
        out.append(float(pairwise_f(y, labels)[2]))
    return out


def _candidates(model, x: np.ndarray, infer_cfg, knn_kw: dict) -> list[float]:
    if str(infer_cfg.threshold) == "prob":
        return tau_candidates(_level0_p_same(model, x, int(infer_cfg.knn_k), knn_kw)[0])
    return list(TAU_GRID)


def tune_tau(model, x: np.ndarray, y: np.ndarray, infer_cfg, knn_kw: dict,
             candidates: list[float] | None = None, upper_of: float | None = None) -> tuple[float, dict[str, float]]:
    """Choose the edge threshold tau maximising pairwise F on labelled meta-training classes.

    Args:
        model: trained ``Lander`` (its ``tau_upper`` attribute, if any, is the threshold of levels >= 1 while
            level 0's tau is tuned); x: float32 ``[N, D]`` features; y: int64 ``[N]`` labels.
        candidates: thresholds to try; default :func:`tau_candidates` of the model's P(same) on ``x``
            (``threshold=sim``: the fixed grid).
        upper_of: tune ``tau_upper`` instead -- the threshold of levels >= 1 -- with level 0's tau fixed at
            this value (``model.infer.tau_upper=auto`` with a given tau).

    Returns:
        ``(tau, scores)`` with the pairwise F of every candidate (keys ``str(tau)``); ties go to the smaller.
    """
    if candidates is None:
        candidates = _candidates(model, x, infer_cfg, knn_kw)
    fixed = getattr(model, "tau_upper", None)
    pairs = [(t, fixed) if upper_of is None else (upper_of, t) for t in candidates]
    scores = dict(zip(map(str, candidates), score_thresholds(model, x, y, infer_cfg, knn_kw, pairs), strict=True))
    best = max(scores, key=scores.get)
    return float(best), scores


def fixed_tau_upper(value) -> float | None:
    """``model.infer.tau_upper`` as a fixed threshold: a number as float, ``same`` / ``auto`` / ``None`` as None
    (tau at every level; ``auto`` is tuned later by :func:`tune_thresholds`). The schema has checked the value."""
    return None if value is None or str(value) in ("same", "auto") else float(value)


def tune_joint(model, x: np.ndarray, y: np.ndarray, infer_cfg, knn_kw: dict,
               candidates: list[float] | None = None) -> tuple[float, float | None, dict]:
    """Level 0's tau and the upper levels' ``tau_upper`` together: every pair of candidates, best pairwise F.

    A grid, not coordinate ascent: with one threshold tuned first, then the other, Omniglot full seed 1 stayed
    at ``tau_upper = tau`` although a lower level-0 tau with a higher ``tau_upper`` scored 0.06 more on the
    test classes (docs/cluster.md, "One threshold for every level"). The memo of :func:`score_thresholds`
    makes the grid cost about one hierarchy per pair above level 1.

    Args:
        model: trained ``Lander``; x: float32 ``[N, D]``; y: int64 ``[N]``.
        candidates: thresholds for both (default :func:`tau_candidates` of level 0's P(same) on ``x``).

    Returns:
        ``(tau, tau_upper, scores)``: ``tau_upper`` ``None`` when the best pair has equal thresholds (ties go
        to equal thresholds, the reference's rule, then to the smaller tau); ``scores`` holds ``tau_scores``
        (equal thresholds, as ``tau_upper=same`` tunes) and ``joint_scores`` (``{str(tau): {str(tau_upper):
        F}}``).
    """
    if candidates is None:
        candidates = _candidates(model, x, infer_cfg, knn_kw)
    pairs = [(t, u) for t in candidates for u in candidates]
    f = score_thresholds(model, x, y, infer_cfg, knn_kw, pairs)
    joint: dict[str, dict[str, float]] = {}
    for (t, u), v in zip(pairs, f, strict=True):
        joint.setdefault(str(t), {})[str(u)] = v
    best = max(zip(pairs, f, strict=True), key=lambda pf: (pf[1], pf[0][0] == pf[0][1]))[0]
    tau_scores = {str(t): joint[str(t)][str(t)] for t in candidates}
    return float(best[0]), (None if best[0] == best[1] else float(best[1])), \
        {"tau_scores": tau_scores, "joint_scores": joint}


def tune_thresholds(model, x: np.ndarray, y: np.ndarray, infer_cfg, knn_kw: dict, tau: float | None,
                    upper: str | float | None) -> tuple[float, float | None, dict]:
    """Level 0's tau and the upper levels' ``tau_upper`` by pairwise F on labelled meta-training classes.

    Both tuned (``tau=auto``, ``tau_upper=auto``): :func:`tune_joint`. One tuned: :func:`tune_tau` with the
    other fixed.

    Args:
        model: trained ``Lander`` (``model.tau_upper`` is left as it was); x: float32 ``[N, D]``; y: int64 ``[N]``.
        tau: level 0's threshold, or ``None`` to tune it.
        upper: ``"auto"`` to tune ``tau_upper``; ``"same"`` or ``None`` for tau at every level; or a number.

    Returns:
        ``(tau, tau_upper, scores)``; ``scores`` holds the candidates' pairwise F: ``tau_scores`` (tau tuned),
        ``tau_upper_scores`` (only ``tau_upper`` tuned), ``joint_scores`` (both).

    Raises:
        ValueError: from :func:`cluster_hierarchy` (``N <= k``).
    """
    saved = getattr(model, "tau_upper", None)
    fixed_upper = fixed_tau_upper(upper)
    try:
        model.tau_upper = fixed_upper
        if str(upper) == "auto" and tau is None:
            return tune_joint(model, x, y, infer_cfg, knn_kw)
        if str(upper) == "auto":
            best, scores = tune_tau(model, x, y, infer_cfg, knn_kw, upper_of=float(tau))
            return float(tau), best, {"tau_upper_scores": scores}
        if tau is None:
            tau, scores = tune_tau(model, x, y, infer_cfg, knn_kw)
            return float(tau), fixed_upper, {"tau_scores": scores}
        return float(tau), fixed_upper, {}
    finally:
        model.tau_upper = saved


FRAGMENT_GRID = (0.0, 0.05, 0.1, 0.15, 0.2)
FRAGMENT_BOOTSTRAP = 200  # class bootstrap replicates for the standard error of tune_fragments' one-SE rule


def tune_fragments(model, x: np.ndarray, y: np.ndarray, infer_cfg, knn_kw: dict, tau: float,
                   tau_upper: float | None,
                   grid: tuple[float, ...] = FRAGMENT_GRID) -> tuple[float, dict[str, float], float]:
    """``min_cluster_fraction`` on labelled meta-training classes, at fixed thresholds: the one-standard-error rule.

    Every value of :data:`FRAGMENT_GRID` (0: keep fragments) clusters ``x`` with one shared memo, so the levels
    are computed once and only :func:`toolkit.cluster.hierarchy.absorb_fragments` differs. The values' pairwise
    F scores differ by less than their sampling error over the meta-training classes (faces, 19 people: 0.706-0.762
    with a standard error of 0.02 each; docs/cluster.md, "Fragments"), so the plain argmax picks noise. Instead
    the largest fraction (the fewest clusters) whose score is within one standard error of the best is chosen
    (the one-standard-error rule of Breiman et al. 1984, Hastie, Tibshirani & Friedman, ESL 2nd ed., sec. 7.10),
    the standard error being the spread of the best value's pairwise F over :data:`FRAGMENT_BOOTSTRAP` class
    bootstrap replicates (:func:`toolkit.cluster.metrics.class_bootstrap_scores`, seed 0: repeatable). Meta-training
    classes the encoder already separates (MNIST 0-4: 0.998 at every value) get the largest fraction.

    Args:
        model: trained ``Lander``; x: float32 ``[N, D]``; y: int64 ``[N]``; tau / tau_upper: the chosen thresholds.
        grid: the candidate fractions (default :data:`FRAGMENT_GRID`; benchmarks try wider ones).

    Returns:
        ``(fraction, scores, standard_error)``: the chosen value, ``{str(fraction): pairwise F}`` and the best
        value's bootstrap standard error.

    Raises:
        ValueError: from :func:`cluster_hierarchy` (``N <= k``).
    """
    from toolkit.cluster.metrics import class_bootstrap_scores, pairwise_f

    memo: dict = {}
    labels: dict[str, np.ndarray] = {}
    for frac in grid:
        labels[str(frac)], _ = run_hierarchy(model, x, infer_cfg, knn_kw, tau, tau_upper, memo=memo,
                                             min_cluster_fraction=frac)
    scores = {f: float(pairwise_f(y, lab)[2]) for f, lab in labels.items()}
    best = max(grid, key=lambda f: (scores[str(f)], f))
    boot = class_bootstrap_scores(y, {str(best): labels[str(best)]}, n_boot=FRAGMENT_BOOTSTRAP, seed=0)
    se = float(np.std(boot[str(best)]))
    return one_standard_error_choice(scores, se), scores, se


def one_standard_error_choice(scores: dict[str, float], standard_error: float) -> float:
    """The largest candidate whose score is within ``standard_error`` of the best (the one-SE rule).

    Breiman et al., *Classification and Regression Trees* (1984); Hastie, Tibshirani & Friedman, *ESL* 2nd ed.,
    sec. 7.10: among candidates the data cannot tell apart, take the simplest; here the largest fragment fraction
    (the fewest clusters).

    Args:
        scores: ``{str(candidate): score}``, candidates numeric strings, higher scores better.
        standard_error: non-negative, in the scores' units.

    Returns:
        the chosen candidate as a float.

    Raises:
        ValueError: empty ``scores`` or a negative ``standard_error``.
    """
    if not scores:
        raise ValueError("no candidates to choose from")
    if standard_error < 0:
        raise ValueError(f"standard_error must be >= 0, got {standard_error}")
    best = max(scores.values())
    return max(float(f) for f, v in scores.items() if v >= best - standard_error)


def fixed_fragments(value) -> float | None:
    """``model.infer.min_cluster_fraction`` as a number, or ``None`` for ``auto`` (tuned; the schema has checked)."""
    return None if str(value) == "auto" else float(value)


def tune_inference(model, x: np.ndarray, y: np.ndarray, infer_cfg, knn_kw: dict) -> tuple[float, float | None, float,
                                                                                         dict]:
    """Every inference setting ``model.infer`` leaves to ``auto``, tuned by pairwise F on labelled classes.

    The thresholds first (:func:`tune_thresholds`: ``tau`` and/or ``tau_upper``), then ``min_cluster_fraction``
    at those thresholds (:func:`tune_fragments`); settings given as numbers are used as they are. The model's
    attributes are left unchanged. One place for the order, shared by training (:func:`_train`) and ``method=auto``'s
    held-out folds (:func:`heldout_scores`).

    Args:
        model: trained ``Lander``; x: float32 ``[N, D]``; y: int64 ``[N]``; infer_cfg: ``model.infer``.

    Returns:
        ``(tau, tau_upper, min_cluster_fraction, scores)``; ``scores`` holds the candidates' pairwise F of whatever
        was tuned (``tau_scores``, ``tau_upper_scores``, ``joint_scores``, ``min_cluster_fraction_scores``; with the
        last, ``min_cluster_fraction_se``, the standard error of its one-SE rule).

    Raises:
        ValueError: from :func:`cluster_hierarchy` (``N <= k``).
    """
    given = None if str(infer_cfg.tau) == "auto" else float(infer_cfg.tau)
    tau, upper, scores = tune_thresholds(model, x, y, infer_cfg, knn_kw, given, infer_cfg.tau_upper)
    frac = fixed_fragments(infer_cfg.min_cluster_fraction)
    if frac is None:
        frac, scores["min_cluster_fraction_scores"], scores["min_cluster_fraction_se"] = tune_fragments(
            model, x, y, infer_cfg, knn_kw, tau, upper)
    return float(tau), upper, float(frac), scores


def edge_diagnostics(model, x: np.ndarray, y: np.ndarray, infer_cfg, knn_kw: dict, tau: float,
                     oracle: bool = False, joint: bool = False) -> dict:
    """Tell bad edge scores from a bad threshold on a labelled test set (issue 9).

    * ``edge_auc_gnn`` / ``edge_auc_cosine``: ROC-AUC of the GNN's P(same) and of the raw cosine for
      same-class edges of the level-0 test kNN graph (scikit-learn ``roc_auc_score``); a GNN below the
      cosine ranks edges worse than the features alone.
    * ``edge_same_class_share``: share of same-class edges (kNN graph purity).
    * with ``oracle``: ``oracle_tau`` and ``oracle_pairwise_f`` -- the best test pairwise F over the same
      candidates tau=auto uses, beside the chosen ``tau`` (uses test labels: a diagnostic, never a choice);
      ``oracle_tau_upper`` and ``oracle_tau_upper_pairwise_f`` -- the best threshold of levels >= 1 with level
      0 at the chosen ``tau``, and ``tau_upper_pairwise_f``, the test pairwise F of every such candidate;
      with ``joint`` too (``tau_upper=auto`` runs): ``oracle_joint_tau``, ``oracle_joint_tau_upper`` and
      ``oracle_joint_pairwise_f``, the best pair of :func:`tune_joint` on the test labels.

    Args:
        model: ``Lander``; x: float32 ``[M, D]`` test features; y: int64 ``[M]`` test labels.

    Returns:
        JSON-safe dict as above.
    """
    from sklearn.metrics import roc_auc_score

    p_same, cos, g = _level0_p_same(model, x, int(infer_cfg.knn_k), knn_kw)
    src, dst = (t.numpy() for t in g.edges())
    same = (y[src] == y[dst]).astype(np.int64)
    out: dict = {"edge_same_class_share": float(same.mean()) if len(same) else None,
                 "edge_auc_gnn": None, "edge_auc_cosine": None}
    if 0 < same.sum() < len(same):
        out["edge_auc_gnn"] = float(roc_auc_score(same, p_same))
        out["edge_auc_cosine"] = float(roc_auc_score(same, cos))
    out["edge_p_same_quantiles"] = {str(q): float(v) for q, v in
                                    zip((0.1, 0.5, 0.9), np.quantile(p_same, (0.1, 0.5, 0.9)), strict=True)}
    if oracle:
        cands = sorted({*tau_candidates(p_same), float(tau)}) if str(infer_cfg.threshold) == "prob" \
            else sorted({*TAU_GRID, float(tau)})
        best, scores = tune_tau(model, x, y, infer_cfg, knn_kw, cands)
        out.update({"oracle_tau": best, "oracle_pairwise_f": scores[str(best)]})
        best_up, scores_up = tune_tau(model, x, y, infer_cfg, knn_kw, cands, upper_of=float(tau))
        out.update({"oracle_tau_upper": best_up, "oracle_tau_upper_pairwise_f": scores_up[str(best_up)],
                    "tau_upper_pairwise_f": scores_up})
        if joint:
            jt, ju, js = tune_joint(model, x, y, infer_cfg, knn_kw, cands)
            out.update({"oracle_joint_tau": jt, "oracle_joint_tau_upper": ju,
                        "oracle_joint_pairwise_f": js["joint_scores"][str(jt)][str(jt if ju is None else ju)]})
    return out


def load_checkpoint(path: str, feature_dim: int):
    """Load a LANDER model from our ``model.ckpt`` or a Lightning ``.ckpt`` of :class:`LanderModule`.

    Raises:
        InputError: missing, corrupt or foreign file, or trained for another feature dimension.
    """
    import torch

    from toolkit.cluster.model import Lander

    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(p, "model.checkpoint", "file not found")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad files
        raise InputError(p, "model.checkpoint", f"not a readable checkpoint ({type(exc).__name__})") from None
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        hp, state = obj["hparams"], obj["state_dict"]
    elif isinstance(obj, dict) and "state_dict" in obj and "hyper_parameters" in obj:
        hp = {k: v for k, v in obj["hyper_parameters"].items() if k in ("feature_dim", *MODEL_KEYS, "use_edge_sim")}
        state = {k.removeprefix("model."): v for k, v in obj["state_dict"].items() if k.startswith("model.")}
    else:
        raise InputError(p, "model.checkpoint", "not a Hi-LANDER checkpoint written by toolkit cluster")
    if "use_edge_sim" in hp:  # checkpoints written before model.edge_features: the cosine was the one edge input
        hp = dict(hp)
        hp["edge_features"] = ["cosine"] if hp.pop("use_edge_sim") else []
    if int(hp.get("feature_dim", -1)) != feature_dim:
        raise InputError(p, "model.checkpoint", f"trained on {hp.get('feature_dim')}-d features, "
                         f"but the data has {feature_dim}-d features")
    try:
        model = Lander(**hp)
        model.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise InputError(p, "model.checkpoint", f"weights do not fit the model ({str(exc).splitlines()[0]})") from None
    model.tau = float(obj.get("tau", 0.8)) if isinstance(obj, dict) else 0.8
    model.knn_on = str(obj.get("knn_on", "peak")) if isinstance(obj, dict) else "peak"
    tau_upper = obj.get("tau_upper") if isinstance(obj, dict) else None
    model.tau_upper = None if tau_upper is None else float(tau_upper)
    model.min_cluster_fraction = float(obj.get("min_cluster_fraction", 0.0)) if isinstance(obj, dict) else 0.0
    return model.eval()


def _check_sizes(cfg, n_train: int, n_test: int) -> None:
    k_infer = int(cfg.model.infer.knn_k)
    k_means = cfg.baselines.get("kmeans_k")
    if k_means and int(k_means) > n_test:  # before k-means allocates K centroids (and auto trains anything)
        raise InputError("config", "baselines.kmeans_k", f"got {int(k_means)} clusters for {n_test} points to "
                         "cluster; expected at most the number of points")
    if n_test <= k_infer:
        raise InputError("data", "test_features", f"has {n_test} points; needs more than model.infer.knn_k={k_infer}")
    if cfg.method in ("hilander", "auto") and not cfg.model.checkpoint:
        k_train = max(int(k) for k in cfg.model.train.knn_k)
        if n_train <= k_train:
            raise InputError("data", "train_features",
                             f"has {n_train} points; needs more than max(model.train.knn_k)={k_train}")


class Cluster(Task):
    """``toolkit cluster``: see ``docs/cluster.md``.

    Stages (:mod:`toolkit.task`): ``validate`` (declared constraints, :mod:`toolkit.cluster.schema`);
    ``setup`` (read features, or images still to embed; nothing trained); ``fit`` (the image encoder, or its
    cached features; Hi-LANDER's GNN and tau, or a checkpoint; ``method=auto``'s selection on held-out
    meta-training classes); ``evaluate`` (cluster the test set, edge diagnostics, pairwise/BCubed F, NMI, ARI);
    ``save`` (``labels.npy``, ``model.ckpt``, ``clusters.png``, ``clusters_gallery.png``).

    Raises (from its stages):
        InputError: bad config or data (exit code 2).
    """

    config_name = "cluster"

    def setup(self) -> None:
        """Torch threads (``threads``), seed every RNG and read the data (timer ``load``)."""
        from toolkit.cluster.features import read_cluster_inputs

        set_threads(self.cfg.get("threads"))
        seed_everything(self.cfg.seed)
        with self.run.timer("load"):
            self.inputs = read_cluster_inputs(self.cfg)

    def fit(self) -> None:
        """Features (encoder), then what the method learns from the meta-training data."""
        from toolkit.cluster.features import embed_cluster_inputs

        cfg, run = self.cfg, self.run
        data = self.data = embed_cluster_inputs(self.inputs, cfg, run)
        _check_sizes(cfg, len(data.train_x), len(data.test_x))
        log(f"meta-training: {len(data.train_x)} points, {len(np.unique(data.train_y))} classes; "
            f"clustering {len(data.test_x)} points of dimension {data.test_x.shape[1]}")
        self.info: dict = {}
        self.method = method = str(cfg.method)
        self.model = None
        if method == "auto":
            self.method, self.model, self.tau, self.info = _auto_select(cfg, run, data)
        elif method == "hilander":
            self.model, self.tau, self.info = _fit_hilander(cfg, run, data)

    def evaluate(self) -> dict:
        """Cluster the test set with the fitted method and measure the clusters against the test labels."""
        from toolkit.cluster.metrics import evaluate

        cfg, run, data = self.cfg, self.run, self.data
        metrics: dict = {"method": str(cfg.method), "num_points": int(len(data.test_x)), **data.info}
        if self.method == "hilander":
            self.labels, info = _cluster_hilander(cfg, run, data, self.model, self.tau)
        else:
            from toolkit.cluster.baselines import cluster_baseline

            with run.timer("cluster"):
                self.labels, info = cluster_baseline(self.method, data.train_x, data.train_y, data.test_x,
                                                     data.test_y, cfg.baselines)
        metrics.update(self.info)
        metrics.update(info)
        with run.timer("evaluate"):
            metrics.update(evaluate(data.test_y, self.labels))
        return metrics

    def save(self, metrics: dict) -> None:
        """``labels.npy``; ``model.ckpt`` of a GNN trained here; the plots (``plot=true``)."""
        cfg, run, data, labels = self.cfg, self.run, self.data, self.labels
        np.save(run.path("labels.npy"), labels)
        if self.model is not None and not cfg.model.checkpoint:
            save_checkpoint(self.model, data.train_x.shape[1], cfg.model, run.path("model.ckpt"), self.tau)
        if cfg.plot:
            from toolkit.cluster.plot import plot_clusters

            with run.timer("plot"):
                plot_clusters(data.test_x, labels, data.test_y, run.path("clusters.png"), int(cfg.plot_max_points),
                              int(cfg.seed or 0))
        if cfg.plot and data.test_images is not None:
            from toolkit.cluster.plot import plot_gallery

            with run.timer("plot_gallery"):
                plot_gallery(data.test_images, labels, data.test_y, run.path("clusters_gallery.png"),
                             int(cfg.gallery_max_clusters), int(cfg.gallery_per_row), int(cfg.seed or 0))


def run(cfg, run: Run) -> dict:
    """Execute ``toolkit cluster`` for the composed config (:class:`Cluster` through :func:`run_task`).

    Returns:
        ``{"metrics": ...}`` with clustering metrics (when test labels exist), cluster counts,
        method details and per-level statistics.

    Raises:
        InputError: bad config or data (exit code 2).
    """
    return run_task(Cluster(cfg, run))


def heldout_halves(y: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray] | None:
    """Split held-out meta-training samples by class into two halves of at least two classes each.

    Args:
        y: int64 ``[N]`` labels of the held-out samples; seed: RNG seed of the class permutation.

    Returns:
        ``(a_idx, b_idx)`` int64 indices into ``y`` (classes ``ceil(C/2)`` and ``floor(C/2)``), or ``None`` with
        fewer than four classes (a half of one class cannot score merges: its pairwise precision is always 1).
    """
    classes = np.unique(y)
    if len(classes) < 4:
        return None
    # seed + 1: not the permutation split_classes drew the held-out classes with under the same seed
    first = np.random.default_rng(seed + 1).permutation(classes)[: (len(classes) + 1) // 2]
    in_a = np.isin(y, first)
    return np.flatnonzero(in_a), np.flatnonzero(~in_a)


def auto_folds(y: np.ndarray, fit_idx: np.ndarray, val_idx: np.ndarray, seed: int, k: int,
               protocol: str = "auto") -> list[tuple[np.ndarray, np.ndarray]]:
    """``(tuning indices, scored indices)`` into the meta-training set for ``method=auto``'s held-out score.

    ``cross-fit`` (what ``auto`` uses when :func:`heldout_halves` can halve the held-out classes and each half
    has more than ``k`` points): two folds, tune on the GNN's classes plus one half, score the other half.
    ``fit-only``: one fold, tune on the GNN's classes, score every held-out class.

    Args:
        y: int64 ``[N]`` meta-training labels; fit_idx / val_idx: the GNN's classes and the held-out ones
            (:func:`toolkit.cluster.baselines.split_classes`); seed: RNG seed; k: the inference kNN size.
        protocol: ``auto``, ``cross-fit`` or ``fit-only``.

    Raises:
        ValueError: ``protocol`` unknown, or ``cross-fit`` asked for but the held-out classes cannot be halved.
    """
    if protocol not in ("auto", "cross-fit", "fit-only"):
        raise ValueError(f"protocol must be auto, cross-fit or fit-only, got {protocol!r}")
    halves = None if protocol == "fit-only" else heldout_halves(y[val_idx], seed)
    if halves is not None and min(len(h) for h in halves) <= k:
        halves = None
    if halves is None:
        if protocol == "cross-fit":
            raise ValueError("cross-fit needs at least four held-out classes and more than k points per half")
        return [(fit_idx, val_idx)]
    a, b = val_idx[halves[0]], val_idx[halves[1]]
    return [(np.concatenate([fit_idx, a]), b), (np.concatenate([fit_idx, b]), a)]


def heldout_scores(cfg, data, candidates: list[str], folds: list[tuple[np.ndarray, np.ndarray]],
                   hilander_model) -> tuple[dict[str, float], dict[str, np.ndarray], np.ndarray]:
    """Pairwise F of every candidate on the scored classes of ``folds`` (:func:`auto_folds`).

    Each candidate is tuned on a fold's tuning indices and clusters its scored indices; the folds' predictions
    are joined into one partition (no cluster spans two folds), scored against the true labels.

    Args:
        cfg: the composed ``toolkit cluster`` config; data: ``ClusterData`` (meta-training ``train_x``/``train_y``).
        candidates: method names (``hilander`` and baselines of :func:`cluster_baseline`).
        hilander_model: ``(fold index) -> (Lander, tau or None)``: the model that clusters that fold's scored
            classes (:func:`_auto_select` gives one whose training epoch was chosen without them); a tau (a
            loaded checkpoint's) is used as is, with the model's ``tau_upper``; ``None``: both are tuned on each
            fold by :func:`tune_thresholds`.

    Returns:
        ``(scores, labels, y)``: candidate -> pairwise F; candidate -> int64 ``[M]`` predicted labels of the
        scored points (folds in order); int64 ``[M]`` their true labels.
    """
    from toolkit.cluster.baselines import cluster_baseline
    from toolkit.cluster.metrics import pairwise_f

    mc, inf = cfg.model, cfg.model.infer
    y = data.train_y[np.concatenate([s for _, s in folds])]
    scores: dict[str, float] = {}
    labels: dict[str, np.ndarray] = {}
    for m in candidates:
        parts = []
        for fold, (tune_idx, eval_idx) in enumerate(folds):
            tx, ty, ex, ey = (data.train_x[tune_idx], data.train_y[tune_idx], data.train_x[eval_idx],
                              data.train_y[eval_idx])
            if m == "hilander":
                model, tau = hilander_model(fold)
                if tau is not None:
                    tau_fit, upper_fit, frac = tau, model.tau_upper, model.min_cluster_fraction
                else:  # never on the scored classes, so the held-out score is not tuned on its own classes
                    tau_fit, upper_fit, frac, _ = tune_inference(model, tx, ty, inf, knn_kwargs(mc))
                lab, _ = run_hierarchy(model, ex, inf, knn_kwargs(mc), tau_fit, upper_fit, min_cluster_fraction=frac)
            else:
                lab, _ = cluster_baseline(m, tx, ty, ex, ey, cfg.baselines)
            parts.append(np.asarray(lab, np.int64))
        offsets = np.cumsum([0] + [int(p.max()) + 1 for p in parts[:-1]])
        labels[m] = np.concatenate([p + o for p, o in zip(parts, offsets, strict=True)])
        scores[m] = float(pairwise_f(y, labels[m])[2])
    return scores, labels, y


def fold_model(model, name: str):
    """``model`` with the weights ``method=auto`` scores fold ``name`` with (``model.train.select_best``).

    Args:
        model: the trained ``Lander``; its ``selected_checkpoints`` (name -> Lightning checkpoint, and
            ``"last"``) come from :func:`_train`; absent or empty (``select_best`` off, a loaded checkpoint):
            ``model`` itself is the answer.
        name: the fold's key; not among the checkpoints (its tuning side has no held-out classes): the last
            epoch's weights, which no held-out class chose.

    Returns:
        ``model`` or a copy with the selected weights (same thresholds and attributes).
    """
    import copy

    import torch

    paths = getattr(model, "selected_checkpoints", None) or {}
    path = paths.get(name) or paths.get("last")
    if not path:
        return model
    other = copy.deepcopy(model)
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    other.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    return other.eval()


def _auto_select(cfg, run: Run, data) -> tuple[str, object, float | None, dict]:
    """``method=auto``: score every candidate on held-out meta-training classes and pick the best.

    The held-out classes are the ones Hi-LANDER already keeps out of GNN training
    (``model.train.val_fraction``, same seed).  With at least four of them the score is *cross-fitted*
    (``auto_protocol`` ``cross-fit``): the held-out classes are halved (:func:`heldout_halves`); each candidate
    is tuned on the GNN's classes plus one half and clusters the other half, then the halves swap, and the
    held-out pairwise F pools both halves.  So Hi-LANDER's thresholds are tuned as in its final run (on classes
    its GNN trained on *and* classes it did not, ``model.train.tau_on=all``), and every score is on classes
    that neither the GNN nor any tuning saw.  Tuning Hi-LANDER on the GNN's own classes only (the earlier
    protocol) chose thresholds for memorised classes: on Extended Yale B (dlib features, seed 0) it scored
    Hi-LANDER 0.696 against HDBSCAN's 0.766 held-out and auto chose HDBSCAN, while on the test people
    Hi-LANDER had 0.742 and HDBSCAN 0.682 (docs/cluster.md, ``method=auto``).  With two or three held-out classes
    (``auto_protocol`` ``fit-only``) candidates are tuned on the GNN's classes and score all held-out classes.
    With ``model.train.select_best`` each fold is clustered by the GNN weights of the epoch chosen on the
    held-out classes of its tuning side (:func:`fold_model`), never on the classes it scores.
    Ties go to the earlier candidate of ``AUTO_CANDIDATES``.  The chosen method then runs as it would on its
    own (a baseline re-tunes on all meta-training classes; Hi-LANDER reuses the GNN just trained and the
    thresholds of ``model.train.tau_on``).

    Returns:
        ``(chosen method, Hi-LANDER model or None, its tau or None, info for metrics.json)``.

    Raises:
        InputError: fewer than 4 meta-training classes or ``model.train.val_fraction`` 0 (nothing to hold out).
    """
    from toolkit.cluster.baselines import HAC_MAX_POINTS, split_classes
    from toolkit.cluster.metrics import class_bootstrap_wins

    mc, inf = cfg.model, cfg.model.infer
    seed = int(cfg.seed or 0)
    fit_idx, val_idx = split_classes(data.train_y, float(mc.train.val_fraction), seed)
    if len(val_idx) <= int(inf.knn_k):
        raise InputError("config", "method", "auto needs held-out meta-training classes to compare methods on: "
                         "at least 4 meta-training classes and model.train.val_fraction > 0")
    candidates = [m for m in AUTO_CANDIDATES if not (m == "hac" and len(data.test_x) > HAC_MAX_POINTS)]
    if cfg.baselines.kmeans_k:
        candidates.append("kmeans")
    folds = auto_folds(data.train_y, fit_idx, val_idx, seed, int(inf.knn_k))
    # with model.train.select_best the final GNN's epoch is chosen on every held-out class, the classes auto
    # scores; each fold is scored with the epoch chosen on the held-out classes of its tuning side instead
    # (cross-fit: the other half), or with the last epoch when that side has none (fit-only)
    select_also = {f"fold{i}": np.intersect1d(tune, val_idx) for i, (tune, _) in enumerate(folds)}
    fitted: list = []

    def hilander_model(fold: int):
        if not fitted:
            fitted.append(_fit_hilander(cfg, run, data, {k: v for k, v in select_also.items() if len(v)}))
        model, tau = fitted[0][0], (fitted[0][1] if mc.checkpoint else None)
        return fold_model(model, f"fold{fold}"), tau

    with run.timer("auto_select"):
        held, held_labels, vy = heldout_scores(cfg, data, candidates, folds, hilander_model)
    for m in candidates:
        log(f"auto: {m} pairwise F {held[m]:.3f} on {len(np.unique(vy))} held-out meta-training classes")
    chosen = max(candidates, key=lambda m: held[m])
    wins = class_bootstrap_wins(vy, held_labels, seed=seed)
    log(f"auto: chose {chosen} (best in {wins[chosen]:.0%} of held-out class resamples)")
    n_held = len(np.unique(vy))
    warning = None
    if n_held < AUTO_MIN_CLASSES:
        warning = (f"only {n_held} held-out meta-training classes: too few to tell the candidates apart, whatever "
                   f"their scores; the choice may not carry over to the test classes -- give at least "
                   f"{int(np.ceil(AUTO_MIN_CLASSES / float(mc.train.val_fraction)))} labelled meta-training classes")
    elif wins[chosen] < AUTO_CONFIDENT:
        warning = (f"the {n_held} held-out meta-training classes do not separate the candidates (held-out pairwise F "
                   f"{', '.join(f'{m} {held[m]:.3f}' for m in candidates)}); the choice may not carry over to the "
                   "test classes -- give more labelled meta-training classes")
    if warning:
        log(f"auto: warning: {warning}")
    info = {"chosen_method": chosen, "auto_heldout_pairwise_f": held,
            "auto_heldout_classes": int(n_held), "auto_choice_bootstrap_wins": wins,
            "auto_protocol": "fit-only" if len(folds) == 1 else "cross-fit", "auto_warning": warning}
    if chosen == "hilander":
        model, tau, hl_info = fitted[0]
        return chosen, model, tau, {**info, **hl_info}
    return chosen, None, None, info


def _fit_hilander(cfg, run: Run, data, select_also: dict[str, np.ndarray] | None = None) -> tuple[object, float, dict]:
    """Hi-LANDER's model and tau: loaded from ``model.checkpoint``, or trained here (:func:`_train`, which gets
    ``select_also``).

    Returns:
        ``(model, tau, info for metrics.json)``.
    """
    mc, inf = cfg.model, cfg.model.infer
    if mc.checkpoint:
        model = load_checkpoint(str(mc.checkpoint), data.test_x.shape[1])
        tau, source = (model.tau, "stored in the checkpoint") if str(inf.tau) == "auto" else \
            (float(inf.tau), "given")
        log(f"loaded Hi-LANDER from {mc.checkpoint}")
        if str(inf.tau_upper) != "auto":  # auto keeps the checkpoint's
            model.tau_upper = fixed_tau_upper(inf.tau_upper)
        if fixed_fragments(inf.min_cluster_fraction) is not None:  # auto keeps the checkpoint's
            model.min_cluster_fraction = fixed_fragments(inf.min_cluster_fraction)
        return model, float(tau), {"checkpoint": str(mc.checkpoint), "tau_source": source}
    return _train(cfg, run, data, select_also)


def _cluster_hilander(cfg, run: Run, data, model, tau: float) -> tuple[np.ndarray, dict]:
    """Cluster the test set level by level with ``model`` and ``tau``; per-level stats and edge diagnostics."""
    mc, inf = cfg.model, cfg.model.infer
    info: dict = {"tau": tau, "tau_upper": model.tau_upper, "knn_on": model.knn_on,
                  "singletons": str(inf.singletons), "min_cluster_fraction": model.min_cluster_fraction,
                  "fragment_rule": fragment_rule(inf)}
    with run.timer("cluster"):
        labels, stats = run_hierarchy(model, data.test_x, inf, knn_kwargs(mc), tau, model.tau_upper, log=log)
    info["levels"] = [{"level": s.level, "nodes": s.nodes, "edges_added": s.edges_added, "clusters": s.clusters,
                       "seconds": {k: round(v, 3) for k, v in s.seconds.items()}} for s in stats]
    for stage in ("knn", "graph", "gnn", "decode"):
        run.timings[f"cluster.{stage}"] = sum(s.seconds[stage] for s in stats)
    if data.test_y is not None and len(data.test_x) <= int(inf.diagnostics_max_points):
        with run.timer("diagnostics"):
            info["diagnostics"] = edge_diagnostics(model, data.test_x, data.test_y, inf, knn_kwargs(mc), float(tau),
                                                   bool(inf.oracle_tau), str(inf.tau_upper) == "auto")
    return labels, info


def _train(cfg, run: Run, data, select_also: dict[str, np.ndarray] | None = None):
    """Build training graphs, train LANDER (model selection and tau on held-out meta-training classes).

    ``select_also`` (name -> int64 indices into the meta-training set, held-out classes only): with
    ``model.train.select_best`` also keep the best epoch by each subset's own held-out loss
    (:func:`toolkit.cluster.lightning.fit_lander`); the model's ``selected_checkpoints`` names the files.
    """
    from toolkit.cluster.baselines import split_classes
    from toolkit.cluster.graph import build_graph
    from toolkit.cluster.hierarchy import training_graphs
    from toolkit.cluster.knn import knn_search, l2_normalize
    from toolkit.cluster.lightning import fit_lander

    mc, inf = cfg.model, cfg.model.infer
    fit_idx, val_idx = split_classes(data.train_y, float(mc.train.val_fraction), int(cfg.seed or 0))
    if len(val_idx) <= int(inf.knn_k):
        val_idx = val_idx[:0]
    with run.timer("train_graphs"):
        try:
            graphs = training_graphs(data.train_x[fit_idx], data.train_y[fit_idx], list(mc.train.knn_k),
                                     list(mc.train.levels), knn_kwargs(mc), log, str(mc.knn_on),
                                     float(mc.train.decode_keep))
        except ValueError as exc:
            raise InputError("config", "model.train", str(exc)) from None
        def heldout_graphs(idx: np.ndarray) -> list:
            # select_on=hierarchy: the held-out classes' own training hierarchy, so model selection sees every
            # level the GNN is trained and used on (level 0 alone saturates early while upper levels still
            # improve; docs/cluster.md, "Early stopping"); level0: their level-0 kNN graph only
            if len(idx) <= int(inf.knn_k):
                return []
            if str(mc.train.select_on) == "level0":
                vx = l2_normalize(data.train_x[idx])
                return [build_graph(vx, vx, *knn_search(vx, int(inf.knn_k), **knn_kwargs(mc)), data.train_y[idx])]
            return training_graphs(data.train_x[idx], data.train_y[idx], list(mc.train.knn_k), list(mc.train.levels),
                                   knn_kwargs(mc), knn_on=str(mc.knn_on), decode_keep=float(mc.train.decode_keep))

        select = bool(mc.train.select_best)
        val_graphs = heldout_graphs(val_idx) if select and len(val_idx) else []
        extra = {name: gs for name, idx in (select_also or {}).items() if (gs := heldout_graphs(idx))} \
            if val_graphs else {}
    info = {"train_graphs": len(graphs), "validation_graphs": len(val_graphs),
            "validation_classes": int(len(np.unique(data.train_y[val_idx]))) if len(val_idx) else 0}
    log(f"training LANDER on {len(graphs)} graphs for {mc.train.epochs} epochs, at least {mc.train.min_steps} steps "
        f"({info['validation_classes']} held-out meta-training classes for model selection)")
    with run.timer("train"):
        module = fit_lander(graphs, mc, cfg.trainer, run.staging / "train", run.staging / "checkpoints",
                            int(cfg.seed or 0), val_graphs or None, extra)
    model = module.model
    selected_checkpoints = dict(getattr(module, "selected_checkpoints", {}))
    info["selected_epoch"] = getattr(module, "selected_epoch", None)  # None: the last epoch (select_best off)
    if info["selected_epoch"] is not None:
        log(f"GNN weights of epoch {info['selected_epoch']} (held-out loss within {float(mc.train.select_se):g} "
            f"standard errors of its minimum; model.train.select_se)")
        if bool(mc.train.refit):
            model = _refit(cfg, run, data, info)
    elif bool(mc.train.refit):
        log("model.train.refit needs an epoch chosen on held-out classes (model.train.select_best and "
            "model.train.val_fraction > 0): no refit")
    model.selected_checkpoints = selected_checkpoints
    model.knn_on = str(mc.knn_on)
    upper = inf.tau_upper
    given = None if str(inf.tau) == "auto" else float(inf.tau)
    frac = fixed_fragments(inf.min_cluster_fraction)
    model.min_cluster_fraction = 0.0 if frac is None else frac
    if given is not None and str(upper) != "auto" and frac is not None:
        model.tau_upper = fixed_tau_upper(upper)
        return model, given, {**info, "tau_source": "given"}
    tau_on = str(mc.train.tau_on)  # all | heldout (schema)
    if tau_on == "heldout" and not len(val_idx):
        raise InputError("config", "model.train.tau_on", "heldout (with model.infer.tau, tau_upper or "
                         "min_cluster_fraction auto) needs held-out meta-training classes "
                         "(model.train.val_fraction > 0 and enough classes)")
    idx = val_idx if tau_on == "heldout" else np.arange(len(data.train_y))
    where = "held-out meta-training classes" if tau_on == "heldout" else \
        "all meta-training classes (GNN-trained and held-out)"
    with run.timer("tune_tau"):  # thresholds and min_cluster_fraction
        tau, model.tau_upper, model.min_cluster_fraction, scores = tune_inference(
            model, data.train_x[idx], data.train_y[idx], inf, knn_kwargs(mc))
    upper_note = "" if model.tau_upper is None else f", tau_upper = {model.tau_upper} (levels >= 1)"
    log(f"tau = {tau}{upper_note} (best pairwise F), min_cluster_fraction = {model.min_cluster_fraction} "
        f"(one-SE rule), tuned on {where}")
    info.update(scores)
    info["tau_source"] = "given" if given is not None else f"tuned on {where} (pairwise F)"
    return model, tau, info


def _refit(cfg, run: Run, data, info: dict):
    """``model.train.refit``: LANDER trained again on every meta-training class for ``selected_epoch + 1`` epochs
    of the same schedule (the held-out classes chose how long); records ``refit_*`` in ``info``."""
    from toolkit.cluster.hierarchy import training_graphs
    from toolkit.cluster.lightning import fit_lander

    mc = cfg.model
    with run.timer("train_graphs"):
        graphs = training_graphs(data.train_x, data.train_y, list(mc.train.knn_k), list(mc.train.levels),
                                 knn_kwargs(mc), log, str(mc.knn_on), float(mc.train.decode_keep))
    epochs = int(info["selected_epoch"]) + 1
    classes = int(len(np.unique(data.train_y)))
    log(f"refit: training LANDER again on all {classes} meta-training classes ({len(graphs)} graphs) for {epochs} "
        f"epochs (model.train.refit)")
    with run.timer("refit"):
        model = fit_lander(graphs, mc, cfg.trainer, run.staging / "refit", run.staging / "refit_checkpoints",
                           int(cfg.seed or 0), stop_after_epochs=epochs).model
    info.update(refit_epochs=epochs, refit_graphs=len(graphs), refit_classes=classes)
    return model
