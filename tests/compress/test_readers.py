"""The data readers of issue 13 ("Data"), each on a small real-format file written here.

Byte-order marks, headerless CSV, encodings, U+2028 inside lines, ``~`` / ``$VAR`` paths, gzip and zip
(``glove.6B.zip`` layout) vectors, tokens with spaces (glove.840B), carving valid/test from one file, and test/valid
labels unseen in training.
"""

from __future__ import annotations

import codecs
import gzip
import json
import random
import zipfile

import numpy as np
import pytest

from tests.compress.conftest import NEG, POS, fast_overrides, make_lines
from tests.conftest import bad_input_line
from toolkit.cli import app
from toolkit.compress import pipeline as P
from toolkit.compress.files import expand_path
from toolkit.compress.metrics import classification_metrics
from toolkit.compress.splits import carve
from toolkit.compress.text import TextSplit, Vocabulary, load_word_vectors, read_snips, read_split
from toolkit.errors import InputError


def _bad(runner, args, out, *needles):
    return bad_input_line(runner.invoke(app, ["compress", *args]), out, *needles)


def _ok(runner, args):
    """A successful tiny run (p = 0.5 so the 4-d table keeps rank >= 1; no baselines): the JSON document."""
    result = runner.invoke(app, ["compress", *args, "compression=0.5", "baselines.enabled=false", "--json"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _vec_lines(words, dim, seed=0):
    rng = random.Random(seed)
    return [f"{w} " + " ".join(f"{rng.uniform(-1, 1):.4f}" for _ in range(dim)) for w in words]


# --- byte-order marks ---------------------------------------------------------------------------------------

def test_bom_is_skipped_in_csv_tsv_lines_jsonl_and_snips(tmp_path):
    bom = codecs.BOM_UTF8
    c = tmp_path / "a.csv"
    c.write_bytes(bom + b"sentence,intent\nbook a flight,flight\nwhat is the fare,airfare\n")
    s = read_split(c, text_column="sentence", label_column="intent")  # was "column not found"
    assert s.texts == ["book a flight", "what is the fare"] and s.labels == ["flight", "airfare"]
    t = tmp_path / "a.tsv"
    t.write_bytes(bom + b"text\tlabel\r\nhi there\tgreet\r\n")
    assert read_split(t).labels == ["greet"]
    lines = tmp_path / "a.txt"
    lines.write_bytes(bom + b"1 a fine film\n0 a dull one\n")
    assert read_split(lines, int_labels=True).labels == ["1", "0"]  # not '\ufeff1'
    j = tmp_path / "a.jsonl"
    j.write_bytes(bom + json.dumps({"text": "a b", "label": "x"}).encode() + b"\n")
    assert read_split(j).texts == ["a b"]
    (tmp_path / "seq.in").write_bytes(bom + b"play jazz\n")
    (tmp_path / "label").write_bytes(bom + b"PlayMusic\n")
    assert read_snips(tmp_path).labels == ["PlayMusic"]


# --- headerless CSV with column indices ---------------------------------------------------------------------

def test_headerless_csv_with_column_indices(tmp_path):
    c = tmp_path / "atis.csv"
    c.write_text('flight,"show me flights, from boston"\nairfare,what is the fare\n')
    s = read_split(c, text_column=1, label_column=0, header=False)
    assert s.texts == ["show me flights, from boston", "what is the fare"] and s.labels == ["flight", "airfare"]
    assert read_split(c, text_column="1", label_column="0", header=False).labels == ["flight", "airfare"]
    with pytest.raises(InputError, match=r"data.text_column: 'text' names a column but data.header=false"):
        read_split(c, header=False)
    with pytest.raises(InputError, match=r"atis.csv: line 1: 2 fields, no column index 5 \(data.label_column\)"):
        read_split(c, text_column=1, label_column=5, header=False)
    h = tmp_path / "h.csv"
    h.write_text("id,sentence,y\n1,hello there,greet\n")
    assert read_split(h, text_column=1, label_column=2).texts == ["hello there"]  # index with a header row


def test_headerless_csv_with_a_bom_end_to_end(runner, tiny_text):
    rows = [line.split(" ", 1) for line in make_lines(120, 0)]
    train = tiny_text["dir"] / "train.csv"
    train.write_bytes(codecs.BOM_UTF8 + "".join(f'{y},"{t}, indeed"\r\n' for y, t in rows).encode())
    out = tiny_text["dir"] / "out"
    args = [a for a in fast_overrides(tiny_text, out) if not a.startswith(("data.train=", "data.int_labels"))]
    args += [f"data.train={train}", "data.header=false"]
    _bad(runner, args, out, "data.text_column: 'text' names a column but data.header=false", "data.text_column=0")
    doc = _ok(runner, [*args, "data.text_column=1", "data.label_column=0"])
    assert doc["metrics"]["data"]["train"] == 108 and doc["metrics"]["data"]["classes"] == 2


def test_quoted_csv_field_spanning_lines_keeps_line_numbers(tmp_path):
    c = tmp_path / "a.csv"
    c.write_text('text,label\n"two\nlines",a\nthird,\n')
    with pytest.raises(InputError, match="a.csv: line 4: no label"):
        read_split(c)


# --- encodings ----------------------------------------------------------------------------------------------

def test_latin1_file_read_as_utf8_names_file_line_and_option(tmp_path):
    p = tmp_path / "train.txt"
    p.write_bytes("1 a fine film\n0 a dull caf\u00e9 scene\n".encode("latin-1"))
    with pytest.raises(InputError) as err:
        read_split(p)
    msg = str(err.value)
    assert msg.startswith(f"{p}: line 2: byte 0xe9 at column 13 is not valid utf-8") and "data.encoding=latin-1" in msg
    assert read_split(p, encoding="latin-1").texts[1] == "a dull caf\u00e9 scene"  # no replacement character


def test_latin1_csv_run_exits_2_and_latin1_option_reads_it(runner, tiny_text):
    train = tiny_text["dir"] / "train.csv"
    rows = [line.split(" ", 1) for line in make_lines(60, 0)]
    train.write_bytes(("text,label\n" + "".join(f"{t} na\u00efve,{y}\n" for y, t in rows)).encode("latin-1"))
    out = tiny_text["dir"] / "out"
    args = [a for a in fast_overrides(tiny_text, out) if not a.startswith(("data.train=", "data.int_labels"))]
    _bad(runner, [*args, f"data.train={train}"], out, "train.csv: line 2:", "not valid utf-8",
         "data.encoding=latin-1")
    _ok(runner, [*args, f"data.train={train}", "data.encoding=latin-1"])


def test_unknown_encoding_is_a_config_error(runner, tiny_text):
    out = tiny_text["dir"] / "out"
    _bad(runner, [*fast_overrides(tiny_text, out), "data.encoding=klingon"], out,
         "config: data.encoding: got 'klingon'; expected a Python codec name")


def test_utf16_file_with_its_bom(tmp_path):
    p = tmp_path / "a.tsv"
    p.write_bytes("text\tlabel\nn\u00e4he\tx\n".encode("utf-16"))
    assert read_split(p, encoding="utf-16").texts == ["n\u00e4he"]


# --- lines end at \n only -----------------------------------------------------------------------------------

def test_line_separators_inside_a_sentence_do_not_break_alignment(tmp_path):
    # str.splitlines splits at U+2028, U+2029, U+0085, \x0b, \x0c and \x1c-\x1e; files split at \n only
    odd = "\u2028\u2029\x85\x0b\x0c\x1c"
    (tmp_path / "seq.in").write_text(f"play some{odd}jazz\nweather today\n", encoding="utf-8")
    (tmp_path / "label").write_text("PlayMusic\nGetWeather\n")
    s = read_snips(tmp_path)  # was: 2 labels for 8 lines of seq.in
    assert s.labels == ["PlayMusic", "GetWeather"] and s.texts[0] == f"play some{odd}jazz"
    p = tmp_path / "a.txt"
    p.write_text("1 one\u2028two\n0 three\n", encoding="utf-8")
    assert read_split(p, int_labels=True).texts == ["one\u2028two", "three"]
    c = tmp_path / "a.csv"
    c.write_text("text,label\nx\u2028y,a\nz,b\n", encoding="utf-8")
    assert read_split(c).labels == ["a", "b"]


# --- ~ and $VAR in paths ------------------------------------------------------------------------------------

def test_home_and_environment_variables_in_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("MYDATA", str(tmp_path / "d"))
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("1 hello\n")
    for form in ("~/d/a.txt", "$HOME/d/a.txt", "${MYDATA}/a.txt", "$MYDATA/a.txt"):
        assert read_split(form).labels == ["1"], form
    assert expand_path("~/x", "k") == tmp_path / "x"
    with pytest.raises(InputError, match=r"data.test: \$NOT_SET_ANYWHERE/a.txt: environment variable "
                                         r"\$NOT_SET_ANYWHERE is not set"):
        read_split("$NOT_SET_ANYWHERE/a.txt", key="data.test")
    vec = tmp_path / "d" / "v.txt"
    vec.write_text("hello 1 2\n")
    table, _ = load_word_vectors("~/d/v.txt", Vocabulary(["<pad>", "<unk>", "hello"]))
    assert table[2].tolist() == [1, 2]


def test_quoted_home_and_env_paths_on_the_command_line(runner, tiny_text, monkeypatch):
    monkeypatch.setenv("HOME", str(tiny_text["dir"]))
    monkeypatch.setenv("TINY", str(tiny_text["dir"]))
    out = tiny_text["dir"] / "out"
    args = [a for a in fast_overrides(tiny_text, out) if not a.startswith(("data.train=", "data.vectors="))]
    doc = _ok(runner, [*args, "data.train='~/train.txt'", "data.vectors=$TINY/vec.txt"])
    assert doc["metrics"]["data"]["train"] == 108


def test_unquoted_home_path_on_the_command_line(runner, tiny_text, monkeypatch):
    monkeypatch.setenv("HOME", str(tiny_text["dir"]))
    out = tiny_text["dir"] / "out"
    args = [a for a in fast_overrides(tiny_text, out) if not a.startswith("data.train=")]
    result = runner.invoke(app, ["compress", *args, "data.train=~/train.txt", "compression=0.5",
                                 "baselines.enabled=false"])
    assert result.exit_code == 0, result.stderr  # toolkit.config.quote_home quotes the value for Hydra


# --- word vectors: gzip, zip, tokens with spaces, odd bytes -------------------------------------------------

VOCAB = Vocabulary(["<pad>", "<unk>", "good", "bad", "the"])


def test_gzip_vectors(tmp_path):
    p = tmp_path / "glove.6B.4d.txt.gz"
    with gzip.open(p, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(_vec_lines(["the", "good", "bad", "x"], 4)) + "\n")
    table, cov = load_word_vectors(p, VOCAB)
    assert table.shape == (5, 4) and cov["found"] == 3 and cov["source"] == str(p)
    p.write_bytes(p.read_bytes()[:-12])  # truncated download
    with pytest.raises(InputError, match="glove.6B.4d.txt.gz: corrupt or truncated compressed data"):
        load_word_vectors(p, VOCAB)


def _glove_zip(path, dims=(4, 6, 8)):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for d in dims:
            z.writestr(f"glove.6B.{d}d.txt", "\n".join(_vec_lines(["the", "good", "bad"], d, seed=d)) + "\n")


def test_zip_with_several_members_like_glove_6b(tmp_path):
    p = tmp_path / "glove.6B.zip"
    _glove_zip(p)
    table, cov = load_word_vectors(p, VOCAB, expected_dim=6)  # the member named 6d
    assert table.shape == (5, 6) and cov["source"] == f"{p}:glove.6B.6d.txt"
    table, _ = load_word_vectors(p, VOCAB, member="glove.6B.8d.txt")
    assert table.shape == (5, 8)
    with pytest.raises(InputError, match=r"glove.6B.zip: data.vectors_member: the archive holds 3 vector files "
                                         r"\['glove.6B.4d.txt', 'glove.6B.6d.txt', 'glove.6B.8d.txt'\]"):
        load_word_vectors(p, VOCAB)
    with pytest.raises(InputError, match="no member 'glove.6B.5d.txt'"):
        load_word_vectors(p, VOCAB, member="glove.6B.5d.txt")
    with pytest.raises(InputError, match="glove.6B.8d.txt: dimension: vectors have 8 values"):
        load_word_vectors(p, VOCAB, expected_dim=4, member="glove.6B.8d.txt")
    one = tmp_path / "one.zip"
    _glove_zip(one, dims=(4,))
    assert load_word_vectors(one, VOCAB)[0].shape == (5, 4)


def test_zip_vectors_end_to_end_pick_the_member_by_embedding_dim(runner, tiny_text):
    p = tiny_text["dir"] / "glove.6B.zip"
    with zipfile.ZipFile(p, "w") as z:
        for d in (4, 6):
            z.writestr(f"glove.6B.{d}d.txt", "\n".join(_vec_lines(POS + NEG + ["the"], d)) + "\n")
    out = tiny_text["dir"] / "out"
    args = [a for a in fast_overrides(tiny_text, out) if not a.startswith("data.vectors=")]
    _bad(runner, [*args, f"data.vectors={p}"], out, "glove.6B.zip: data.vectors_member:", "model.embedding_dim=D")
    doc = _ok(runner, [*args, f"data.vectors={p}", "model.embedding_dim=6"])
    m = doc["metrics"]
    assert m["embedding_shape"][1] == 6 and m["data"]["vectors"]["source"].endswith("glove.6B.zip:glove.6B.6d.txt")


def test_tokens_with_spaces_split_from_the_right(tmp_path):
    p = tmp_path / "glove.840B.4d.txt"
    rows = _vec_lines([",", "the", "good"], 4) + _vec_lines([". . .", "at&t com", "bad"], 4, seed=1)
    p.write_text("\n".join(rows) + "\n")
    table, cov = load_word_vectors(p, VOCAB)  # was: ragged row
    assert cov["tokens_with_spaces"] == 2 and cov["found"] == 3 and table.shape == (5, 4)
    assert table[3].tolist() == pytest.approx([float(v) for v in rows[5].split(" ")[1:]])
    header = tmp_path / "w2v.txt"
    header.write_text("3 4\n" + "\n".join(_vec_lines(["new york", "good", "bad"], 4)) + "\n")
    assert load_word_vectors(header, VOCAB)[1]["tokens_with_spaces"] == 1
    short = tmp_path / "short.txt"
    short.write_text("\n".join(_vec_lines(["the", "good"], 4) + ["bad 1 2 3"]) + "\n")
    with pytest.raises(InputError, match="short.txt: line 3: ragged row: 3 values, expected 4"):
        load_word_vectors(short, VOCAB)


def test_vector_rows_with_stray_bytes_are_skipped_and_counted(tmp_path):
    # Stanford's glove.6B files hold a few raw cp1252 bytes (0x96, 0x92) among UTF-8 rows
    p = tmp_path / "v.txt"
    good = "\n".join(_vec_lines(["the", "good", "bad", "caf\u00e9"] + [f"w{i}" for i in range(200)], 4))
    p.write_bytes(good.encode() + b"\n\x96 0.1 0.2 0.3 0.4\n")
    table, cov = load_word_vectors(p, VOCAB)
    assert cov["undecodable_rows"] == 1 and cov["found"] == 3
    bad = tmp_path / "latin.txt"  # a whole Latin-1 file is not silently half-read
    bad.write_bytes("\n".join(_vec_lines([f"caf\u00e9{i}" for i in range(10)] + ["good"], 4)).encode("latin-1"))
    with pytest.raises(InputError, match="latin.txt: line 1: 10 of 11 rows are not valid utf-8: set "
                                         "data.vectors_encoding"):
        load_word_vectors(bad, VOCAB)
    assert load_word_vectors(bad, VOCAB, encoding="latin-1")[1]["found"] == 1


# --- carving valid/test from one file -----------------------------------------------------------------------

def _split(n_per_class):
    labels = [c for c, n in n_per_class.items() for _ in range(n)]
    return TextSplit([f"text {i}" for i in range(len(labels))], labels, "one.txt")


def test_carve_unstratified_valid_only_is_the_earlier_split():
    s = _split({"a": 50, "b": 30, "c": 20})
    train, valid, test = carve(s, None, 0.1, stratify=False, seed=3)
    order = np.random.default_rng(3).permutation(100)  # the split before data.test_fraction existed
    assert test is None and valid.texts == [s.texts[i] for i in order[:10]]
    assert train.texts == [s.texts[i] for i in order[10:]]


def test_carve_test_and_valid_stratified_with_a_seed():
    s = _split({"a": 60, "b": 30, "c": 9, "d": 1})
    train, valid, test = carve(s, 0.2, 0.1, stratify=True, seed=0)
    assert (len(train.labels), len(valid.labels), len(test.labels)) == (70, 10, 20)
    assert {y: test.labels.count(y) for y in "abc"} == {"a": 12, "b": 6, "c": 2}
    assert "d" in train.labels and "d" not in test.labels + valid.labels  # a single example stays in train
    assert not set(train.texts) & set(test.texts) and not set(valid.texts) & set(test.texts)
    again = carve(s, 0.2, 0.1, stratify=True, seed=0)
    other = carve(s, 0.2, 0.1, stratify=True, seed=1)
    assert again[2].texts == test.texts and other[2].texts != test.texts
    with pytest.raises(InputError, match="data.valid_fraction: 0.5 \\+ data.test_fraction 0.5 >= 1"):
        carve(s, 0.5, 0.5)
    with pytest.raises(InputError, match="data.test_fraction: 0.001 of the 100 examples of one.txt holds out no"):
        carve(s, 0.001, 0.1)


def test_test_fraction_end_to_end_and_conflicts(runner, tiny_text):
    out = tiny_text["dir"] / "out"
    args = [a for a in fast_overrides(tiny_text, out) if not a.startswith("data.test=")]
    _bad(runner, args, out, "data.test: no test split given", "data.test_fraction=F")
    _bad(runner, [*args, f"data.test={tiny_text['test']}", "data.test_fraction=0.2"], out,
         "data.test_fraction: is 0.2 but data.test is given too")
    _bad(runner, [*args, "data.test_fraction=1.5"], out, "config: data.test_fraction: got 1.5")
    doc = _ok(runner, [*args, "data.test_fraction=0.25", "data.split.stratify=true", "data.split.seed=7"])
    d = doc["metrics"]["data"]
    assert (d["train"], d["valid"], d["test"]) == (78, 12, 30)
    assert d["split"] == {"source": str(tiny_text["train"]), "test_fraction": 0.25, "valid_fraction": 0.1,
                          "stratify": True, "seed": 7}


# --- labels unseen in training ------------------------------------------------------------------------------

def _with_unseen(tiny_text):
    tiny_text["test"].write_text("\n".join(make_lines(36, 1) + ["7 what is this", "7 and this", "8 or that"]) + "\n")
    return tiny_text


def test_unseen_labels_error_names_file_labels_and_options(runner, tiny_text):
    _with_unseen(tiny_text)
    out = tiny_text["dir"] / "out"
    line = _bad(runner, fast_overrides(tiny_text, out), out, "test.txt: labels: labels ['7', '8'] (3 rows) do not "
                "occur in the training split", "data.unseen_labels=drop", "data.unseen_labels=other")
    assert str(tiny_text["train"]) in line
    _bad(runner, [*fast_overrides(tiny_text, out), "data.unseen_labels=keep"], out,
         "config: data.unseen_labels: got 'keep'; expected one of error, drop, other")


def test_unseen_labels_drop_reports_the_rows(runner, tiny_text):
    _with_unseen(tiny_text)
    out = tiny_text["dir"] / "out"
    _ok(runner, [*fast_overrides(tiny_text, out), "data.unseen_labels=drop"])
    d = json.loads((out / "metrics.json").read_text())["metrics"]["data"]
    assert d["test"] == 36 and d["unseen_labels"] == {
        "policy": "drop", "valid": {"rows": 0, "labels": {}}, "test": {"rows": 3, "labels": {"7": 2, "8": 1}}}


def test_unseen_labels_other_counts_them_as_errors(runner, tiny_text):
    _with_unseen(tiny_text)
    valid = tiny_text["dir"] / "valid.txt"
    valid.write_text("\n".join(make_lines(20, 3) + ["9 never seen"]) + "\n")  # unseen in validation too
    out = tiny_text["dir"] / "out"
    doc = _ok(runner, [*fast_overrides(tiny_text, out), f"data.valid={valid}", "data.unseen_labels=other"])
    m = doc["metrics"]
    assert m["data"]["test"] == 39 and m["data"]["unseen_labels"]["test"]["rows"] == 3
    assert m["data"]["unseen_labels"]["class_index"] == 2 and m["data"]["unseen_labels"]["valid"]["rows"] == 1
    assert m["svd_finetune"]["accuracy"] <= 36 / 39 and set(m["svd_finetune"]["per_class_f1"]) == {"0", "1"}


def test_unseen_class_index_is_never_predicted(tiny_text):
    _with_unseen(tiny_text)
    cfg = {"train": str(tiny_text["train"]), "test": str(tiny_text["test"]), "int_labels": True,
           "unseen_labels": "other"}
    data = P.load_text_data(cfg)
    y = data.y_test.numpy()
    assert data.classes == ["0", "1"] and (y == 2).sum() == 3
    perfect_on_seen = np.where(y < 2, y, 0)
    assert classification_metrics(y, perfect_on_seen, data.classes)["accuracy"] == pytest.approx(36 / 39)


# --- --json error document ----------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["file", "config"])
def test_json_error_document_on_failure(runner, tiny_text, bad):
    out = tiny_text["dir"] / "out"
    if bad == "file":
        tiny_text["train"].write_bytes(b"1 caf\xe9\n")
        extra, needle = [], "data.encoding=latin-1"
    else:
        extra, needle = ["data.split.stratify=maybe"], "data.split.stratify"
    result = runner.invoke(app, ["compress", *fast_overrides(tiny_text, out), *extra, "--json"])
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert set(doc) == {"command", "version", "error"} and doc["command"] == "compress"
    assert doc["error"]["exit_code"] == 2 and needle in doc["error"]["message"]
    assert result.stderr.strip() == f"error: {doc['error']['message']}"
    assert not out.exists()
