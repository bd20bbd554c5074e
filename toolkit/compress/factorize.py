"""Low-rank factorization of an embedding table and its size accounting (pure torch).

Acharya et al., AAAI 2019, Sec. "Low rank factorization": a trained embedding table E (V x d) is
replaced by the truncated SVD E ~ U_k (S_k V_k^T), i.e. a V x k table followed by a k x d
projection, and both factors keep training.  For a fraction ``p`` of the table's V*d parameters
removed, k(V + d) <= (1 - p) V d gives the rank k = floor((1 - p) V d / (V + d)).

Note: the authors' released TensorFlow code slices the third output of ``tf.svd`` (which is V, not
V^T) by rows; that is not the truncated SVD.  We implement the correct E_k = U_k S_k V_k^T.

Optionally (issue 4, item 4) the first dense layer after the embedding is factorized the same way:
:class:`FactorizedLinear` (a ``nn.Linear``) and :class:`LowRankInputLSTM` (an LSTM's input weight W_ih),
with the same rank formula on the layer's m x n weight; :func:`dense_footprint` counts their size.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
from torch import nn

FLOAT32_BYTES = 4


def rank_for_compression(vocab_size: int, dim: int, compression: float) -> int:
    """Rank k that removes at least a fraction ``compression`` of a V x d table's parameters.

    k = floor((1 - p) * V * d / (V + d))  (Acharya et al. 2019; the poster's formula).

    Args:
        vocab_size: V, rows of the table (> 0).
        dim: d, columns of the table (> 0).
        compression: p in the open interval (0, 1), the fraction of parameters removed.

    Returns:
        k >= 0 (int).  k = 0 means the requested compression leaves no rank at all.

    Raises:
        ValueError: if ``compression`` is not in (0, 1) or a size is not positive.
    """
    if not 0.0 < float(compression) < 1.0:
        raise ValueError(f"compression must be in (0, 1), got {compression}")
    if vocab_size <= 0 or dim <= 0:
        raise ValueError(f"table shape must be positive, got {vocab_size} x {dim}")
    # exact rational arithmetic on the decimal the user typed (str(0.9) == "0.9"): in floats
    # (1 - 0.9) * V d / (V + d) can land just below an integer (4.999... for V = d = 100) and floor
    # one too low, while an epsilon could push a value just below an integer over the budget.
    p = Fraction(str(float(compression)))
    return int(math.floor((1 - p) * vocab_size * dim / (vocab_size + dim)))


def compression_of_rank(vocab_size: int, dim: int, rank: int) -> float:
    """Fraction of the V x d table's parameters removed by a rank-k factorization.

    p = 1 - k (V + d) / (V d)  (the inverse of :func:`rank_for_compression` before flooring).

    Args:
        vocab_size: V (> 0).
        dim: d (> 0).
        rank: k (>= 0).

    Returns:
        float; negative when k (V + d) > V d (the factorization is larger than the table).
    """
    return 1.0 - rank * (vocab_size + dim) / (vocab_size * dim)


def truncated_svd(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank-k truncated SVD of a table, split as (U_k, S_k V_k^T).

    Args:
        weight: E, float tensor [V, d].
        rank: k with 1 <= k <= min(V, d).

    Returns:
        ``(left, right)``: U_k float [V, k] (orthonormal columns) and S_k V_k^T float [k, d], so
        ``left @ right`` is the best rank-k approximation of E in Frobenius norm (Eckart-Young).
        Computed in float64 and returned in ``weight``'s dtype.

    Raises:
        ValueError: if ``weight`` is not 2-D or ``rank`` is outside [1, min(V, d)].
    """
    if weight.ndim != 2:
        raise ValueError(f"expected a 2-D table, got shape {tuple(weight.shape)}")
    v, d = weight.shape
    if not 1 <= rank <= min(v, d):
        raise ValueError(f"rank must be in [1, min(V, d) = {min(v, d)}], got {rank}")
    u, s, vh = torch.linalg.svd(weight.detach().double(), full_matrices=False)
    left = u[:, :rank]
    right = s[:rank, None] * vh[:rank]
    return left.to(weight.dtype).contiguous(), right.to(weight.dtype).contiguous()


def weighted_truncated_svd(weight: torch.Tensor, rank: int, row_weights: torch.Tensor | None = None,
                           metric: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank-k factors of E that are best in a weighted norm, split as (left [V, k], right [k, d]).

    Minimises ``sum_i r_i || (E_i - (left right)_i) M^(1/2) ||^2`` over rank-k products: with ``r`` the
    training frequency of each word this is the expected error of a token drawn from the training text
    (frequency-weighted low-rank approximation, as in GroupReduce, Chen et al., NeurIPS 2018), and with
    ``M = sum W^T W`` over the layers that read the embedding it is the error those layers see of their
    linear input (output-aware factorization; Chen et al., "DRONE", NeurIPS 2021, do the same with data
    statistics).  Separable weights make it exact: with ``A = D^(1/2) E M^(1/2) = U S V^T`` (``D = diag(r)``)
    the optimum is ``D^(-1/2) A_k M^(-1/2)`` (Eckart-Young on ``A``).  Without either weight this is
    :func:`truncated_svd`.

    ``r`` is rescaled to mean 1 and ``M`` to trace d, so the factors keep the scale of :func:`truncated_svd`'s.

    Args:
        weight: E, float [V, d].
        rank: k in [1, min(V, d)].
        row_weights: float [V], >= 0 with a positive sum, or None (all 1).  Rows of weight 0 are kept at
            a small floor (1e-3 of the mean) so they still get a defined row.
        metric: float [d, d] symmetric positive semi-definite, or None (identity).  A ridge of 1e-3 of its
            mean eigenvalue keeps ``M^(-1/2)`` finite where the reading layers ignore a direction.

    Returns:
        ``(left, right)`` in ``weight``'s dtype, computed in float64.

    Raises:
        ValueError: ``weight`` not 2-D, ``rank`` outside [1, min(V, d)], or weights of the wrong shape,
            negative, all zero or not finite.
    """
    if row_weights is None and metric is None:
        return truncated_svd(weight, rank)
    if weight.ndim != 2:
        raise ValueError(f"expected a 2-D table, got shape {tuple(weight.shape)}")
    v, d = weight.shape
    if not 1 <= rank <= min(v, d):
        raise ValueError(f"rank must be in [1, min(V, d) = {min(v, d)}], got {rank}")
    e = weight.detach().double()
    if row_weights is None:
        r = torch.ones(v, dtype=torch.float64)
    else:
        r = torch.as_tensor(row_weights, dtype=torch.float64).reshape(-1)
        if r.shape != (v,) or not bool(torch.isfinite(r).all()) or bool((r < 0).any()) or float(r.sum()) <= 0:
            raise ValueError(f"row_weights must be {v} finite values >= 0 with a positive sum")
        r = r / r.mean()
        r = torch.clamp(r, min=1e-3)
    if metric is None:
        root = inv_root = torch.eye(d, dtype=torch.float64)
    else:
        m = torch.as_tensor(metric, dtype=torch.float64)
        if m.shape != (d, d) or not bool(torch.isfinite(m).all()):
            raise ValueError(f"metric must be a finite {d} x {d} matrix, got shape {tuple(m.shape)}")
        lam, q = torch.linalg.eigh((m + m.T) / 2)
        if float(lam.max()) <= 0:
            raise ValueError("metric must be positive semi-definite and not zero")
        lam = torch.clamp(lam, min=0.0)
        lam = lam / lam.mean() + 1e-3
        root = (q * lam.sqrt()) @ q.T
        inv_root = (q / lam.sqrt()) @ q.T
    sr = r.sqrt()[:, None]
    u, sv, vh = torch.linalg.svd(sr * e @ root, full_matrices=False)
    left = u[:, :rank] / sr
    right = (sv[:rank, None] * vh[:rank]) @ inv_root
    return left.to(weight.dtype).contiguous(), right.to(weight.dtype).contiguous()


def retained_energy(weight: torch.Tensor, ranks: list[int]) -> list[float]:
    """Share of E's squared Frobenius norm kept by its rank-k truncated SVD, for each k.

    ``sum_{i<=k} s_i^2 / sum_i s_i^2`` with s the singular values of E (Eckart-Young: 1 minus the relative
    squared error of the best rank-k approximation).  A diagnostic of how much of a trained table a rank
    can hold before fine-tuning.

    Args:
        weight: E, float tensor [V, d].
        ranks: ints k, each in [1, min(V, d)].

    Returns:
        list of floats in [0, 1], one per rank (1.0 for an all-zero table).

    Raises:
        ValueError: if ``weight`` is not 2-D or a rank is outside [1, min(V, d)].
    """
    if weight.ndim != 2:
        raise ValueError(f"expected a 2-D table, got shape {tuple(weight.shape)}")
    limit = min(weight.shape)
    for k in ranks:
        if not 1 <= int(k) <= limit:
            raise ValueError(f"rank must be in [1, min(V, d) = {limit}], got {k}")
    s2 = torch.linalg.svdvals(weight.detach().double()) ** 2
    total = float(s2.sum())
    if total == 0.0:
        return [1.0 for _ in ranks]
    cum = torch.cumsum(s2, 0)
    return [float(cum[int(k) - 1]) / total for k in ranks]


def head_rows_for(vocab_size: int, dim: int, rank: int, tail_rank: int) -> int:
    """Rows of the most frequent words that can stay dense when the rest is factorized at ``tail_rank``.

    The budget is the rank-``rank`` factorization's k (V + d) parameters; a split keeps h head rows at full
    width d and factorizes the V - h tail rows at rank r (tail table (V - h) x r plus an r x d projection):
    h d + (V - h) r + r d <= k (V + d), so h = floor((k - r)(V + d) / (d - r)), capped at V.  ``tail_rank``
    = ``rank`` gives h = 0 (the plain factorization); ``tail_rank`` = 0 spends the whole budget on head rows.

    Args:
        vocab_size: V (> 0); dim: d (> 0); rank: k in [0, min(V, d)]; tail_rank: r in [0, min(k, d - 1)].

    Returns:
        h, an int in [0, V].

    Raises:
        ValueError: sizes not positive or ranks out of range.
    """
    if vocab_size <= 0 or dim <= 0:
        raise ValueError(f"table shape must be positive, got {vocab_size} x {dim}")
    if not 0 <= rank <= min(vocab_size, dim):
        raise ValueError(f"rank must be in [0, min(V, d) = {min(vocab_size, dim)}], got {rank}")
    if not 0 <= tail_rank <= min(rank, dim - 1):
        raise ValueError(f"tail rank must be in [0, min(rank, d - 1) = {min(rank, dim - 1)}], got {tail_rank}")
    return min(int(vocab_size), (rank - tail_rank) * (vocab_size + dim) // (dim - tail_rank))


class FactorizedEmbedding(nn.Module):
    """Embedding E = A B with A a V x k table and B a k x d projection (both trainable), optionally with its
    first ``head`` rows kept dense.

    ``forward(tokens)`` maps a long tensor [...] to float [..., d] as ``table(tokens) @ B``; only the
    k-dim rows are gathered, so lookup costs O(k d) per token.

    With ``head > 0`` (frequency split): rows ``0 .. head-1`` -- the most frequent words, since the vocabulary
    is sorted by training frequency (:class:`~toolkit.compress.text.Vocabulary`) -- are a dense head x d table
    and only the V - head tail rows are factorized, at rank k.  This is the two-band case of adaptive input
    representations (Baevski & Auli, ICLR 2019: frequent words get the full width, rare words a projected
    narrow one) and of GroupReduce's frequency groups (Chen et al., NeurIPS 2018); no index map is stored.

    Args:
        vocab_size: V.
        dim: d, output dimension.
        rank: k, the tail's rank (0 with ``head > 0``: tail words embed to the zero vector).
        head: dense head rows, in [0, V] (0: the plain factorization of Acharya et al. 2019).

    Attributes:
        table: ``nn.Embedding(V - head, k)`` holding the tail's U_k (absent when k = 0).
        proj: ``nn.Linear(k, d, bias=False)`` whose weight [d, k] is (S_k V_k^T)^T (absent when k = 0).
        head_table: ``nn.Embedding(head, d)`` (absent when head = 0).

    Raises:
        ValueError: ``head`` outside [0, V], or rank 0 without a head.
    """

    def __init__(self, vocab_size: int, dim: int, rank: int, head: int = 0) -> None:
        super().__init__()
        if not 0 <= int(head) <= int(vocab_size):
            raise ValueError(f"head rows must be in [0, V = {vocab_size}], got {head}")
        if int(rank) < 0 or (int(rank) == 0 and int(head) == 0):
            raise ValueError(f"rank must be >= 1 without head rows, got {rank}")
        self.num_embeddings, self.embedding_dim, self.rank = int(vocab_size), int(dim), int(rank)
        self.head = int(head)
        tail = self.num_embeddings - self.head
        if self.rank > 0 and tail > 0:
            self.table = nn.Embedding(tail, self.rank)
            self.proj = nn.Linear(self.rank, dim, bias=False)
        if self.head > 0:
            self.head_table = nn.Embedding(self.head, dim)

    @property
    def has_tail(self) -> bool:
        """True when tail rows are stored (rank > 0 and head < V)."""
        return hasattr(self, "table")

    @classmethod
    def from_weight(cls, weight: torch.Tensor, rank: int, row_weights: torch.Tensor | None = None,
                    metric: torch.Tensor | None = None, head: int = 0) -> FactorizedEmbedding:
        """Initialise from a trained table by truncated SVD so that the module reproduces U_k S_k V_k^T
        (with ``row_weights`` / ``metric``: the weighted optimum of :func:`weighted_truncated_svd`).

        With ``head`` the first ``head`` rows are copied exactly and the SVD is taken of the tail rows only.

        Args:
            weight: E, float [V, d].
            rank: k in [1, min(V - head, d)] (or 0 with ``head > 0``).
            row_weights: optional float [V] (e.g. training word counts).
            metric: optional float [d, d] (e.g. :meth:`~toolkit.compress.models.TextClassifier.input_metric`).
            head: dense head rows in [0, V].

        Raises:
            ValueError: see :func:`truncated_svd` and :func:`weighted_truncated_svd`, and the class.
        """
        module = cls(weight.shape[0], weight.shape[1], rank, head)
        with torch.no_grad():
            if module.head:
                module.head_table.weight.copy_(weight[: module.head])
            if module.has_tail:
                rw = None if row_weights is None else torch.as_tensor(row_weights).reshape(-1)[module.head:]
                left, right = weighted_truncated_svd(weight[module.head:], rank, rw, metric)
                module.table.weight.copy_(left)
                module.proj.weight.copy_(right.T)
        return module

    @property
    def weight(self) -> torch.Tensor:
        """The dense table, float [V, d] (for inspection; not used in ``forward``)."""
        return self.forward(torch.arange(self.num_embeddings))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Look up ``tokens`` (long [...]) and return float [..., d]."""
        if not self.head:
            return self.proj(self.table(tokens))
        in_head = tokens < self.head
        out = self.head_table(torch.where(in_head, tokens, 0)) * in_head.unsqueeze(-1)
        if self.has_tail:
            tail = self.proj(self.table(torch.where(in_head, 0, tokens - self.head)))
            out = out + tail * (~in_head).unsqueeze(-1)
        return out


def embedding_footprint(vocab_size: int, dim: int, *, rank: int | None = None, bits: int = 32,
                        row_param_bytes: int = 0, head: int = 0) -> dict[str, float]:
    """Parameters and storage of an embedding table, dense or factorized.

    Args:
        vocab_size: V.
        dim: d.
        rank: k for a factorized table (k(V + d) parameters); None for a dense V x d table.
        head: with ``rank``, dense head rows of a frequency split (h d + (V - h) k + k d parameters; the
            tail's projection only when V - h > 0 and k > 0).
        bits: bits per stored value (32 float32, 16 float16, 8 / 4 integer codes).
        row_param_bytes: extra bytes per row (per-row scale and zero point of row-wise quantization,
            8 for two float32s).

    Returns:
        ``{"params": int, "bytes": int}``; bytes = ceil(values * bits / 8) per row plus row params.
    """
    if rank is None:
        params = vocab_size * dim
        nbytes = vocab_size * (math.ceil(dim * bits / 8) + row_param_bytes)
    else:
        tail = vocab_size - head
        params = head * dim + (rank * (tail + dim) if tail > 0 and rank > 0 else 0)
        nbytes = math.ceil(params * bits / 8)
    return {"params": int(params), "bytes": int(nbytes)}


# --- the optional factorized first dense layer (issue 4, item 4) -----------------------------------------------
#
# The same truncated SVD applied to a dense weight W (m x n, m outputs, n inputs): W ~ U_k (S_k V_k^T), so the
# affine map x -> W x + b becomes two layers, x -> (S_k V_k^T) x (n -> k, no bias) then z -> U_k z + b (k -> m),
# with k = floor((1 - p) m n / (m + n)) from :func:`rank_for_compression`.  Acharya et al.'s code has this form
# only as the ``MLP_LR`` variant (first dense layer of a bag-of-words MLP, built from random weights); here it
# is an SVD of the *trained* layer, as for the embedding.


class FactorizedLinear(nn.Module):
    """Low-rank affine layer y = U (D x) + b replacing a dense ``nn.Linear(n, m)``; both factors train.

    ``forward`` maps float [..., n] to float [..., m].

    Args:
        in_features: n.
        out_features: m.
        rank: k (>= 1).
        bias: whether the second layer has a bias (the original layer's bias goes there).

    Attributes:
        down: ``nn.Linear(n, k, bias=False)``, weight [k, n] = S_k V_k^T.
        up: ``nn.Linear(k, m, bias=bias)``, weight [m, k] = U_k, bias [m] = the original b.
    """

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features, self.rank = int(in_features), int(out_features), int(rank)
        self.down = nn.Linear(self.in_features, self.rank, bias=False)
        self.up = nn.Linear(self.rank, self.out_features, bias=bias)

    @classmethod
    def from_linear(cls, layer: nn.Linear, rank: int) -> FactorizedLinear:
        """Truncated SVD of a trained ``nn.Linear``: at step 0 the module computes U_k S_k V_k^T x + b.

        Args:
            layer: the dense layer, weight float [m, n], optional bias float [m].
            rank: k in [1, min(m, n)].

        Returns:
            A new module (``layer`` is not modified); float32 like ``layer``.

        Raises:
            ValueError: if ``rank`` is outside [1, min(m, n)] (see :func:`truncated_svd`).
        """
        left, right = truncated_svd(layer.weight.detach(), rank)
        module = cls(layer.in_features, layer.out_features, rank, bias=layer.bias is not None)
        with torch.no_grad():
            module.down.weight.copy_(right)
            module.up.weight.copy_(left)
            if layer.bias is not None:
                module.up.bias.copy_(layer.bias.detach())
        return module

    @property
    def weight(self) -> torch.Tensor:
        """The dense product U D, float [m, n] (for inspection; ``forward`` never forms it)."""
        return self.up.weight @ self.down.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """float [..., n] -> float [..., m]."""
        return self.up(self.down(x))


class LowRankInputLSTM(nn.Module):
    """A 1-layer LSTM whose input-to-hidden weight W_ih (4H x d) is factorized as U_k (S_k V_k^T).

    The LSTM's gates are W_ih x_t + b_ih + W_hh h_{t-1} + b_hh; the input map x_t -> W_ih x_t + b_ih is the
    first dense layer after the embedding.  It is replaced by ``down`` (d -> k, weight S_k V_k^T, no bias)
    followed by an ``nn.LSTM`` with input size k whose W_ih is U_k [4H, k]; W_hh, b_ih and b_hh are kept.
    ``forward`` takes float [B, T, d] (batch first) and returns what ``nn.LSTM`` returns:
    ``(output float [B, T, H], (h_n, c_n))``.

    Args:
        input_size: d.
        hidden_size: H.
        rank: k (>= 1).

    Attributes:
        down: ``nn.Linear(d, k, bias=False)``.
        lstm: ``nn.LSTM(k, H, batch_first=True)``.
    """

    def __init__(self, input_size: int, hidden_size: int, rank: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.rank = int(input_size), int(hidden_size), int(rank)
        self.down = nn.Linear(self.input_size, self.rank, bias=False)
        self.lstm = nn.LSTM(self.rank, self.hidden_size, batch_first=True)

    @classmethod
    def from_lstm(cls, lstm: nn.LSTM, rank: int) -> LowRankInputLSTM:
        """Truncated SVD of a trained LSTM's W_ih; every other weight is copied.

        Args:
            lstm: 1-layer, unidirectional, batch-first ``nn.LSTM`` without projections.
            rank: k in [1, min(4H, d)].

        Raises:
            ValueError: on another LSTM layout, or ``rank`` outside [1, min(4H, d)].
        """
        if lstm.num_layers != 1 or lstm.bidirectional or not lstm.batch_first or lstm.proj_size or not lstm.bias:
            raise ValueError("only a 1-layer, unidirectional, batch-first LSTM with biases can be factorized")
        left, right = truncated_svd(lstm.weight_ih_l0.detach(), rank)
        module = cls(lstm.input_size, lstm.hidden_size, rank)
        with torch.no_grad():
            module.down.weight.copy_(right)
            module.lstm.weight_ih_l0.copy_(left)
            for name in ("weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
                getattr(module.lstm, name).copy_(getattr(lstm, name).detach())
        return module

    @property
    def weight_ih(self) -> torch.Tensor:
        """The effective input weight U_k S_k V_k^T, float [4H, d] (for inspection)."""
        return self.lstm.weight_ih_l0 @ self.down.weight

    def forward(self, x: torch.Tensor):
        """float [B, T, d] -> ``(output float [B, T, H], (h_n, c_n) float [1, B, H] each)``."""
        return self.lstm(self.down(x))


def dense_footprint(out_features: int, in_features: int, *, rank: int | None = None,
                    bias: bool = True) -> dict[str, int]:
    """Parameters and float32 bytes of an affine layer W (m x n) + b, dense or rank-k factorized.

    Args:
        out_features: m.
        in_features: n.
        rank: k for the factorized form (k (m + n) weights); None for the dense m n.
        bias: add the m bias values (kept unfactorized).

    Returns:
        ``{"params": int, "bytes": int}`` with bytes = 4 * params.
    """
    weights = out_features * in_features if rank is None else rank * (out_features + in_features)
    params = int(weights + (out_features if bias else 0))
    return {"params": params, "bytes": params * FLOAT32_BYTES}


# --- a whole-model target (issue 13, item 2: ``compression_of=model``) ----------------------------------------


def ranks_for_model_compression(total_params: int, embedding_shape: tuple[int, int], compression: float,
                                dense_shape: tuple[int, int] | None = None,
                                dense_rank: int | None = None) -> tuple[int, int | None]:
    """Ranks that remove at least a fraction p of the *whole model's* parameters.

    The model has P = ``total_params`` parameters, of which the embedding holds V d and, when ``dense_shape``
    = (m, n) is given, the first dense layer's weight m n (its bias is not factorized).  Everything else,
    F = P - V d - m n, is kept, so the two factorizations may use B = floor((1 - p) P) - F parameters:

    * no dense layer: k = floor(B / (V + d));
    * a fixed dense rank k_d (``dense_rank``, from ``dense.rank`` or ``dense.compression``):
      k = floor((B - k_d (m + n)) / (V + d));
    * otherwise both layers keep the same share s = B / (V d + m n) of their weights:
      k_d = max(1, floor(s m n / (m + n))), then k = floor((B - k_d (m + n)) / (V + d)), and what the two
      floors leave of B raises k_d by floor(rest / (m + n)).

    The ranks are capped at min(V, d) and min(m, n).  p is read as the decimal typed (exact rational
    arithmetic, as in :func:`rank_for_compression`).  This extends the per-table rank formula of Acharya
    et al. (AAAI 2019) to a budget over the whole classifier.

    Args:
        total_params: P of the uncompressed model (int > 0).
        embedding_shape: (V, d).
        compression: p in (0, 1), fraction of the whole model's parameters removed.
        dense_shape: (m, n) of the first dense layer's weight when it is factorized too, else None.
        dense_rank: its rank when fixed, else None (shared share rule).

    Returns:
        ``(k, k_d)``: the embedding's rank (int, may be < 1 when the target is unreachable) and the dense
        layer's rank (None without ``dense_shape``).

    Raises:
        ValueError: ``compression`` outside (0, 1) or non-positive sizes.
    """
    if not 0.0 < float(compression) < 1.0:
        raise ValueError(f"compression must be in (0, 1), got {compression}")
    v, d = (int(x) for x in embedding_shape)
    if total_params <= 0 or v <= 0 or d <= 0:
        raise ValueError(f"sizes must be positive, got P={total_params}, V x d = {v} x {d}")
    m, n = (int(x) for x in dense_shape) if dense_shape is not None else (0, 0)
    fixed = int(total_params) - v * d - m * n
    p = Fraction(str(float(compression)))
    budget = math.floor((1 - p) * int(total_params)) - fixed
    k_d, shared = None, dense_shape is not None and dense_rank is None
    if dense_shape is not None:
        if dense_rank is None:
            share = Fraction(max(budget, 0), v * d + m * n)
            dense_rank = max(1, math.floor(share * m * n / (m + n)))
        k_d = min(int(dense_rank), min(m, n))
        budget -= k_d * (m + n)
    k = min(int(budget // (v + d)) if budget > 0 else 0, min(v, d))
    if shared and k >= 1:  # parameters the floors left over go to the dense layer's rank
        k_d = min(min(m, n), k_d + (budget - k * (v + d)) // (m + n))
    return k, k_d


def max_model_compression(total_params: int, embedding_shape: tuple[int, int],
                          dense_shape: tuple[int, int] | None = None, dense_rank: int | None = None) -> float:
    """Largest fraction of a model's parameters that rank-1 factorizations (or ``dense_rank``) can remove.

    1 - (F + (V + d) + k_d (m + n)) / P with F the parameters outside the factorized weights and k_d = 1
    unless fixed; see :func:`ranks_for_model_compression`.  Returns a float (may be <= 0).
    """
    v, d = (int(x) for x in embedding_shape)
    m, n = (int(x) for x in dense_shape) if dense_shape is not None else (0, 0)
    fixed = int(total_params) - v * d - m * n
    kept = fixed + (v + d) + ((dense_rank or 1) * (m + n) if dense_shape is not None else 0)
    return 1.0 - kept / int(total_params)
