from __future__ import annotations

import pytest

from greedy_compress.dictionary.candidates import make_candidates
from greedy_compress.errors import InvalidParameterError


def test_default_is_ten_evenly_spaced_with_one_implicit():
    assert make_candidates(None, "x") == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def test_explicit_list_is_sorted_deduplicated_and_drops_one():
    assert make_candidates([0.5, 0.25, 1.0, 0.5], "x") == (0.25, 0.5)


@pytest.mark.parametrize("bad", [1, 0, [0.0], [1.5], [float("nan")], [1.0], "0.5", [True]])
def test_bad_candidates_are_rejected_naming_the_value(bad):
    with pytest.raises(InvalidParameterError, match="'candidates'"):
        make_candidates(bad, "compress")
