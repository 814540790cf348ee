"""``where`` filters over index columns: the grammar is translated, never evaluated."""

import pyarrow as pa
import pytest

from shards.filters import FilterError, filter_index

INDEX = pa.table({"key": ["a", "b", "c", "d"], "frames": [10, 40, 80, None],
                  "source": ["webvid", "tgif", "webvid", "vatex"], "is_dup": [False, True, False, False]})  # fmt: skip


@pytest.mark.parametrize(
    "where,keys",
    [
        ("frames >= 40", ["b", "c"]),
        ("not is_dup and source == 'webvid'", ["a", "c"]),
        ("source in ['tgif', 'vatex']", ["b", "d"]),
        ("source not in ('tgif',)", ["a", "c", "d"]),
        ("30 < frames <= 80", ["b", "c"]),
        ("frames is None", ["d"]),
        ("frames is not None and (is_dup or frames > 50)", ["b", "c"]),
        ("frames > -1", ["a", "b", "c"]),  # a null comparison drops the row
        (None, ["a", "b", "c", "d"]),
    ],
)
def test_the_grammar(where, keys):
    assert filter_index(INDEX, where).column("key").to_pylist() == keys


@pytest.mark.parametrize(
    "where,match",
    [
        ("speed > 1", "unknown column 'speed'"),
        ("frames >=", "does not parse"),
        ("__import__('os').system('true')", "is not a comparison"),
        ("frames + 1 > 2", "is not a constant"),
        ("1 < 2", "both constants"),
        ("source in source", "needs a list of constants"),
        ("frames is 3", "only compares with None"),
        # They parse, but Arrow or Python cannot hold them: still the filter's own one-line error.
        ("1 is None", "left side of 'is' must be a column"),
        ("source in [1, 'a']", "cannot be translated"),
        ("frames == 99999999999999999999999999", "cannot be translated"),
        ("source == '\\ud800'", "cannot be translated"),
        ("not " * 5000 + "is_dup", "nested too deeply|cannot be translated"),
        ("frames and source", "cannot be applied to the index"),
    ],
)
def test_what_is_refused_is_named(where, match):
    with pytest.raises(FilterError, match=match):
        filter_index(INDEX, where)
