"""Readers, tokenizer, vocabulary and word-vector loading."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import shared_data
from toolkit.compress.text import (
    Vocabulary,
    load_word_vectors,
    make_tokenizer,
    read_label_lines,
    read_snips,
    read_split,
)
from toolkit.errors import InputError


def test_label_lines_and_errors(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("1 a fine film\n\n0 a bad one\n")
    split = read_label_lines(p, int_labels=True)
    assert split.labels == ["1", "0"] and split.texts == ["a fine film", "a bad one"]
    p.write_text("1 ok\nthis line has no label\n")
    with pytest.raises(InputError, match="line 2"):
        read_label_lines(p, int_labels=True)
    p.write_text("1 ok\n0\n")
    with pytest.raises(InputError, match="line 2"):
        read_label_lines(p)
    p.write_text("\n\n")
    with pytest.raises(InputError, match="empty dataset"):
        read_label_lines(p)


def test_tables(tmp_path):
    c = tmp_path / "a.csv"
    c.write_text('sentence,y\n"hello, world",greet\nbye now,leave\n')
    s = read_split(c, text_column="sentence", label_column="y")
    assert s.texts == ["hello, world", "bye now"] and s.labels == ["greet", "leave"]
    with pytest.raises(InputError, match="column not found"):
        read_split(c, text_column="text", label_column="y")
    t = tmp_path / "a.tsv"
    t.write_text("text\tlabel\nhi there\tx\n")
    assert read_split(t).labels == ["x"]
    j = tmp_path / "a.jsonl"
    j.write_text(json.dumps({"text": "a b", "label": 3}) + "\n" + json.dumps({"text": "c", "label": ""}) + "\n")
    with pytest.raises(InputError, match="line 2.*no label"):
        read_split(j)


def test_snips_folder(tmp_path):
    (tmp_path / "seq.in").write_text("play some jazz\nweather today\n")
    (tmp_path / "label").write_text("PlayMusic\nGetWeather\n")
    s = read_snips(tmp_path)
    assert s.labels == ["PlayMusic", "GetWeather"]
    (tmp_path / "label").write_text("PlayMusic\n")
    with pytest.raises(InputError, match="line-aligned"):
        read_snips(tmp_path)


def test_tokenizer_and_vocabulary():
    tok = make_tokenizer()
    assert tok("It's a GREAT film, really!") == ["it's", "a", "great", "film", ",", "really", "!"]
    vocab = Vocabulary.build([["a", "b", "a"], ["a", "c", "b"]], min_freq=2)
    assert vocab.itos == ["<pad>", "<unk>", "a", "b"]
    assert Vocabulary.build([["a", "b", "a"], ["c"]], max_size=1).itos == ["<pad>", "<unk>", "a"]
    x = vocab.encode([["a", "z", "b"], [], ["b"] * 5], max_len=3)
    assert x.tolist() == [[2, 1, 3], [1, 0, 0], [3, 3, 3]]


def test_word_vectors_coverage_and_errors(tmp_path):
    vocab = Vocabulary(["<pad>", "<unk>", "good", "bad", "zzz", "Paris"])
    p = tmp_path / "v.txt"
    p.write_text("good 1 2 3\nbad 4 5 6\nparis 7 8 9\nother 0 0 1\n")
    table, cov = load_word_vectors(p, vocab, token_counts=np.array([0, 2, 3, 1, 4, 0]))
    assert table.shape == (6, 3) and table.dtype == np.float32
    assert table[2].tolist() == [1, 2, 3] and table[5].tolist() == [7, 8, 9]  # lower-case fallback
    assert np.all(table[0] == 0)
    assert cov["found"] == 3 and cov["vocab_coverage"] == pytest.approx(3 / 4)
    assert cov["train_token_coverage"] == pytest.approx(4 / 10)
    with pytest.raises(InputError, match="embedding_dim is 5"):
        load_word_vectors(p, vocab, expected_dim=5)
    p.write_text("good 1 2 3\nbad 4 5\n")
    with pytest.raises(InputError, match="line 2: ragged"):
        load_word_vectors(p, vocab)


def test_shared_glove_partial_file_loads():
    path = shared_data("glove", "glove.6B.50d.top2446.txt")
    vocab = Vocabulary(["<pad>", "<unk>", "the", "movie", "qwertyuiopasdf"])
    table, cov = load_word_vectors(path, vocab)
    assert table.shape == (5, 50) and cov["found"] == 2
    assert cov["undecodable_rows"] == 5  # raw cp1252 bytes (0x96, 0x92, 0x97, 0x93, 0x94) among UTF-8 rows


def test_shared_trec_train_is_latin1():
    path = shared_data("text", "trec", "TREC.train.all")
    with pytest.raises(InputError, match="line 66: byte 0xf0 .* set data.encoding=latin-1"):
        read_split(path, int_labels=True)
    assert any("sister\u00f0city" in t for t in read_split(path, int_labels=True, encoding="latin-1").texts)


def test_shared_text_formats_read():
    assert len(read_split(shared_data("text", "trec", "TREC.test.all"), int_labels=True).texts) == 500
    assert len(read_split(shared_data("text", "snips", "valid")).texts) == 700
