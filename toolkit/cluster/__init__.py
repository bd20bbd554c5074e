"""``toolkit cluster``: Hi-LANDER hierarchical GNN clustering (Xing et al., ICCV 2021) and baselines.

Modules:
    knn: faiss kNN graphs (exact inner product or HNSW).
    graph: kNN lists -> DGL graphs with edge affinities, ground-truth density and edge labels.
    model: the LANDER GNN (graph conv, edge head, density from edge predictions, loss).
    hierarchy: per-level decoding, super-node construction, training hierarchies and inference.
    lightning: the LightningModule that trains LANDER on multi-level graphs.
    baselines: k-means, HAC, DBSCAN, HDBSCAN with thresholds tuned on meta-training data.
    metrics: pairwise F, BCubed F, NMI, ARI, cluster counts.
    features: turning ``cfg.data`` into meta-training and test feature matrices (images via a CNN encoder).
    command: the ``run(cfg, run)`` entry point of the CLI.

DGL is imported only inside this package.
"""

import os

os.environ.setdefault("DGLBACKEND", "pytorch")
