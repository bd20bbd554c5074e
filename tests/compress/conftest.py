"""Tiny text-classification files for the compress tests."""

from __future__ import annotations

import random

import pytest

POS = ["good", "great", "fine", "superb", "lovely"]
NEG = ["bad", "awful", "poor", "terrible", "dull"]
FILL = ["the", "movie", "was", "a", "plot", "and", "acting", "very", "film", "story"]


def make_lines(n: int, seed: int) -> list[str]:
    """``LABEL sentence`` lines where the label is decided by a sentiment word."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        y = rng.randint(0, 1)
        words = rng.sample(FILL, 4) + [rng.choice(POS if y else NEG)]
        rng.shuffle(words)
        out.append(f"{y} {' '.join(words)}")
    return out


@pytest.fixture
def tiny_text(tmp_path):
    """Paths of a tiny train/test pair and a 4-d vectors file covering part of the vocabulary."""
    train = tmp_path / "train.txt"
    test = tmp_path / "test.txt"
    train.write_text("\n".join(make_lines(120, 0)) + "\n")
    test.write_text("\n".join(make_lines(40, 1)) + "\n")
    vec = tmp_path / "vec.txt"
    rng = random.Random(2)
    vec.write_text("".join(f"{w} " + " ".join(f"{rng.uniform(-1, 1):.3f}" for _ in range(4)) + "\n"
                           for w in POS + NEG + ["the", "unused"]))
    return {"train": train, "test": test, "vectors": vec, "dir": tmp_path}


def fast_overrides(paths: dict, out) -> list[str]:
    """Overrides that make a full compress run take a couple of seconds."""
    return ["data=text", f"data.train={paths['train']}", f"data.test={paths['test']}", "data.int_labels=true",
            f"data.vectors={paths['vectors']}", "model=dan", "pretrain.epochs=2", "finetune.epochs=1",
            "batch_size=16", "eval.latency_repeats=1", f"output_dir={out}", "pretrain.lr=0.01",
            "scheduler.max_lr=0.01"]
