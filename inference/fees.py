"""Herder pricing: what a call needs, what a caller is quoted, what multiplier a payment buys.

Pure functions, no I/O. Amounts are integer credit units (like winston: no fractions
are ever charged); multipliers are floats because they only order the queue.

The scheme is the one AO's Llama Herder uses, with tokens counted by the model's own
tokenizer instead of by words:

    needed     = fee_base + fee_token * (prompt_tokens + max_tokens)
    quote      = needed * last_multiplier, * FEE_BUMP while calls are waiting
    multiplier = payment / needed
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FEE_BUMP = 1.005  # a quote outbids the last dispatched call by 0.5% while there is a queue
DEFAULT_MULTIPLIER = 1.0  # a fresh herder has dispatched nothing: quote the bare price
FREE_MULTIPLIER = 1.0  # a free call (needed == 0) is neither early nor late in the queue


class FeeError(ValueError):
    """A fee input that cannot be priced (negative counts, a payment under the price)."""


@dataclass(frozen=True)
class FeeSchedule:
    """The two prices a herder publishes; both 0 means pricing is off."""

    fee_base: int = 0
    fee_token: int = 0

    def __post_init__(self) -> None:
        if self.fee_base < 0 or self.fee_token < 0:
            raise FeeError("fees must be zero or positive")

    @property
    def enabled(self) -> bool:
        """Return True when any call costs something."""
        return self.fee_base > 0 or self.fee_token > 0


def needed_fee(schedule: FeeSchedule, prompt_tokens: int, max_tokens: int) -> int:
    """Given a fee schedule and real model token counts, return the minimum payment."""
    if prompt_tokens < 0 or max_tokens < 0:
        raise FeeError("token counts must be zero or positive")
    return schedule.fee_base + schedule.fee_token * (prompt_tokens + max_tokens)


def quote(needed: int, last_multiplier: float, queue_length: int) -> int:
    """Given a call's needed fee and the herder's state, return the payment to offer.

    Rounded up, so paying the quote never buys a multiplier under the one quoted.
    """
    price = needed * max(last_multiplier, DEFAULT_MULTIPLIER)
    if queue_length > 0:
        price *= FEE_BUMP
    # Round away float noise first (1000 * 1.005 is 1004.9999999999999), then up.
    return max(needed, math.ceil(round(price, 6)))


def multiplier_of(payment: int, needed: int) -> float:
    """Given a payment and the needed fee, return the call's queue multiplier.

    Raises FeeError when the payment is below the needed fee.
    """
    if payment < 0:
        raise FeeError("payment must be zero or positive")
    if needed == 0:
        return FREE_MULTIPLIER
    if payment < needed:
        raise FeeError(f"payment {payment} is below the needed fee {needed}")
    return payment / needed
