"""``toolkit compress``: online low-rank (SVD) embedding compression with a cyclically annealed LR.

Follows Acharya, Goel, Metallinou and Dhillon, "Online Embedding Compression for Text Classification
using Low Rank Matrix Factorization", AAAI 2019 (arXiv:1811.00641).

Modules: :mod:`factorize` (rank formula, truncated SVD, factorized embedding, size accounting),
:mod:`schedulers` (CALR and the other per-step schedules), :mod:`quantize` (fp16 / 8-bit / 4-bit
embedding baselines), :mod:`text` (datasets, tokenization, vocabulary, word vectors),
:mod:`models` (LSTM / DAN / CNN classifiers and their LightningModule), :mod:`metrics`,
:mod:`pipeline` (train, factorize, fine-tune, baselines) and :mod:`command` (the CLI glue).
"""
