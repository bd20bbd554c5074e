"""``toolkit train-compatible`` / ``compare-models``: backward-compatible (BCT) and positive-congruent (PCT) updates.

Modules:
    losses: BCT influence loss, head synthesis, naive PCT loss, focal distillation (FD-KL, FD-LM).
    metrics: ER, NFR, PFR, relative NFR, bootstrap CIs, flipped samples, cross-model retrieval, BCT criterion.
    lightning: the LightningModule training the new model with cached old logits.
    checkpoints: weights-only model saving/loading (toolkit, Lightning, state_dict, TorchScript).
    data: ``cfg.data`` -> labelled train/test split.
    command: ``run`` (train-compatible) and ``compare`` (compare-models).
"""
