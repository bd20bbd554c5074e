"""``clusters.png``: a 2-D t-SNE projection of the test features coloured by predicted cluster (and true class);
``clusters_gallery.png`` (image data): thumbnails of each predicted cluster, one row per cluster."""

from __future__ import annotations

from dataclasses import dataclass
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


# ---------------------------------------------------------------------------------------------------------------
# ``clusters_gallery.png``: a contact sheet of image thumbnails, one row per predicted cluster (image data only)


@dataclass(frozen=True)
class GalleryRow:
    """One row of the gallery: a predicted cluster and the thumbnails sampled from it.

    Attributes:
        cluster: predicted cluster id; size: number of test images in it.
        indices: int64 ``[T]`` (``T = min(per_row, size)``) indices into the images, sampled uniformly without
            replacement, in display order: the majority true class first, then the other classes grouped by class
            (ascending index without labels).  When a cluster is mixed but the draw holds only its majority class
            (and T >= 2), one random image of another class replaces one sampled image, so a mixed row always
            shows a foreign thumbnail.
        majority: the cluster's most frequent true class (ties: the smallest id), None without labels.
        purity: share of the cluster's images of class ``majority`` (over the whole cluster, not the sample).
        num_classes: distinct true classes in the cluster, None without labels.
        foreign: bool ``[T]``, True where the thumbnail's true class is not ``majority`` (all False without labels).
    """

    cluster: int
    size: int
    indices: np.ndarray
    majority: int | None
    purity: float | None
    num_classes: int | None
    foreign: np.ndarray


@dataclass(frozen=True)
class GalleryLayout:
    """Rows of the gallery and what was left out.

    Attributes:
        rows: shown clusters, largest first (ties: the smaller cluster id first).
        num_points: M, all test images; num_clusters: all predicted clusters, singletons included.
        num_singletons: clusters of one image; never shown as rows (a single image is pure by definition).
        omitted: clusters of two or more images beyond ``max_clusters`` (not shown).
    """

    rows: list[GalleryRow]
    num_points: int
    num_clusters: int
    num_singletons: int
    omitted: int


def gallery_rows(pred: np.ndarray, true: np.ndarray | None = None, max_clusters: int = 20, per_row: int = 12,
                 seed: int = 0) -> GalleryLayout:
    """Choose the gallery's rows: the ``max_clusters`` largest non-singleton clusters and their thumbnails.

    Pure (no drawing), deterministic for a given ``seed``.

    Args:
        pred: int ``[M]`` predicted cluster ids (any integers); true: int ``[M]`` true classes or None.
        max_clusters: at most this many rows (>= 0); per_row: at most this many thumbnails a row (>= 1),
            sampled without replacement from the cluster.
        seed: seed of the thumbnail sampling.

    Returns:
        :class:`GalleryLayout`.  M = 0 gives no rows and no clusters.

    Raises:
        ValueError: ``pred`` not 1-D, ``true`` of another length, ``max_clusters < 0`` or ``per_row < 1``.
    """
    pred = np.asarray(pred)
    if pred.ndim != 1:
        raise ValueError(f"pred must be 1-D, got shape {pred.shape}")
    if true is not None:
        true = np.asarray(true)
        if true.shape != pred.shape:
            raise ValueError(f"true has shape {true.shape}, pred {pred.shape}")
    if max_clusters < 0 or per_row < 1:
        raise ValueError(f"need max_clusters >= 0 and per_row >= 1, got {max_clusters} and {per_row}")
    ids, inverse, counts = np.unique(pred, return_inverse=True, return_counts=True)
    order = np.lexsort((ids, -counts))  # largest first, ties by cluster id
    multi = order[counts[order] >= 2]
    shown = multi[:max_clusters]
    by_cluster = np.argsort(inverse, kind="stable")  # member indices grouped by cluster, ascending within one
    starts = np.concatenate([[0], np.cumsum(counts)])
    rng = np.random.default_rng(seed)
    rows = []
    for k in shown:
        members = by_cluster[starts[k]:starts[k + 1]]
        sample = np.sort(rng.choice(members, size=min(per_row, len(members)), replace=False)).astype(np.int64)
        if true is None:
            rows.append(GalleryRow(int(ids[k]), int(counts[k]), sample, None, None, None,
                                   np.zeros(len(sample), dtype=bool)))
            continue
        classes, class_counts = np.unique(true[members], return_counts=True)
        majority = classes[int(np.argmax(class_counts))]
        foreign = true[sample] != majority
        if len(sample) >= 2 and not foreign.any() and len(classes) > 1:
            # mixed cluster but the draw missed the other classes: show one of them in the last slot
            others = members[true[members] != majority]
            sample[-1] = rng.choice(others)
            foreign[-1] = True
        display = np.lexsort((sample, true[sample], foreign))  # majority first, then by class
        rows.append(GalleryRow(int(ids[k]), int(counts[k]), sample[display], int(majority),
                               float(class_counts.max() / len(members)), int(len(classes)), foreign[display]))
    singletons = int((counts == 1).sum())
    return GalleryLayout(rows, int(len(pred)), int(len(ids)), singletons, int(len(multi) - len(shown)))


@dataclass(frozen=True)
class GalleryGeometry:
    """Pixel layout of ``clusters_gallery.png`` (all sizes in pixels).

    A header of ``header_h``, one band of ``row_h`` a row (a single band holding a message when there are no
    rows), a footer of ``footer_h``.  Each thumbnail is scaled to fit ``thumb x thumb`` (integer nearest-neighbour
    upscaling, Lanczos downscaling) inside a frame ``border`` wide.
    """

    thumb: int = 56
    border: int = 3
    gap: int = 4
    label_w: int = 190
    margin: int = 8
    header_h: int = 46
    footer_h: int = 30

    @property
    def cell(self) -> int:
        return self.thumb + 2 * self.border

    @property
    def row_h(self) -> int:
        return self.cell + self.gap

    def frame_box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` of a thumbnail's frame, ``x1``/``y1`` exclusive."""
        x0 = self.margin + self.label_w + col * (self.cell + self.gap)
        y0 = self.header_h + row * self.row_h + self.gap // 2
        return x0, y0, x0 + self.cell, y0 + self.cell

    def size(self, n_rows: int, per_row: int) -> tuple[int, int]:
        """``(min_width, height)`` of the sheet; the width grows when a header or footer line is wider."""
        width = 2 * self.margin + self.label_w + per_row * (self.cell + self.gap) - self.gap
        return width, self.header_h + max(n_rows, 1) * self.row_h + self.footer_h


FRAME_MAJORITY = (170, 170, 170)  # frame of a thumbnail of the cluster's majority class (or with no labels)
FRAME_FOREIGN = (230, 25, 25)  # frame of a thumbnail of another true class: the cluster is mixed


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _font(size: int):
    from PIL import ImageFont

    try:
        import matplotlib

        return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), size)
    except (ImportError, OSError):
        return ImageFont.load_default(size)


def _thumbnail(img: np.ndarray, thumb: int):
    """float ``[C, H, W]`` in [0, 1] -> PIL RGB image fitting ``thumb x thumb``."""
    from PIL import Image

    pixels = np.round(np.clip(np.nan_to_num(img), 0.0, 1.0) * 255).astype(np.uint8)
    pil = Image.fromarray(pixels[0] if len(pixels) == 1 else np.ascontiguousarray(pixels.transpose(1, 2, 0)))
    h, w = pixels.shape[1:]
    if max(h, w) <= thumb:
        f = thumb // max(h, w)
        pil = pil.resize((w * f, h * f), Image.Resampling.NEAREST)
    else:
        f = thumb / max(h, w)
        pil = pil.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.LANCZOS)
    return pil.convert("RGB")


def plot_gallery(images: np.ndarray, pred: np.ndarray, true: np.ndarray | None, path: Path,
                 max_clusters: int = 20, per_row: int = 12, seed: int = 0,
                 geometry: GalleryGeometry | None = None) -> GalleryLayout:
    """Write ``clusters_gallery.png``: one row of thumbnails per predicted cluster, largest clusters first.

    Each row is labelled with the cluster id, its size and, when true labels exist, its purity (share of the
    majority true class) and number of true classes; thumbnails of another true class than the majority get a
    red frame (:data:`FRAME_FOREIGN`), so a mixed cluster shows at a glance.  Singleton clusters are not shown;
    the footer counts them and the clusters beyond ``max_clusters``.  Images are shown as the encoder sees them
    (e.g. Omniglot inverted: white strokes on black).  Rows are chosen by :func:`gallery_rows`.

    Args:
        images: float32 ``[M, C, H, W]`` in [0, 1] (values outside are clipped), C = 1 (grey) or 3 (RGB).
        pred: int ``[M]`` predicted cluster ids; true: int ``[M]`` true classes or None.
        path: output PNG path.
        max_clusters: at most this many rows; per_row: at most this many thumbnails a row; seed: sampling seed.
        geometry: pixel layout (default :class:`GalleryGeometry`).

    Returns:
        The :class:`GalleryLayout` drawn.  M = 0, or only singletons, writes a sheet with a message instead of rows.

    Raises:
        ValueError: ``images`` not ``[M, 1 or 3, H, W]``, lengths of ``images``/``pred``/``true`` differ, or the
            arguments of :func:`gallery_rows` are invalid.
    """
    from PIL import Image, ImageDraw

    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be [M, C, H, W] with C = 1 or 3, got shape {images.shape}")
    if len(images) != len(pred):
        raise ValueError(f"{len(images)} images but {len(pred)} predicted labels")
    layout = gallery_rows(pred, true, max_clusters, per_row, seed)
    g = geometry or GalleryGeometry()
    title, small = _font(15), _font(13)
    m, k = layout.num_points, layout.num_clusters
    header = [f"{_plural(m, 'test image')} in {_plural(k, 'predicted cluster')}: one row per cluster, largest first, "
              f"up to {per_row} random thumbnails each",
              "red frame: not the cluster's majority true class" if true is not None else
              "no true labels: purity unknown"]
    shown = len(layout.rows)
    footer = f"showing {shown} of {k} clusters"
    if layout.omitted:
        footer += f"; {_plural(layout.omitted, 'smaller cluster')} omitted (gallery_max_clusters={max_clusters})"
    if layout.num_singletons:
        footer += f"; {_plural(layout.num_singletons, 'singleton cluster')} not shown"
    min_w, height = g.size(shown, per_row)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max(probe.textlength(s, font=f) for s, f in ((header[0], title), (header[1], small), (footer, small)))
    sheet = Image.new("RGB", (max(min_w, int(text_w) + 2 * g.margin), height), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((g.margin, 6), header[0], fill="black", font=title)
    draw.text((g.margin, 26), header[1], fill=FRAME_FOREIGN if true is not None else "black", font=small)
    if not layout.rows:
        message = "no test images" if m == 0 else f"all {k} clusters are singletons: nothing to show"
        draw.text((g.margin, g.header_h + g.row_h // 2 - 8), message, fill="black", font=small)
    for r, row in enumerate(layout.rows):
        y = g.header_h + r * g.row_h
        if r:
            draw.line([(g.margin, y), (sheet.width - g.margin, y)], fill=(225, 225, 225))
        lines = [(f"cluster {row.cluster}", "black"), (f"{row.size} images", "black")]
        if row.purity is not None:
            lines.append((f"purity {row.purity:.2f}, {row.num_classes} class{'es' if row.num_classes != 1 else ''}",
                          "black" if row.num_classes == 1 else FRAME_FOREIGN))
        top = y + (g.row_h - 17 * len(lines)) // 2
        for i, (text, colour) in enumerate(lines):
            draw.text((g.margin, top + 17 * i), text, fill=colour, font=small)
        for c, (idx, foreign) in enumerate(zip(row.indices, row.foreign, strict=True)):
            x0, y0, x1, y1 = g.frame_box(r, c)
            draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=FRAME_FOREIGN if foreign else FRAME_MAJORITY)
            draw.rectangle([x0 + g.border, y0 + g.border, x1 - 1 - g.border, y1 - 1 - g.border], fill="black")
            pil = _thumbnail(images[idx], g.thumb)
            sheet.paste(pil, (x0 + g.border + (g.thumb - pil.width) // 2, y0 + g.border + (g.thumb - pil.height) // 2))
    draw.text((g.margin, height - g.footer_h + 8), footer, fill="black", font=small)
    sheet.save(path)
    return layout
