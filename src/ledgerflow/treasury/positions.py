"""Positions folded from trades: securities per book and instrument, cash per book and currency.

A position is the total bought minus the total sold (negative when short); a cash position is
the sum of the trades' settlement amounts. Sign convention for ``Trade.settlement_amount``:
the signed cash effect on the book, in the trade's currency, so negative for a buy (cash paid)
and positive for a sell (cash received). The fold is pure (no I/O), exact (sums never round:
the context raises ``decimal.Inexact`` instead) and order-independent, and it refuses a trade
id it has already applied: exactly once is enforced upstream by the stream's offsets in the
database, but a double count must never pass silently here either.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow, localcontext
from typing import Literal

from ledgerflow.core.amounts import AmountError, check_amount

ZERO = Decimal(0)
# Sums: exact, or an error; never a silent rounding.
_EXACT = Context(prec=100, traps=[Inexact, InvalidOperation, Overflow])


def _check_amount(what: str, value: object) -> None:
    if not isinstance(value, Decimal):
        raise ValueError(f"{what}: {value!r} is not a Decimal")
    try:
        check_amount(value)
    except AmountError as exc:
        raise ValueError(f"{what}: {exc}") from None


@dataclass(frozen=True)
class Trade:
    """A canonical trade, as positions need it.

    ``quantity`` is positive, ``side`` gives its direction; ``settlement_amount`` is the signed
    cash effect in ``currency`` (negative for a buy paid, positive for a sell received);
    ``price`` is ``None`` where a source gives none (a loan, say); ``trade_time`` is aware.
    """

    trade_id: str
    source: str
    book: str
    instrument: str
    side: Literal["buy", "sell"]
    quantity: Decimal
    price: Decimal | None
    currency: str
    settlement_amount: Decimal
    trade_time: datetime
    settlement_date: date

    def __post_init__(self) -> None:
        what = f"trade {self.trade_id!r}"
        if not self.trade_id:
            raise ValueError("a trade needs a trade_id")
        if self.side not in ("buy", "sell"):
            raise ValueError(f"{what}: side {self.side!r} is neither 'buy' nor 'sell'")
        _check_amount(f"{what}: quantity", self.quantity)
        if self.quantity <= 0:
            raise ValueError(f"{what}: quantity {self.quantity} is not positive")
        if self.price is not None:
            _check_amount(f"{what}: price", self.price)
        _check_amount(f"{what}: settlement_amount", self.settlement_amount)
        if self.trade_time.utcoffset() is None:
            raise ValueError(f"{what}: trade_time {self.trade_time} has no time zone")

    @property
    def signed_quantity(self) -> Decimal:
        """The quantity's effect on the position: positive for a buy, negative for a sell."""
        return self.quantity if self.side == "buy" else self.quantity.copy_negate()


@dataclass(frozen=True)
class PositionChange:
    """What one trade changed: its securities position and its cash position, before and after.

    Enough for a caller to move running sums (the LCR's totals) by the difference alone.
    """

    trade_id: str
    book: str
    instrument: str
    quantity_before: Decimal
    quantity_after: Decimal
    currency: str
    cash_before: Decimal
    cash_after: Decimal


class Positions:
    """The positions of every book, folded from the trades applied so far, each once."""

    def __init__(self) -> None:
        self._quantities: dict[tuple[str, str], Decimal] = {}
        self._cash: dict[tuple[str, str], Decimal] = {}
        self._trade_ids: set[str] = set()

    def __contains__(self, trade_id: object) -> bool:
        return trade_id in self._trade_ids

    def quantity(self, book: str, instrument: str) -> Decimal:
        """The position of ``book`` in ``instrument``: bought minus sold, 0 if never traded."""
        return self._quantities.get((book, instrument), ZERO)

    def cash(self, book: str, currency: str) -> Decimal:
        """The cash position of ``book`` in ``currency``: the sum of its settlement amounts."""
        return self._cash.get((book, currency), ZERO)

    def apply(self, trade: Trade) -> PositionChange:
        """Fold ``trade`` in and say what it changed.

        Raises ``ValueError``, changing nothing, if a trade with the same id was applied.
        """
        if trade.trade_id in self._trade_ids:
            raise ValueError(f"trade {trade.trade_id!r} is already applied")
        security = (trade.book, trade.instrument)
        account = (trade.book, trade.currency)
        quantity_before = self.quantity(*security)
        cash_before = self.cash(*account)
        with localcontext(_EXACT):
            quantity_after = quantity_before + trade.signed_quantity
            cash_after = cash_before + trade.settlement_amount
        self._quantities[security] = quantity_after
        self._cash[account] = cash_after
        self._trade_ids.add(trade.trade_id)
        return PositionChange(
            trade_id=trade.trade_id,
            book=trade.book,
            instrument=trade.instrument,
            quantity_before=quantity_before,
            quantity_after=quantity_after,
            currency=trade.currency,
            cash_before=cash_before,
            cash_after=cash_after,
        )

    def snapshot(self) -> dict[str, dict[str, dict[str, Decimal]]]:
        """Every position as plain dicts sorted by key: ``{"securities": {book: {instrument:
        quantity}}, "cash": {book: {currency: amount}}}``, flat positions (0) included.
        """
        return {"securities": _nested(self._quantities), "cash": _nested(self._cash)}


def _nested(values: dict[tuple[str, str], Decimal]) -> dict[str, dict[str, Decimal]]:
    nested: dict[str, dict[str, Decimal]] = {}
    for (book, key), value in sorted(values.items()):
        nested.setdefault(book, {})[key] = value
    return nested
