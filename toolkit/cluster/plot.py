"""``clusters.png``: a 2-D t-SNE projection of the test features coloured by predicted cluster (and true class)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_clusters(x: np.ndarray, pred: np.ndarray, true: np.ndarray | None, path: Path,
                  max_points: int = 3000, seed: int = 0) -> None:
    """Write the projection figure.

    Args:
        x: float32 ``[M, D]`` test features; pred: int64 ``[M]`` predicted clusters;
        true: int64 ``[M]`` true classes or None (then one panel).
        path: output PNG path.
        max_points: random subsample size for the projection (t-SNE is O(M log M) but slow above ~10k).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(x), size=min(max_points, len(x)), replace=False))
    xs = x[idx]
    if xs.shape[1] > 50:
        xs = PCA(n_components=50, random_state=seed).fit_transform(xs)
    if len(xs) > 5:
        emb = TSNE(n_components=2, init="pca", random_state=seed,
                   perplexity=float(min(30, max(2, (len(xs) - 1) // 3)))).fit_transform(xs)
    else:
        emb = np.c_[xs[:, 0], xs[:, min(1, xs.shape[1] - 1)]]
    panels = [("predicted clusters", pred[idx])] + ([("true classes", true[idx])] if true is not None else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 5.5), squeeze=False)
    for ax, (title, lab) in zip(axes[0], panels, strict=True):
        _, colour = np.unique(lab, return_inverse=True)
        ax.scatter(emb[:, 0], emb[:, 1], c=colour % 20, cmap="tab20", s=4, linewidths=0)
        ax.set_title(f"{title} ({len(np.unique(lab))})")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"t-SNE of {len(idx)} of {len(x)} test points")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
