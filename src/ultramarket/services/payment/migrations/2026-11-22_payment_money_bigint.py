"""payment money columns 64-bit

A product's price, the cart's and the order's amounts are BIGINTs; the payment
service's copies of money were 32-bit INTEGERs, so a checkout past 21,474,836.47 (a UZS
total of 53,625,000.00 is 5.36e9 minor units) was a 500 on PostgreSQL at the charge. A
payment's amount and refunded amount, a refund's amount, a deposit attempt's amount, a
wallet account's balance and a ledger entry's amount and balance after become BIGINT.
(SQLite's INTEGER is 64-bit already; batch mode rebuilds the tables there so the
declared types match the models.)

Revision ID: 3f6b0e2c9d17
Revises: 8a8864f8ce3e
Create Date: 2026-11-22 04:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from ultramarket.core.migrations import retype_columns

revision: str = "3f6b0e2c9d17"
down_revision: str | None = "8a8864f8ce3e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVICE = "payment"

# (table, column, nullable)
COLUMNS = (
    ("payment", "amount", False),
    ("payment", "refunded_amount", False),
    ("payment_refund", "amount", False),
    ("deposit_attempt", "amount", False),
    ("wallet_account", "balance", False),
    ("ledger_entry", "amount", False),
    ("ledger_entry", "balance_after", True),
)


def upgrade() -> None:
    retype_columns(SERVICE, COLUMNS, sa.Integer, sa.BigInteger)


def downgrade() -> None:
    # Fails on PostgreSQL while a stored amount does not fit 32 bits (nothing is cut).
    retype_columns(SERVICE, COLUMNS, sa.BigInteger, sa.Integer)
