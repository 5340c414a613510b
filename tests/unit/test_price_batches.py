"""Property: the cheap check of a batch row accepts only what the full check accepts."""

from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledgerflow.rates.price_batches import (
    BatchRejected,
    _check_row,
    _plain_row,
    from_csv,
    from_json,
)

codes = st.one_of(
    st.none(), st.integers(), st.booleans(), st.text(max_size=6), st.sampled_from(["CNGGZ", ""])
)
days = st.one_of(
    st.none(),
    st.integers(),
    st.floats(allow_nan=True),
    st.dates().map(date.isoformat),
    st.text(alphabet="0123456789-T \u0661\u0662", max_size=11),
    st.sampled_from(
        [
            "2021-02-30",
            "2021-2-1",
            "20210201",
            "2021-W05-1",
            "\uff12\uff10\uff12\uff11-\uff10\uff12-\uff10\uff11",
            "",
        ]
    ),
)
prices = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True),
    st.integers(min_value=-5, max_value=2**32).map(str),
    st.text(alphabet="0123456789-+ _.\u0661", max_size=12),
)
rows = st.fixed_dictionaries(
    {}, optional={"orig_code": codes, "dest_code": codes, "day": days, "price": prices}
)


@given(st.lists(rows, min_size=1, max_size=8))
def test_a_row_the_cheap_check_accepts_is_accepted_alike_by_the_full_check(
    batch: list[dict[str, Any]],
) -> None:
    seen_days: dict[str, date] = {}  # shared, as across the rows of one batch
    for raw in batch:
        plain = _plain_row(raw, seen_days)
        problems: list[dict[str, Any]] = []
        checked = _check_row(1, raw, problems)
        if plain is not None:
            assert (plain, problems) == (checked, [])


def test_the_usual_rows_take_the_cheap_path() -> None:
    seen_days: dict[str, date] = {}
    json_row = {"orig_code": "CNGGZ", "dest_code": "EETLL", "day": "2021-02-01", "price": 1200}
    csv_row = {**json_row, "price": "1200"}
    assert _plain_row(json_row, seen_days) == ("CNGGZ", "EETLL", date(2021, 2, 1), 1200)
    assert _plain_row(csv_row, seen_days) == ("CNGGZ", "EETLL", date(2021, 2, 1), 1200)
    assert _plain_row({**json_row, "day": "2021-02-30"}, seen_days) is None
    assert seen_days == {"2021-02-01": date(2021, 2, 1)}


def test_csv_that_the_csv_reader_cannot_read_is_refused_not_a_crash() -> None:
    with pytest.raises(BatchRejected, match="the CSV header must name"):
        from_csv("b-1", "\u00db6_\r<j\x10z")  # a lone CR ends a line; no header
    with pytest.raises(BatchRejected, match="the CSV cannot be read"):
        from_csv("b-1", 'orig_code,dest_code,day,price\n"' + "A" * 200_000 + '"\n')


def test_a_batch_id_with_a_control_character_is_refused_not_a_crash() -> None:
    header = "orig_code,dest_code,day,price\nCNGGZ,EETLL,2021-02-01,1200\n"
    with pytest.raises(BatchRejected, match="batch_id: no control characters"):
        from_csv("R_\x00x", header)
    with pytest.raises(BatchRejected, match="batch_id: no control characters"):
        from_json({"batch_id": "a\x00", "prices": [{}]})
