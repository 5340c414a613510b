from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledgerflow.transactions.messages import Reason, Rejection, Transaction, parse_transaction

LIMIT = 65_536


def test_the_brief_example_is_a_transaction() -> None:
    assert parse_transaction(b'{"id": 1, "value": 600}', LIMIT) == Transaction(1, Decimal(600))


def test_amounts_are_decimals_never_floats() -> None:
    outcome = parse_transaction(b'{"id": 2, "value": 0.1}', LIMIT)
    assert isinstance(outcome, Transaction)
    assert outcome.value == Decimal("0.1")
    assert type(outcome.value) is Decimal


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"x" * (LIMIT + 1), Reason.BODY_TOO_LARGE),
        (b"\xff\xfe{}", Reason.INVALID_ENCODING),
        (b"{not json", Reason.INVALID_JSON),
        (b"", Reason.INVALID_JSON),
        (b"[1, 600]", Reason.NOT_AN_OBJECT),
        (b'"text"', Reason.NOT_AN_OBJECT),
        (b"null", Reason.NOT_AN_OBJECT),
        (b"true", Reason.NOT_AN_OBJECT),
        (b'{"id": 1}', Reason.MISSING_FIELD),
        (b'{"value": 1}', Reason.MISSING_FIELD),
        (b'{"id": 1, "value": 1, "currency": "EUR"}', Reason.UNEXPECTED_FIELD),
        (b'{"id": 1, "id": 2, "value": 1}', Reason.DUPLICATE_FIELD),
        (b'{"id": true, "value": 1}', Reason.INVALID_PROVIDER_ID),
        (b'{"id": "1", "value": 1}', Reason.INVALID_PROVIDER_ID),
        (b'{"id": 1.0, "value": 1}', Reason.INVALID_PROVIDER_ID),
        (b'{"id": 0, "value": 1}', Reason.INVALID_PROVIDER_ID),
        (b'{"id": 2147483648, "value": 1}', Reason.INVALID_PROVIDER_ID),
        (b'{"id": null, "value": 1}', Reason.INVALID_PROVIDER_ID),
        (b'{"id": 1, "value": true}', Reason.INVALID_VALUE),
        (b'{"id": 1, "value": "600"}', Reason.INVALID_VALUE),
        (b'{"id": 1, "value": null}', Reason.INVALID_VALUE),
        (b'{"id": 1, "value": [600]}', Reason.INVALID_VALUE),
        (b'{"id": 1, "value": NaN}', Reason.INVALID_VALUE),
        (b'{"id": 1, "value": Infinity}', Reason.INVALID_VALUE),
        (b'{"id": 1, "value": 1e400}', Reason.VALUE_OUT_OF_RANGE),
        (b'{"id": 1, "value": 0.0000000000001}', Reason.VALUE_OUT_OF_RANGE),
    ],
)
def test_bad_bodies_are_rejected_with_a_stable_reason(body: bytes, reason: Reason) -> None:
    outcome = parse_transaction(body, LIMIT)
    assert isinstance(outcome, Rejection)
    assert outcome.reason is reason
    assert outcome.detail


def test_a_huge_integer_is_rejected_with_a_short_detail() -> None:
    outcome = parse_transaction(b'{"id": 1, "value": 1' + b"0" * 5000 + b"}", LIMIT)
    assert isinstance(outcome, Rejection)
    assert outcome.reason is Reason.VALUE_OUT_OF_RANGE
    assert len(outcome.detail) < 200


@given(st.binary(max_size=256))
def test_any_bytes_become_a_transaction_or_a_rejection(body: bytes) -> None:
    assert isinstance(parse_transaction(body, LIMIT), Transaction | Rejection)


@given(
    st.integers(1, 2**31 - 1),
    st.decimals(
        allow_nan=False, allow_infinity=False, places=2, min_value=-(10**17), max_value=10**17
    ),
)
def test_valid_messages_round_trip_exactly(provider_id: int, value: Decimal) -> None:
    body = f'{{"id": {provider_id}, "value": {value}}}'.encode()
    assert parse_transaction(body, LIMIT) == Transaction(provider_id, value)


@given(
    st.one_of(
        st.builds(
            lambda i, v, s1, s2: f'{s1}{{"id":{s2}{i},{s1}"value":{s2}{v}}}{s2}'.encode(),
            st.integers(-5, 2**31 + 5),
            st.one_of(
                st.integers(-(10**21), 10**21),
                st.decimals(allow_nan=False, allow_infinity=False, places=3),
                st.decimals(allow_nan=False, allow_infinity=False),
            ),
            st.sampled_from(["", " ", "\n", "\t ", "\f"]),
            st.sampled_from(["", " ", "\r\n"]),
        ),
        st.binary(max_size=40).map(lambda b: b'{"id": 1, "value": ' + b + b"}"),
    )
)
def test_the_fast_path_reads_exactly_what_the_full_parser_reads(body: bytes) -> None:
    from ledgerflow.transactions.messages import parse_strictly

    assert parse_transaction(body, LIMIT) == parse_strictly(body, LIMIT)
