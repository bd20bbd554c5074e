"""toolkit.compat.old: label maps and old-head files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from toolkit.compat.old import class_map_from_config, load_head
from toolkit.errors import InputError


def test_class_map_default_identity_and_given_default():
    assert class_map_from_config(None, 5, 3, None).tolist() == [0, 1, 2, -1, -1]
    assert class_map_from_config(None, 3, 5, None).tolist() == [0, 1, 2]
    default = np.array([-1, 0, 1])
    assert class_map_from_config(None, 3, 2, default) is default


def test_class_map_from_mapping_and_json(tmp_path):
    assert class_map_from_config({"0": 2, 2: "0"}, 4, 3, None).tolist() == [2, -1, 0, -1]
    (tmp_path / "map.json").write_text(json.dumps({"1": 0, "3": 1}))
    assert class_map_from_config(str(tmp_path / "map.json"), 4, 2, None).tolist() == [-1, 0, -1, 1]


@pytest.mark.parametrize("bad, match", [({"a": 0}, "not an integer pair"), ({5: 0}, "new class 5 does not exist"),
                                        ({0: -1}, "old class -1 does not exist"), ([0, 1], "expected a mapping")])
def test_class_map_rejects_bad_entries(bad, match):
    with pytest.raises(InputError, match=match):
        class_map_from_config(bad, 4, 2, None)


def test_class_map_bad_json_file(tmp_path):
    (tmp_path / "bad.json").write_text("{1: 0")
    with pytest.raises(InputError, match="cannot read as a JSON object"):
        class_map_from_config(str(tmp_path / "bad.json"), 4, 2, None)
    with pytest.raises(InputError, match="file not found"):
        class_map_from_config(str(tmp_path / "none.json"), 4, 2, None)


def test_load_head_formats(tmp_path):
    w = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.save(tmp_path / "w.npy", w)
    hw, hb = load_head(str(tmp_path / "w.npy"))
    assert np.array_equal(hw, w) and hb is None
    np.savez(tmp_path / "wb.npz", weight=w, bias=np.ones(3))
    hw, hb = load_head(str(tmp_path / "wb.npz"))
    assert np.array_equal(hw, w) and hb.tolist() == [1.0, 1.0, 1.0]
    np.savez(tmp_path / "badbias.npz", weight=w, bias=np.ones(2))
    with pytest.raises(InputError, match=r"expected shape \(3,\)"):
        load_head(str(tmp_path / "badbias.npz"))
    np.savez(tmp_path / "noweight.npz", w=w)
    with pytest.raises(InputError, match="needs arrays 'weight'"):
        load_head(str(tmp_path / "noweight.npz"))
    w[0, 0] = np.nan
    np.save(tmp_path / "nan.npy", w)
    with pytest.raises(InputError, match="NaN"):
        load_head(str(tmp_path / "nan.npy"))
