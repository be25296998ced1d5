"""cart money columns 64-bit

A product's price is a BIGINT; the cart's copies of money were 32-bit INTEGERs, so a
price past 21,474,836.47 (a UZS price of 25,000,000.00 is 2.5e9 minor units) could not
be put in a cart on PostgreSQL. The line price, a coupon's value and minimum, and a
redemption's discount become BIGINT. (SQLite's INTEGER is 64-bit already; batch mode
rebuilds the tables there so the declared types match the models.)

Revision ID: 28ad81525b20
Revises: ba03961537a6
Create Date: 2026-11-21 20:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from ultramarket.core.migrations import retype_columns

revision: str = "28ad81525b20"
down_revision: str | None = "ba03961537a6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVICE = "cart"

# (table, column, nullable)
COLUMNS = (
    ("cart_item", "price_amount", False),
    ("coupon", "value", False),
    ("coupon", "min_subtotal_amount", True),
    ("coupon_redemption", "discount_amount", False),
)


def upgrade() -> None:
    retype_columns(SERVICE, COLUMNS, sa.Integer, sa.BigInteger)


def downgrade() -> None:
    # Fails on PostgreSQL while a stored amount does not fit 32 bits (nothing is cut).
    retype_columns(SERVICE, COLUMNS, sa.BigInteger, sa.Integer)
