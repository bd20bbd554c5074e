"""Compatibility losses: BCT influence loss, the naive PCT baseline, focal distillation (FD-KL, FD-LM), LDI.

Pure torch, no Lightning or config.  Conventions used throughout:

* ``logits`` are float32 ``[B, C]`` pre-softmax scores, ``labels`` int64 ``[B]``.
* ``old_labels`` are labels in the *old* model's label space (``[B]`` int64), ``-1`` where a sample's
  class has no counterpart in the old model (a new class without a synthesized head row).
* Every loss returns a scalar tensor (mean over the batch, as stated per function).

Sources: Shen et al., "Towards Backward-Compatible Representation Learning", CVPR 2020 (BCT);
Yan et al., "Positive-Congruent Training: Towards Regression-Free Model Updates", CVPR 2021 (PCT,
eqs. 4-9); Zhao et al., "ELODI", arXiv 2205.06265 (logit difference inhibition, used here with the old
model as the single reference).  See ``docs/compat.md`` for the scaling pinned here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FD_KINDS = ("kl", "lm")


def bct_influence_loss(new_embedding: torch.Tensor, old_labels: torch.Tensor, old_weight: torch.Tensor,
                       old_bias: torch.Tensor | None = None,
                       projection: nn.Module | None = None) -> torch.Tensor:
    """BCT influence loss: cross-entropy of the new embedding through the frozen old classifier.

    ``L_infl = mean_{i: old_labels_i >= 0} CE(W_old · P(φ_new(x_i)) + b_old, old_labels_i)``
    (Shen et al. 2020, the second term of ``L_BCT``).  ``W_old`` holds the old head rows plus the
    synthesized rows of new classes (:func:`synthesize_head_rows`); it is not updated (the caller passes
    a buffer, gradients flow only into ``φ_new`` and the optional projection ``P``).

    Args:
        new_embedding: ``[B, E_new]`` float, the new model's embedding.
        old_labels: ``[B]`` int64 in ``[0, K)`` or ``-1`` (excluded from the loss).
        old_weight: ``[K, E_old]`` float, the (extended) old head weight.
        old_bias: ``[K]`` float or None.
        projection: module mapping ``[B, E_new] -> [B, E_old]`` (a learned linear map when the
            embedding sizes differ); None when they are equal.

    Returns:
        Scalar mean cross-entropy over the valid samples; 0 (with a graph) when none is valid.

    Raises:
        ValueError: when the (projected) embedding size differs from ``old_weight.shape[1]``.
    """
    z = projection(new_embedding) if projection is not None else new_embedding
    if z.shape[1] != old_weight.shape[1]:
        raise ValueError(f"embedding size {z.shape[1]} does not match the old head's {old_weight.shape[1]}; "
                         "a projection is needed")
    valid = old_labels >= 0
    if not bool(valid.any()):
        return z.sum() * 0.0
    logits = F.linear(z[valid], old_weight.detach(), None if old_bias is None else old_bias.detach())
    return F.cross_entropy(logits, old_labels[valid])


def synthesize_head_rows(old_embeddings: torch.Tensor, old_labels: torch.Tensor, num_rows: int,
                         classes: torch.Tensor) -> torch.Tensor:
    """Per-class mean old embeddings, used as head rows for classes the old head lacks.

    Follows BCT's rule for new classes (Shen et al. 2020 §3.2, confirmed by the author in openBCT
    issue #1): the synthesized rows are the mean old-model embedding of each new class over the new
    training set, concatenated to the real old head.

    Args:
        old_embeddings: ``[N, E_old]`` float, old-model embeddings of the training set.
        old_labels: ``[N]`` int64, labels in the extended old label space.
        num_rows: K, rows of the returned matrix.
        classes: ``[M]`` int64, the rows (classes) to fill; other rows are zero.

    Returns:
        ``[K, E_old]`` float32 with the class means in the rows listed in ``classes``.

    Raises:
        ValueError: when a listed class has no training sample.
    """
    out = torch.zeros(num_rows, old_embeddings.shape[1], dtype=torch.float32)
    for c in classes.tolist():
        mask = old_labels == c
        if not bool(mask.any()):
            raise ValueError(f"class {c} has no training sample to synthesize its head row from")
        out[c] = old_embeddings[mask].float().mean(0)
    return out


def naive_congruent_loss(logits: torch.Tensor, labels: torch.Tensor, old_correct: torch.Tensor,
                         weight: float = 1.0) -> torch.Tensor:
    """Cross-entropy plus the naive positive-congruent term (Yan et al. 2021, eqs. 4 and 6).

    ``L = mean_i CE_i + λ · mean_i 1(ŷ_old(x_i) = y_i) · CE_i``, i.e. each sample the old model got
    right is weighted ``1 + λ``.

    Args:
        logits: ``[B, C]`` new-model logits.
        labels: ``[B]`` int64.
        old_correct: ``[B]`` bool, whether the old model classified each sample correctly.
        weight: λ.

    Returns:
        Scalar loss.
    """
    ce = F.cross_entropy(logits, labels, reduction="none")
    return ce.mean() + weight * (old_correct.float() * ce).mean()


def distillation_distance(new_logits: torch.Tensor, old_logits: torch.Tensor, kind: str,
                          temperature: float = 100.0, lm_reduction: str = "mean") -> torch.Tensor:
    """Per-sample distance ``D(φ_new(x), φ_old(x))`` of focal distillation (Yan et al. 2021, eqs. 8-9).

    * ``kind="kl"``: ``τ² · KL(σ(φ_old/τ) ‖ σ(φ_new/τ)) = τ² Σ_c p_old,c (log p_old,c − log p_new,c)``.
      The τ² factor (Hinton et al. 2015) keeps gradient magnitudes comparable across τ; the paper uses
      τ = 100, where FD-KL approaches logit matching.
    * ``kind="lm"``: ``½ · mean_c (φ_new,c − φ_old,c)²`` (``lm_reduction="mean"``, the default), or the
      paper's ``½ ‖φ_new − φ_old‖²`` summed over classes (``"sum"``, eq. 9).

    **Why the mean over classes is the default.**  As τ → ∞, ``τ²·KL`` tends to
    ``½ · mean_c (Δ_c − mean_c' Δ_c')²`` with ``Δ = φ_new − φ_old`` (second-order expansion of the
    softmax around uniform).  With the mean over classes FD-LM is that same quantity without the
    centring, so FD-KL (τ = 100) and FD-LM have the same size at equal λ and neither grows with the
    number of classes K.  The paper's sum is K times larger (10x on MNIST, 136x on Omniglot, 1000x
    on ImageNet), which made FD-LM far stronger than FD-KL at the same λ.  The mean is also what the
    public PCT re-implementation computes: jun-fang/PCT ``main.py`` (commit 6dfa7cf), FD-LM per sample
    ``mean_c (z − z_old)² / 2``; amazon-science/regression-constraint-model-upgrade
    ``ConstrainedUpgrade/losses.py`` (commit fb2268c) also averages the squared logit difference over
    classes (``nn.MSELoss``, without the ½).

    Args:
        new_logits: ``[B, K]`` float.
        old_logits: ``[B, K]`` float (no gradient is taken through it).
        kind: ``"kl"`` or ``"lm"``.
        temperature: τ > 0 (KL only).
        lm_reduction: ``"mean"`` (default) or ``"sum"`` over classes (LM only).

    Returns:
        ``[B]`` float per-sample distances.

    Raises:
        ValueError: unknown ``kind``/``lm_reduction``, non-positive τ, or shape mismatch.
    """
    if new_logits.shape != old_logits.shape:
        raise ValueError(f"new logits {tuple(new_logits.shape)} and old logits {tuple(old_logits.shape)} differ")
    old_logits = old_logits.detach()
    if kind == "kl":
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        log_p_new = F.log_softmax(new_logits / temperature, dim=1)
        log_p_old = F.log_softmax(old_logits / temperature, dim=1)
        return temperature**2 * (log_p_old.exp() * (log_p_old - log_p_new)).sum(1)
    if kind == "lm":
        sq = 0.5 * (new_logits - old_logits).pow(2)
        if lm_reduction == "mean":
            return sq.mean(1)
        if lm_reduction == "sum":
            return sq.sum(1)
        raise ValueError(f"lm_reduction must be 'mean' or 'sum', got {lm_reduction!r}")
    raise ValueError(f"unknown distillation kind {kind!r} (expected one of {FD_KINDS})")


def focal_distillation_loss(new_logits: torch.Tensor, old_logits: torch.Tensor, old_correct: torch.Tensor,
                            kind: str = "kl", alpha: float = 1.0, beta: float = 5.0,
                            temperature: float = 100.0, lm_reduction: str = "mean",
                            mask: torch.Tensor | None = None) -> torch.Tensor:
    """Focal distillation (Yan et al. 2021, eq. 7), averaged over the distilled samples of the batch.

    ``L_FD = (1/|S|) Σ_{i ∈ S} [α + β · 1(ŷ_old(x_i) = y_i)] · D(φ_new(x_i), φ_old(x_i))``, where ``S``
    is the set of samples with ``mask_i`` true (samples of classes the old model knows; all samples
    when ``mask`` is None).  Samples of new classes are dropped from the term and from its
    denominator, as amazon-science/regression-constraint-model-upgrade does (it masks them out), so
    adding new-class samples to a batch does not dilute the distillation of the old classes.
    α = 1, β = 0 is ordinary distillation; α = 0 distils only on old-correct samples.

    Args:
        new_logits: ``[B, K]`` new logits restricted to the old model's classes (same column order).
        old_logits: ``[B, K]`` old logits (cached, or computed on the augmented batch).
        old_correct: ``[B]`` bool.
        kind, temperature, lm_reduction: see :func:`distillation_distance`.
        alpha, beta: the filter's base and focal weights.
        mask: ``[B]`` bool or None (all samples).

    Returns:
        Scalar loss; 0 (with a graph) when no sample is distilled.
    """
    d = distillation_distance(new_logits, old_logits, kind, temperature, lm_reduction)
    w = alpha + beta * old_correct.float()
    if mask is None:
        return (w * d).mean()
    keep = mask.bool()
    if not bool(keep.any()):
        return new_logits.sum() * 0.0
    return (w * d)[keep].mean()


def logit_difference_inhibition_loss(new_logits: torch.Tensor, old_logits: torch.Tensor, *, margin: float,
                                     p: float, top_k: int | None, old_correct: torch.Tensor | None = None,
                                     alpha: float = 1.0, beta: float = 0.0,
                                     mask: torch.Tensor | None = None) -> torch.Tensor:
    """Logit Difference Inhibition (LDI) against a single reference model, the old one (ensemble-free ELODI).

    Zhao et al., "ELODI: Ensemble Logit Difference Inhibition for Positive-Congruent Training",
    arXiv 2205.06265, distil into the new model with a loss that ignores small logit changes and only
    looks at the classes the reference scores highest.  Here the reference is the old model itself, as
    in the single-reference recipe of amazon-science/regression-constraint-model-upgrade
    (``--kd_loss_mode li --li_p 2 --li_margin 0.5 --kd_alpha 0.5``, commit fb2268c).  Per sample ``i``:

    ``D_i = (1/|T_i|) Σ_{c ∈ T_i} max(|φ_new,c(x_i) − φ_old,c(x_i)| − ξ, 0)^p``

    where ``T_i`` is the set of the ``top_k`` classes with the largest **old** logits of sample ``i``
    (all classes when ``top_k`` is None).  The loss is

    ``L_LDI = (1/|S|) Σ_{i ∈ S} [α + β·1(ŷ_old(x_i) = y_i)] · D_i``

    over the samples ``S`` of classes the old model knows (``mask``), exactly as
    :func:`focal_distillation_loss` averages: new-class samples count neither in the sum nor in the
    denominator.  α = 1, β = 0 (the defaults) is the reference recipe's ``--kd_filter all_pass``;
    β > 0 adds PCT's focal weight on the samples the old model got right.

    Differences from the reference code: ``T_i`` is chosen **per sample**.  The reference's
    ``compute_topk`` branch sorts along the batch axis (``argsort(...)[:k]`` picks *samples*, not
    classes), which the reference notes (``../shared/reference/compat.md`` §1.3) flag as a bug.  The
    reference also clamps at 1e-7 instead of 0; here a difference within the margin gives exactly zero
    loss and zero gradient.

    Args:
        new_logits: ``[B, K]`` float32 new logits restricted to the old model's classes, in the old
            column order (the caller gathers them, as for FD).
        old_logits: ``[B, K]`` float old logits (cached, or computed on the augmented batch); no
            gradient is taken through them.
        margin: ξ ≥ 0, the tolerated absolute logit difference.
        p: exponent ≥ 1 (2 in the reference recipe; below 1 the gradient at the margin is infinite).
        top_k: number of classes per sample (≥ 1; values above K use all K classes), or None for all.
        old_correct: ``[B]`` bool, whether the old model was right; needed only when ``beta`` != 0.
        alpha, beta: the sample weight ``α + β·1(old correct)``.
        mask: ``[B]`` bool, samples of old classes (None = all).

    Returns:
        Scalar loss; 0 (with a graph) when no sample is selected.

    Raises:
        ValueError: shape mismatch, ``margin`` < 0, ``p`` < 1, ``top_k`` < 1, or ``beta`` != 0
            without ``old_correct``.
    """
    if new_logits.shape != old_logits.shape or new_logits.ndim != 2:
        raise ValueError(f"new logits {tuple(new_logits.shape)} and old logits {tuple(old_logits.shape)} must be "
                         "the same [B, K] shape")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if p < 1:
        raise ValueError(f"p must be >= 1, got {p}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
    if beta != 0 and old_correct is None:
        raise ValueError("beta != 0 needs old_correct")
    old_logits = old_logits.detach()
    excess = torch.relu((new_logits - old_logits).abs() - margin).pow(p)  # [B, K]
    k = new_logits.shape[1] if top_k is None else min(int(top_k), new_logits.shape[1])
    if k < new_logits.shape[1]:
        cols = old_logits.topk(k, dim=1).indices  # [B, k]: per sample, along the class axis
        excess = excess.gather(1, cols)
    per_sample = excess.mean(1)
    w = torch.full_like(per_sample, float(alpha))
    if beta != 0:
        w = w + beta * old_correct.float()
    if mask is None:
        return (w * per_sample).mean()
    keep = mask.bool()
    if not bool(keep.any()):
        return new_logits.sum() * 0.0
    return (w * per_sample)[keep].mean()
