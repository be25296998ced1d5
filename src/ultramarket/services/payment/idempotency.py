"""``Idempotency-Key`` handling for writes that move money.

The record is inserted FIRST, inside the same unit of work as the write: a
concurrent request with the same key waits on the unique index (PostgreSQL) or on
the write lock (SQLite) and then finds the finished record, so a key charges once.
The first response is stored with the record; a failure that is committed
(``persist_changes``: a decline) is stored too and replayed as the same error.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from sqlalchemy import Insert, Update, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from ultramarket.core.db import Database, adopt, columns_of, utcnow, write_if_in
from ultramarket.core.errors import ERROR_CLASSES, Conflict, DomainError
from ultramarket.services.payment.models import IdempotencyRecord

RECORD = IdempotencyRecord.__table__

# Statements built once, their values bound (``claim_*``, ``answer_*``).
_CLAIM_VALUES = {
    "id": bindparam("claim_id"),
    "scope": bindparam("claim_scope"),
    "owner": bindparam("claim_owner"),
    "key": bindparam("claim_key"),
    "request_hash": bindparam("claim_hash"),
    "created_at": bindparam("claim_at"),
}
# The claim of a key: an INSERT that does nothing (and returns no row) when it is taken.
CLAIM: dict[str, Insert] = {
    name: dialect_insert(RECORD)
    .values(_CLAIM_VALUES)
    .on_conflict_do_nothing(index_elements=["scope", "owner", "key"])
    .returning(RECORD.c.id)
    for name, dialect_insert in (("postgresql", postgresql_insert), ("sqlite", sqlite_insert))
}
ANSWER = (
    update(RECORD)
    .where(RECORD.c.id == bindparam("answer_id"))
    .values(status_code=bindparam("answer_status"), response=bindparam("answer_body"))
)


# The answer of a key taken so that nothing is ever done with it (``PaymentService.forfeit``).
FORFEITED = "CHARGE_FORFEITED"


class KeyUnfinished(Exception):
    """The key's first request ended with an unknown outcome (its record has no answer
    yet): the caller resumes that request instead of replaying an answer."""


class IdempotencyKeyReused(Conflict):
    code = "CONFLICT"
    message = "This Idempotency-Key was used with another request"


def error_body(error: DomainError) -> dict[str, Any]:
    """What a key records of a request that failed (replayed as the same error)."""
    return {"code": error.code, "message": error.message, "details": error.details}


async def answer_unfinished(
    session: AsyncSession, scope: str, owner: str, key: str, status: int, body: dict[str, Any]
) -> None:
    """Record the answer of a key whose request ended with an unknown outcome, by
    whoever settles that outcome later (the sweeper, a provider's webhook, the retry
    itself): a retry then replays it. A key answered already keeps its answer."""
    await session.execute(
        update(RECORD)
        .where(
            RECORD.c.scope == scope,
            RECORD.c.owner == owner,
            RECORD.c.key == key,
            RECORD.c.status_code.is_(None),
        )
        .values(status_code=status, response=body)
    )


def request_hash(scope: str, body: Any) -> str:
    canonical = json.dumps([scope, body], sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class Idempotency:
    def __init__(
        self, session: AsyncSession, scope: str, owner: str, key: str | None, body: Any
    ) -> None:
        self.session = session
        self.scope = scope
        self.owner = owner
        self.key = key
        self.hash = request_hash(scope, body)
        self._id: uuid.UUID | None = None

    async def _find(self) -> Any:
        return (
            await self.session.execute(
                select(
                    RECORD.c.id, RECORD.c.request_hash, RECORD.c.status_code, RECORD.c.response
                ).where(
                    RECORD.c.scope == self.scope,
                    RECORD.c.owner == self.owner,
                    RECORD.c.key == self.key,
                )
            )
        ).first()

    def _replay(self, row: Any) -> tuple[int, dict[str, Any]]:
        forfeited = row.status_code is not None and (row.response or {}).get("code") == FORFEITED
        if row.request_hash != self.hash and not forfeited:  # a forfeited key refuses all
            raise IdempotencyKeyReused()
        if row.status_code is None:
            self._id = row.id  # the resumed request finishes this record
            raise KeyUnfinished()
        status, body = int(row.status_code), row.response or {}
        if status >= 400:
            cls = ERROR_CLASSES.get(status, DomainError)
            raise cls(
                body.get("message"),
                code=body.get("code"),
                details=body.get("details") or [],
                persist_changes=False,
            )
        return status, body

    async def begin(
        self, row: Any = None, *, committed_by: Database | None = None
    ) -> tuple[int, dict[str, Any]] | None:
        """The first response when this key was used before; else claim the key. ``row``
        (a new mapped object) is inserted with the claim, in the same statement, and
        only when the key is claimed (or when there is no key). ``committed_by``: the
        claim is its own transaction on that database (committed at once), not part of
        the session's unit of work."""
        if self.key is None:
            if row is not None:
                self.session.add(row)
                await self.session.flush()
            return None
        # Claiming is the lookup: one INSERT that does nothing when the key is taken. A
        # concurrent claim of the same key waits on the unique index (PostgreSQL) or on
        # the write lock (SQLite) while the claim is uncommitted, then finds the record
        # (unanswered when its claim was committed by itself: ``KeyUnfinished``).
        params = {
            "claim_id": uuid.uuid4(),
            "claim_scope": self.scope,
            "claim_owner": self.owner,
            "claim_key": self.key,
            "claim_hash": self.hash,
            "claim_at": utcnow(),
        }
        rows = [] if row is None else [(row.__table__, columns_of(row))]
        if committed_by is not None:
            claimed = await committed_by.write_if(CLAIM[committed_by.dialect], params, *rows)
        else:
            claim = CLAIM[self.session.get_bind().dialect.name]
            claimed = await write_if_in(self.session, claim, params, *rows)
        if claimed is None:
            found = await self._find()
            assert found is not None  # the conflicting record is committed
            return self._replay(found)
        self._id = claimed["id"]
        if row is not None:
            adopt(self.session, row)
        return None

    async def reread(self) -> tuple[int, dict[str, Any]]:
        """The key's answer as committed now: ``begin`` found it unanswered, and whoever
        settled its request since (the sweeper, a webhook) answered it with the
        settlement. Replayed as ``begin`` replays (an error answer is raised)."""
        found = await self._find()
        assert found is not None
        return self._replay(found)

    def answer(self, status: int, body: dict[str, Any]) -> tuple[Update, dict[str, Any]] | None:
        """The statement (with its params) that records the answer to the key (None
        without a key), for the caller to run within another write; then ``answered()``."""
        if self._id is None:
            return None
        return ANSWER, {"answer_id": self._id, "answer_status": status, "answer_body": body}

    @property
    def unanswered(self) -> bool:
        """A key is claimed and its answer not recorded yet."""
        return self._id is not None

    def answered(self) -> None:
        """The answer went in with another write: ``finish`` has nothing left to do."""
        self._id = None

    async def finish(self, status: int, body: dict[str, Any]) -> None:
        answer = self.answer(status, body)
        if answer is not None:
            await self.session.execute(*answer)

    async def fail(self, error: DomainError) -> None:
        await self.finish(error.status_code, error_body(error))
