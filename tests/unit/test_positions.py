"""Positions folded from trades: examples, then properties over any trades in any order."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledgerflow.treasury.positions import PositionChange, Positions, Trade

D = Decimal
T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
SIDES: tuple[Literal["buy", "sell"], ...] = ("buy", "sell")


def trade(
    trade_id: str,
    side: Literal["buy", "sell"],
    quantity: str,
    settlement_amount: str,
    *,
    book: str = "rates",
    instrument: str = "UST10Y",
    currency: str = "USD",
    price: str | None = "99.50",
    trade_time: datetime = T0,
) -> Trade:
    return Trade(
        trade_id=trade_id,
        source="bonds-oms",
        book=book,
        instrument=instrument,
        side=side,
        quantity=D(quantity),
        price=None if price is None else D(price),
        currency=currency,
        settlement_amount=D(settlement_amount),
        trade_time=trade_time,
        settlement_date=date(2024, 3, 5),
    )


# Examples -----------------------------------------------------------------------------------


def test_a_buy_then_a_larger_sell_leave_a_short_position_and_the_cash_of_both() -> None:
    positions = Positions()
    # Buy 100 at 99.50: pay 9950.00. Sell 150 at 100.00: receive 15000.00.
    # Position 100 - 150 = -50 (short); cash -9950.00 + 15000.00 = 5050.00.
    bought = positions.apply(trade("T1", "buy", "100", "-9950.00"))
    sold = positions.apply(trade("T2", "sell", "150", "15000.00", price="100.00"))
    assert bought == PositionChange(
        trade_id="T1",
        book="rates",
        instrument="UST10Y",
        quantity_before=D(0),
        quantity_after=D(100),
        currency="USD",
        cash_before=D(0),
        cash_after=D("-9950.00"),
    )
    assert (sold.quantity_before, sold.quantity_after) == (D(100), D(-50))
    assert (sold.cash_before, sold.cash_after) == (D("-9950.00"), D("5050.00"))
    assert positions.quantity("rates", "UST10Y") == D(-50)
    assert positions.cash("rates", "USD") == D("5050.00")
    assert positions.quantity("rates", "BUND") == D(0)


def test_the_snapshot_is_plain_dicts_sorted_by_book_then_key() -> None:
    positions = Positions()
    positions.apply(trade("T1", "buy", "5", "-500", book="rates", instrument="UST10Y"))
    positions.apply(trade("T2", "buy", "1000000", "-1085000", book="fx", instrument="EURUSD"))
    positions.apply(
        trade("T3", "sell", "2", "210", book="rates", instrument="BUND", currency="EUR")
    )
    snapshot = positions.snapshot()
    assert snapshot == {
        "securities": {"fx": {"EURUSD": D(1000000)}, "rates": {"BUND": D(-2), "UST10Y": D(5)}},
        "cash": {"fx": {"USD": D(-1085000)}, "rates": {"EUR": D(210), "USD": D(-500)}},
    }
    assert list(snapshot["securities"]) == ["fx", "rates"]
    assert list(snapshot["securities"]["rates"]) == ["BUND", "UST10Y"]


def test_a_trade_applied_twice_is_refused() -> None:
    positions = Positions()
    positions.apply(trade("T1", "buy", "100", "-9950.00"))
    with pytest.raises(ValueError, match="'T1' is already applied"):
        positions.apply(trade("T1", "buy", "100", "-9950.00"))
    assert positions.quantity("rates", "UST10Y") == D(100)
    assert "T1" in positions


def test_sums_are_exact_beyond_the_default_decimal_precision() -> None:
    # 32 significant digits each: the default context (28 digits) would round these sums.
    positions = Positions()
    positions.apply(trade("T1", "buy", "12345678901234567890.123456789012", "-0.000000000001"))
    positions.apply(trade("T2", "buy", "0.000000000001", "99999999999999999999.999999999999"))
    assert positions.quantity("rates", "UST10Y") == D("12345678901234567890.123456789013")
    assert positions.cash("rates", "USD") == D("99999999999999999999.999999999998")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"trade_id": ""}, "needs a trade_id"),
        ({"side": "hold"}, "side 'hold'"),
        ({"quantity": D(0)}, "quantity 0 is not positive"),
        ({"quantity": D("NaN")}, "quantity: NaN is not a finite number"),
        ({"settlement_amount": D("1E-13")}, "settlement_amount: more than 12 decimal places"),
        ({"trade_time": datetime(2024, 3, 1, 9, 0)}, "has no time zone"),
    ],
)
def test_a_malformed_trade_is_refused(fields: dict[str, object], message: str) -> None:
    valid: dict[str, object] = {
        "trade_id": "T1",
        "source": "bonds-oms",
        "book": "rates",
        "instrument": "UST10Y",
        "side": "buy",
        "quantity": D(1),
        "price": D(1),
        "currency": "USD",
        "settlement_amount": D(-1),
        "trade_time": T0,
        "settlement_date": date(2024, 3, 5),
    }
    with pytest.raises(ValueError, match=message):
        Trade(**(valid | fields))  # type: ignore[arg-type]


# Properties ---------------------------------------------------------------------------------

amounts = st.integers(0, 4).flatmap(
    lambda places: st.decimals(min_value=D("0.0001"), max_value=D("1e9"), places=places)
)


@st.composite
def trade_lists(draw: st.DrawFn) -> list[Trade]:
    """Trades with distinct ids over a few books, instruments and currencies."""
    count = draw(st.integers(0, 25))
    trades = []
    for number in range(count):
        side = draw(st.sampled_from(SIDES))
        cash = draw(amounts)
        trades.append(
            Trade(
                trade_id=f"T{number}",
                source=draw(st.sampled_from(["fx-oms", "bonds-oms"])),
                book=draw(st.sampled_from(["fx", "rates", "repo"])),
                instrument=draw(st.sampled_from(["EURUSD", "UST10Y", "BUND"])),
                side=side,
                quantity=draw(amounts.filter(lambda q: q > 0)),
                price=draw(st.none() | amounts),
                currency=draw(st.sampled_from(["EUR", "USD"])),
                settlement_amount=-cash if side == "buy" else cash,
                trade_time=T0 + timedelta(seconds=number),
                settlement_date=date(2024, 3, 5),
            )
        )
    return trades


def applied(trades: list[Trade]) -> Positions:
    positions = Positions()
    for each in trades:
        positions.apply(each)
    return positions


@given(st.data(), trade_lists())
def test_positions_do_not_depend_on_the_order_of_arrival(
    data: st.DataObject, trades: list[Trade]
) -> None:
    shuffled = data.draw(st.permutations(trades))
    assert applied(shuffled).snapshot() == applied(trades).snapshot()


@given(trade_lists())
def test_a_position_is_bought_minus_sold_and_cash_the_sum_of_settlements(
    trades: list[Trade],
) -> None:
    bought: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    sold: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    cash: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for each in trades:
        (bought if each.side == "buy" else sold)[(each.book, each.instrument)] += each.quantity
        cash[(each.book, each.currency)] += each.settlement_amount
    positions = applied(trades)
    snapshot = positions.snapshot()
    for book, instrument in bought.keys() | sold.keys():
        expected = bought[(book, instrument)] - sold[(book, instrument)]
        assert positions.quantity(book, instrument) == expected
        assert snapshot["securities"][book][instrument] == expected
    for (book, currency), amount in cash.items():
        assert positions.cash(book, currency) == amount
        assert snapshot["cash"][book][currency] == amount
    assert sum(len(by_book) for by_book in snapshot["securities"].values()) == len(
        bought.keys() | sold.keys()
    )


@given(trade_lists())
def test_each_change_is_the_trade_itself_between_before_and_after(trades: list[Trade]) -> None:
    positions = Positions()
    for each in trades:
        quantity, cash = (
            positions.quantity(each.book, each.instrument),
            positions.cash(each.book, each.currency),
        )
        change = positions.apply(each)
        assert (change.quantity_before, change.cash_before) == (quantity, cash)
        assert change.quantity_after - change.quantity_before == each.signed_quantity
        assert change.cash_after - change.cash_before == each.settlement_amount
        assert change.quantity_after == positions.quantity(each.book, each.instrument)


@given(st.data(), trade_lists().filter(bool))
def test_a_duplicate_trade_id_is_refused_and_changes_nothing(
    data: st.DataObject, trades: list[Trade]
) -> None:
    positions = applied(trades)
    before = positions.snapshot()
    again = data.draw(st.sampled_from(trades))
    # The same id again, whatever it carries now (a desk's resend, or a corrected copy).
    resent = Trade(
        trade_id=again.trade_id,
        source=again.source,
        book=data.draw(st.sampled_from([again.book, "other"])),
        instrument=again.instrument,
        side=again.side,
        quantity=data.draw(st.sampled_from([again.quantity, again.quantity + 1])),
        price=again.price,
        currency=again.currency,
        settlement_amount=again.settlement_amount,
        trade_time=again.trade_time,
        settlement_date=again.settlement_date,
    )
    with pytest.raises(ValueError, match="already applied"):
        positions.apply(resent)
    assert positions.snapshot() == before
