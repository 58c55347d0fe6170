"""Tests for age_tf.data.metadata: the .mat parser and the age rule."""

import datetime

import numpy as np
import pytest
import scipy.io

from age_tf.data import metadata
from age_tf.data.metadata import age_at_mid_year, matlab_datenum_to_date
from age_tf.errors import DataError


def _datenum(y, m, d):
    return datetime.date(y, m, d).toordinal() + 366


@pytest.mark.parametrize(
    "birth, year, expected",
    [
        ((1980, 6, 30), 2000, 20),  # birthday before 1 July: completed
        ((1980, 7, 1), 2000, 20),  # on 1 July: completed that day
        ((1980, 7, 2), 2000, 19),  # after 1 July: not yet
        ((1980, 12, 31), 2000, 19),
        ((1980, 1, 1), 1980, 0),
        ((1980, 8, 1), 1980, -1),  # photo before birth: negative, filtered later
        ((1980, 2, 29), 2001, 21),
    ],
)
def test_age_at_mid_year(birth, year, expected):
    dob = _datenum(*birth)
    assert matlab_datenum_to_date(dob) == datetime.date(*birth)
    assert age_at_mid_year(matlab_datenum_to_date(dob), year) == expected


def test_matlab_datenum_known_value():
    # MATLAB: datenum(2000, 1, 1) == 730486.
    assert matlab_datenum_to_date(730486) == datetime.date(2000, 1, 1)


@pytest.mark.parametrize("dob", [0, 366, -5, np.nan, np.inf, 10**9, "x"])
def test_invalid_dob_is_none_not_crash(dob):
    assert matlab_datenum_to_date(dob) is None
    assert age_at_mid_year(None, 2000) is None


def _cells(values):
    out = np.empty((1, len(values)), dtype=object)
    for i, v in enumerate(values):
        out[0, i] = v
    return out


def _write_mat(path, n=3, key="wiki", drop=(), **override):
    fields = {
        "dob": np.array([[_datenum(1980, 1, 1), 5, _datenum(1990, 9, 1)]], dtype=np.int32),
        "photo_taken": np.array([[2000, 2000, 2000]], dtype=np.uint16),
        "full_path": np.array([[np.array(["01/a.jpg"]), np.array(["02/b.jpg"]), np.array(["03/c.jpg"])]],
                              dtype=object),
        "gender": np.array([[1.0, 0.0, np.nan]]),
        "name": np.array([[np.array(["A"]), np.zeros((0,), "<U1"), np.array(["C"])]], dtype=object),
        "face_location": _cells([np.array([[1.0, 2, 3, 4]])] * 3),
        "face_score": np.array([[4.0, -np.inf, 2.0]]),
        "second_face_score": np.array([[np.nan, np.nan, 1.0]]),
    }
    fields.update(override)
    for k in drop:
        fields.pop(k)
    struct = np.empty((1, 1), dtype=[(k, object) for k in fields])
    for k, v in fields.items():
        struct[0, 0][k] = v
    scipy.io.savemat(path, {key: struct})
    return str(path)


def test_load_small_wiki_layout(tmp_path):
    df = metadata.load_metadata(_write_mat(tmp_path / "wiki.mat"))
    assert list(df["full_path"]) == ["01/a.jpg", "02/b.jpg", "03/c.jpg"]
    # uint16 photo_taken must not wrap: 2000 - 1990 with a September birthday is 9.
    assert df["age"].tolist()[0] == 20 and df["age"].tolist()[2] == 9
    assert df["age"].isna().tolist() == [False, True, False]  # dob 5 is not a date
    assert df["photo_taken"].dtype == np.int64
    assert df["identity"].tolist() == ["name:A", "path:02/b.jpg", "name:C"]
    assert df[["face_x1", "face_y2"]].iloc[0].tolist() == [1.0, 4.0]


def test_missing_file_error_names_it(tmp_path):
    with pytest.raises(DataError, match="nope.mat: metadata file not found"):
        metadata.load_metadata(str(tmp_path / "nope.mat"))


def test_garbage_file(tmp_path):
    p = tmp_path / "bad.mat"
    p.write_bytes(b"this is not matlab" * 20)
    with pytest.raises(DataError, match="bad.mat: not a readable MATLAB"):
        metadata.load_metadata(str(p))


def test_wrong_struct_key(tmp_path):
    p = _write_mat(tmp_path / "x.mat", key="celebs")
    with pytest.raises(DataError, match=r"x.mat: no 'imdb' or 'wiki' struct.*celebs"):
        metadata.load_metadata(p)


def test_missing_field(tmp_path):
    p = _write_mat(tmp_path / "x.mat", drop=("face_score",))
    with pytest.raises(DataError, match=r"lacks field\(s\) \['face_score'\]"):
        metadata.load_metadata(p)


def test_field_length_mismatch(tmp_path):
    p = _write_mat(tmp_path / "x.mat", gender=np.array([[1.0, 0.0]]))
    with pytest.raises(DataError, match="'gender' has 2 entries but 'full_path' has 3"):
        metadata.load_metadata(p)


@pytest.mark.realdata
def test_real_wiki_parses(real_wiki):
    df = metadata.load_metadata(real_wiki)
    assert len(df) == 62328
    assert df["full_path"].iloc[0] == "17/10000217_1981-05-05_2009.jpg"
    assert df["age"].iloc[0] == 28  # born 1981-05-05, photo 2009
    assert df["identity"].str.startswith("name:").sum() == 62328 - 124  # 124 empty names


def test_text_where_numbers_belong_is_refused_naming_the_field(tmp_path):
    # Hostile-input item 12: a dob of strings gave numpy's "could not convert string".
    p = _write_mat(tmp_path / "x.mat", dob=_cells(["1980-01-01", "x", "y"]))
    with pytest.raises(DataError, match=r"x.mat: field 'dob' must hold numbers"):
        metadata.load_metadata(p)
