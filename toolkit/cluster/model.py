"""The LANDER graph neural network (Xing et al., ICCV 2021; reference ``models/lander.py``, ``graphconv.py``).

One shared network predicts, for every edge ``j -> i`` of a kNN graph, the
probability that ``j`` and ``i`` belong to the same class (the *linkage*), and
derives each node's density from those predictions, so linkage and density
are consistent by construction:

    pred_den_i = mean_{j in N(i)} a_ji * (P_same(j, i) - P_diff(j, i))

with ``a_ji`` the cosine similarity.  The loss is the density MSE plus the
cross-entropy of the linkage on edges whose source has higher ground-truth
density than their destination, optionally balanced between positive and
negative edges (notes section 1.4).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class ConcatGraphConv(nn.Module):
    """Graph conv with the reference's "concat" layer: ``Linear([h_i, sum_j affine_ji h_j])``.

    ``affine`` rows sum to one, so the aggregate is a similarity-weighted mean of the in-neighbours.

    Args:
        in_dim: input feature size.
        out_dim: output feature size.
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(2 * in_dim, out_dim)

    def forward(self, g, h: torch.Tensor) -> torch.Tensor:
        """``h`` ``[N, in_dim]`` float32 -> ``[N, out_dim]`` (DGL fuses the message and the sum: no ``[E, D]`` tensor)."""
        import dgl.function as fn

        with g.local_scope():
            g.ndata["h"] = h
            g.update_all(fn.u_mul_e("h", "affine", "m"), fn.sum("m", "agg"))
            return self.linear(torch.cat([h, g.ndata["agg"]], dim=1))


class GATGraphConv(nn.Module):
    """Graph attention conv (``dgl.nn.GATConv``), heads averaged, plus a bias (reference iNat setting).

    Args:
        in_dim, out_dim: feature sizes.
        heads: number of attention heads.
    """

    def __init__(self, in_dim: int, out_dim: int, heads: int = 1) -> None:
        super().__init__()
        from dgl.nn import GATConv

        self.gat = GATConv(in_dim, out_dim, heads, allow_zero_in_degree=True, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_dim))

    def forward(self, g, h: torch.Tensor) -> torch.Tensor:
        """``h`` ``[N, in_dim]`` -> ``[N, out_dim]``."""
        return self.gat(g, h).mean(dim=1) + self.bias


EDGE_FEATURES = {"cosine": "raw_affine", "nbr_cosine": "nbr_cosine", "snn_jaccard": "snn_jaccard"}
"""Edge inputs the linkage head can take (``model.edge_features``) and the graph's ``edata`` key of each."""


def edge_inputs(g, names: tuple[str, ...], edge_ids: torch.Tensor | None = None) -> torch.Tensor | None:
    """Stack the named edge features of ``g`` into float32 ``[E (or E'), len(names)]``; None for no names.

    ``names`` are keys of :data:`EDGE_FEATURES` (checked once, by :class:`Lander`); ``edge_ids`` (int64 ``[E']``)
    selects edges.

    Raises:
        KeyError: a name not in :data:`EDGE_FEATURES`, or a graph without that edge data.
    """
    if not names:
        return None
    cols = [g.edata[EDGE_FEATURES[n]] for n in names]
    if edge_ids is not None:
        cols = [c[edge_ids] for c in cols]
    return torch.stack(cols, dim=1).float()


class Lander(nn.Module):
    """LANDER: graph-conv stack, linkage (edge) head, density from edge predictions.

    Args:
        feature_dim: D, the node feature size.
        hidden: ``nhid`` (reference 512).  Layer widths follow the reference:
            inputs ``(D', h, h, h/2)``, outputs ``(h, h, h/2, h/2)``.
        num_conv: number of graph-conv layers, 1 to 4.
        dropout: dropout after each conv.
        use_gat: attention conv instead of the concat conv.
        gat_heads: attention heads.
        use_cluster_feat: input is ``[features, cluster_features]`` (D' = 2D) instead of ``features``.
        edge_features: names from :data:`EDGE_FEATURES` fed to the linkage head beside the node embeddings (our
            extension; the reference head sees node embeddings only, ``()``): ``cosine`` (the edge's cosine
            similarity), ``nbr_cosine`` and ``snn_jaccard`` (neighbourhood comparisons,
            :func:`toolkit.cluster.graph.relational_edge_features`). See docs/cluster.md for the measurements.

    Raises:
        ValueError: ``num_conv`` outside 1..4, ``hidden`` not even, or an unknown edge feature.
    """

    def __init__(self, feature_dim: int, hidden: int = 512, num_conv: int = 1, dropout: float = 0.0,
                 use_gat: bool = False, gat_heads: int = 1, use_cluster_feat: bool = True,
                 edge_features: tuple[str, ...] | list[str] = ()) -> None:
        super().__init__()
        unknown = [n for n in edge_features if n not in EDGE_FEATURES]
        if unknown:
            raise ValueError(f"unknown edge feature(s) {unknown}; expected some of {list(EDGE_FEATURES)}")
        self.edge_features = tuple(str(n) for n in edge_features)
        if not 1 <= num_conv <= 4:
            raise ValueError(f"num_conv must be 1..4, got {num_conv}")
        if hidden % 2:
            raise ValueError(f"hidden must be even, got {hidden}")
        self.feature_dim = int(feature_dim)
        self.knn_on = "peak"  # which level graph it runs on (set from model.knn_on; see hierarchy.cluster_hierarchy)
        self.use_cluster_feat = bool(use_cluster_feat)
        in_dim = 2 * feature_dim if use_cluster_feat else feature_dim
        ins = (in_dim, hidden, hidden, hidden // 2)[:num_conv]
        outs = (hidden, hidden, hidden // 2, hidden // 2)[:num_conv]
        layer = (lambda i, o: GATGraphConv(i, o, gat_heads)) if use_gat else ConcatGraphConv
        self.convs = nn.ModuleList(layer(i, o) for i, o in zip(ins, outs, strict=True))
        self.dropout = nn.Dropout(dropout)
        out = outs[-1]
        self.src_mlp = nn.Linear(out, hidden // 2)
        self.dst_mlp = nn.Linear(out, hidden // 2)
        self.sim_mlp = nn.Linear(len(self.edge_features), hidden // 2) if self.edge_features else None
        self.classifier = nn.Sequential(nn.PReLU(hidden // 2), nn.Linear(hidden // 2, hidden // 2),
                                        nn.PReLU(hidden // 2), nn.Linear(hidden // 2, 2))

    def node_embeddings(self, g) -> torch.Tensor:
        """Node embeddings ``[N, out]`` float32 from ``g.ndata['features']`` (and ``cluster_features``)."""
        h = g.ndata["features"]
        if self.use_cluster_feat:
            h = torch.cat([h, g.ndata["cluster_features"]], dim=1)
        for conv in self.convs:
            h = self.dropout(torch.relu(conv(g, h)))
        return h

    def edge_logits(self, h: torch.Tensor, src: torch.Tensor, dst: torch.Tensor,
                    edge_x: torch.Tensor | None = None) -> torch.Tensor:
        """Linkage logits ``[E, 2]`` (index 1 = same class) for edges ``src -> dst`` (int64 ``[E]``).

        ``edge_x`` (float32 ``[E, len(edge_features)]``, :func:`edge_inputs`) is required when ``edge_features``
        is not empty.
        """
        z = self.src_mlp(h)[src] + self.dst_mlp(h)[dst]
        if self.sim_mlp is not None:
            z = z + self.sim_mlp(edge_x)
        return self.classifier(z)

    def forward(self, g, edge_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Linkage logits and predicted density.

        Args:
            g: DGL graph with ``features``, ``cluster_features`` (node) and ``affine``, ``raw_affine`` and the
                ``edge_features`` (edge), as :func:`toolkit.cluster.graph.build_graph` makes it.
            edge_ids: optional int64 ``[E']`` edges to score.  Training passes the in-edges of a mini-batch's
                seed nodes: the seeds' densities are then exact (every in-edge of a seed is scored) and the
                linkage head, the costliest part, skips the other edges of the sampled neighbourhood.

        Returns:
            ``(logits [E' or E, 2], pred_den [N])``; ``pred_den`` is exact for nodes whose in-edges are all in
            ``edge_ids`` (0 for nodes with none).
        """
        h = self.node_embeddings(g)
        src, dst = g.edges()
        sim = g.edata["raw_affine"]
        if edge_ids is not None:
            src, dst, sim = src[edge_ids], dst[edge_ids], sim[edge_ids]
        logits = self.edge_logits(h, src, dst, edge_inputs(g, self.edge_features, edge_ids))
        p = torch.softmax(logits, dim=1)
        return logits, edge_density(p[:, 1] - p[:, 0], sim, dst, g.num_nodes())

    @torch.no_grad()
    def predict(self, g, edge_chunk: int = 1 << 20) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference in edge chunks: ``(P_same [E] float32, pred_den [N] float32)``.

        Memory is ``O(N * hidden + edge_chunk * hidden)``, so million-node graphs fit.
        """
        h = self.node_embeddings(g)
        hs, hd = self.src_mlp(h), self.dst_mlp(h)
        src, dst = g.edges()
        edge_x = edge_inputs(g, self.edge_features)
        p_same = torch.empty(src.shape[0], dtype=torch.float32)
        for start in range(0, src.shape[0], edge_chunk):
            chunk = slice(start, start + edge_chunk)
            z = hs[src[chunk]] + hd[dst[chunk]]
            if self.sim_mlp is not None:
                z = z + self.sim_mlp(edge_x[chunk])
            p_same[chunk] = torch.softmax(self.classifier(z), dim=1)[:, 1]
        return p_same, edge_density(2 * p_same - 1, g.edata["raw_affine"], dst, g.num_nodes())


def edge_density(e_hat: torch.Tensor, raw_affine: torch.Tensor, dst: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """``pred_den_i = mean over in-edges of raw_affine * e_hat``; nodes without in-edges get 0.

    Args:
        e_hat: ``[E]`` edge coefficients ``P_same - P_diff`` in ``[-1, 1]``.
        raw_affine: ``[E]`` cosine similarities.
        dst: int64 ``[E]`` destination node of each edge.
        num_nodes: N.

    Returns:
        float32 ``[N]``.
    """
    total = torch.zeros(num_nodes, dtype=e_hat.dtype).index_add_(0, dst, raw_affine * e_hat)
    count = torch.zeros(num_nodes, dtype=e_hat.dtype).index_add_(0, dst, torch.ones_like(e_hat))
    return total / count.clamp_min(1.0)


def lander_loss(logits: torch.Tensor, pred_den: torch.Tensor, g, node_mask: torch.Tensor | None = None,
                edge_mask: torch.Tensor | None = None, balance: bool = True,
                generator: torch.Generator | None = None,
                edge_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Density MSE + linkage cross-entropy on edges toward higher ground-truth density.

    Args:
        logits: ``[E, 2]`` linkage logits; pred_den: ``[N]`` predicted density.
        g: graph with ``ndata['density']`` and ``edata['labels_conn']``, ``edata['mask_conn']``.
        node_mask: bool ``[N]`` nodes whose density enters the loss (mini-batch seeds); all if None.
        edge_mask: bool ``[E]`` edges eligible for the linkage loss (in-edges of seeds); all if None.
        balance: drop random positive or negative eligible edges until both counts are equal.
        generator: RNG for the balancing.
        edge_ids: int64 ``[E']`` when ``logits`` score only these edges (``Lander.forward(g, edge_ids)``);
            ``edge_mask`` then has ``E'`` entries too.

    Returns:
        ``(loss, parts)`` with ``parts = {"density_mse", "conn_ce", "conn_edges"}``.  With no eligible
        edge the loss is the density MSE alone.
    """
    gt = g.ndata["density"]
    if node_mask is not None:
        den_loss = nn.functional.mse_loss(pred_den[node_mask], gt[node_mask])
    else:
        den_loss = nn.functional.mse_loss(pred_den, gt)
    mask = g.edata["mask_conn"].bool()
    labels = g.edata["labels_conn"]
    if edge_ids is not None:
        mask, labels = mask[edge_ids], labels[edge_ids]
    if edge_mask is not None:
        mask = mask & edge_mask
    if balance:
        pos = torch.nonzero(mask & (labels == 1)).flatten()
        neg = torch.nonzero(mask & (labels == 0)).flatten()
        m = min(len(pos), len(neg))
        pos = pos[torch.randperm(len(pos), generator=generator)[:m]]
        neg = neg[torch.randperm(len(neg), generator=generator)[:m]]
        idx = torch.cat([pos, neg])
    else:
        idx = torch.nonzero(mask).flatten()
    if len(idx):
        conn_loss = nn.functional.cross_entropy(logits[idx], labels[idx])
    else:
        conn_loss = torch.zeros((), dtype=logits.dtype)
    loss = den_loss + conn_loss
    return loss, {"density_mse": float(den_loss.detach()), "conn_ce": float(conn_loss.detach()), "conn_edges": len(idx)}


def lander_loss_se(logits: torch.Tensor, pred_den: torch.Tensor, g) -> float:
    """Standard error of :func:`lander_loss`'s unbalanced loss on a whole graph (``balance=False``, no masks).

    The loss is a mean of per-node squared density errors plus a mean of per-edge cross-entropies over the
    eligible edges; its standard error is ``sqrt(var(sq_err) / N + var(ce) / E)`` (sample variances, the
    two means treated as independent; edges sharing nodes are correlated, so this is a lower bound).  Used
    by the one-standard-error selection of the training epoch (``model.train.select_se``; Breiman et al.
    1984, "Classification and Regression Trees", section 3.4.3; Hastie, Tibshirani & Friedman, "The Elements
    of Statistical Learning", section 7.10).

    Args:
        logits: float ``[E, 2]`` linkage logits of every edge of ``g``; pred_den: float ``[N]``.
        g: graph with ``ndata['density']``, ``edata['labels_conn']`` and ``edata['mask_conn']``.

    Returns:
        The standard error in loss units (nats plus squared density), 0.0 when a term has fewer than 2 items.
    """
    def se(values: torch.Tensor) -> float:
        return float(values.var() / len(values)) if len(values) > 1 else 0.0

    sq_err = (pred_den.detach() - g.ndata["density"]) ** 2
    mask = g.edata["mask_conn"].bool()
    ce = nn.functional.cross_entropy(logits.detach()[mask], g.edata["labels_conn"][mask], reduction="none")
    return math.sqrt(se(sq_err) + se(ce))
