"""``toolkit train-compatible`` / ``compare-models``: backward-compatible (BCT) and positive-congruent (PCT) updates.

Modules:
    losses: BCT influence loss, head synthesis, naive PCT loss, focal distillation (FD-KL, FD-LM).
    metrics: ER, NFR, PFR, relative NFR, bootstrap CIs, flipped samples, cross-model retrieval, BCT criterion.
    lightning: the LightningModule training the new model with cached old logits.
    checkpoints: weights-only model saving/loading (toolkit, Lightning, state_dict, TorchScript).
    data: ``cfg.data`` -> labelled train/test split.
    old: the old model's outputs (checkpoint, precomputed files, or trained here) and class maps.
    report: measuring an update (flip metrics, CIs, flips.json, retrieval, flips.png).
    task: ``TrainCompatible`` and ``CompareModels``, the two commands as validate/setup/fit/evaluate/save tasks.
    schema: declared value constraints of both configs.
    command: ``run`` (train-compatible) and ``compare`` (compare-models), what the CLI calls.
"""
