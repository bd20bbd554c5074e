"""lr_schedule.png and tradeoff.png are written (PNG files)."""

from __future__ import annotations

from toolkit.compress.plots import plot_lr_schedule, plot_tradeoff


def test_plots_write_png(tmp_path):
    plot_lr_schedule(tmp_path / "lr.png", [1e-3, 5e-4, 1e-4, 5e-4], steps_per_epoch=2, title="calr")
    plot_tradeoff(tmp_path / "t.png", {"svd finetune": [(0.9, 0.8), (0.5, 0.85)], "quantize int8": [(0.71, 0.86)]},
                  0.86, "dan")
    for name in ("lr.png", "t.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
