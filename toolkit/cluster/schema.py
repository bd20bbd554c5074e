"""Declared value constraints of ``toolkit cluster`` (``configs/cluster/``), checked by :func:`toolkit.validation.validate`."""

from __future__ import annotations

from toolkit.models.zoo import ZOO_TARGETS
from toolkit.validation import Check, boolean, choice, either, fraction, int_list, integer, number

METHODS = ("hilander", "kmeans", "hac", "dbscan", "hdbscan", "auto")
EDGE_FEATURE_NAMES = ("cosine", "nbr_cosine", "snn_jaccard")  # = toolkit.cluster.model.EDGE_FEATURES (tested)

CHECKS: list[Check] = [
    choice("method", METHODS),
    integer("seed", 0), integer("threads", 1, null=True),
    boolean("plot"), integer("plot_max_points", 1), integer("gallery_max_clusters", 1), integer("gallery_per_row", 1),
    integer("baselines.kmeans_k", 2, null=True),
    choice("baselines.tune_metric", ("pairwise_f", "bcubed_f")),
    integer("baselines.tune_max_points", 10),
    number("baselines.hac_distance", 0.0, lo_open=True, null=True),
    number("baselines.dbscan_eps", 0.0, lo_open=True, null=True),
    integer("baselines.hdbscan_min_cluster_size", 2, null=True),
    Check("model.hidden", "an even integer >= 2", lambda v: isinstance(v, int) and v >= 2 and v % 2 == 0),
    integer("model.num_conv", 1, 4),
    boolean("model.use_gat"), integer("model.gat_heads", 1), boolean("model.use_cluster_feat"),
    number("model.dropout", 0.0, 1.0, hi_open=True),
    Check("model.edge_features", "a list of distinct names from " + ", ".join(EDGE_FEATURE_NAMES),
          lambda v: isinstance(v, list) and len(set(v)) == len(v) and all(n in EDGE_FEATURE_NAMES for n in v)),
    choice("model.knn_on", ("peak", "cluster")),
    integer("model.knn.exact_max_points", 0), integer("model.knn.hnsw_m", 2),
    integer("model.knn.hnsw_ef_search", 1), integer("model.knn.hnsw_ef_construction", 1),
    int_list("model.train.knn_k", 2), int_list("model.train.levels", 1),
    integer("model.train.epochs", 1), integer("model.train.min_steps", 0),
    number("model.train.lr", 0.0, lo_open=True), number("model.train.momentum", 0.0, 1.0, hi_open=True),
    number("model.train.weight_decay", 0.0), integer("model.train.batch_size", 1),
    fraction("model.train.decode_keep", hi_open=False), boolean("model.train.rotate"), boolean("model.train.balance"),
    number("model.train.val_fraction", 0.0, 1.0, hi_open=True),
    choice("model.train.tau_on", ("all", "heldout")), boolean("model.train.select_best"),
    number("model.train.select_se", 0.0), integer("model.train.select_patience", 0), choice("model.train.select_on", ("hierarchy", "level0")),
    boolean("model.train.refit"),
    integer("model.infer.knn_k", 2),
    either(choice("model.infer.tau", ("auto",)), fraction("model.infer.tau", lo_open=False)),
    either(choice("model.infer.tau_upper", ("same", "auto")), fraction("model.infer.tau_upper", lo_open=False)),
    choice("model.infer.threshold", ("prob", "sim")), integer("model.infer.max_levels", 1),
    boolean("model.infer.early_stop"), integer("model.infer.diagnostics_max_points", 0),
    boolean("model.infer.oracle_tau"), choice("model.infer.singletons", ("keep", "attach")),
    choice("model.infer.fragment_rule", ("vote", "cohesion")),
    either(choice("model.infer.min_cluster_fraction", ("auto",)),
           number("model.infer.min_cluster_fraction", 0.0, 1.0, hi_open=True)),
    choice("encoder.arch", ("dlib-face",)), integer("encoder.embed_dim", 1),   # encoder=dlib-face
    choice("encoder.network._target_", tuple(ZOO_TARGETS)),                   # encoder=cnn: a shared zoo network
    *(integer(f"encoder.network.{k}", 1) for k in ("embed_dim", "width", "hidden", "depth", "blocks",
                                                   "blocks_per_stage")),
    number("encoder.network.dropout", 0.0, 1.0, hi_open=True),
    integer("encoder.epochs", 1),
    integer("encoder.batch_size", 1), number("encoder.lr", 0.0, lo_open=True), number("encoder.weight_decay", 0.0),
    integer("encoder.shift_pixels", 0), choice("encoder.head", ("linear", "cosine")),
    number("encoder.scale", 0.0, lo_open=True), number("encoder.margin", 0.0, 1.0, hi_open=True),
    fraction("encoder.class_fraction", hi_open=False),
    choice("encoder.split_by", ("group", "class")),
    boolean("encoder.detect"), integer("encoder.upsample", 0), integer("encoder.num_jitters", 0),
    number("encoder.padding", 0.0), integer("encoder.min_size", 1), integer("encoder.workers", 0),
    choice("data.kind", ("digits", "features", "images")),
    integer("data.image_size", 1), boolean("data.invert"), boolean("data.drop_seen_groups"),
    boolean("data.test_unlabelled"), integer("data.feature_dim", 1, null=True),
]
