"""HTTP routes of the inventory service: parse, authorise, call InventoryService, reply.

MANAGER+ (permission ``inventory:*``) and services only, except ``GET /availability``
which is public. A reservation answers 201 when it is created and 200 when the same
key is replayed with the same lines and TTL (the first reservation, unchanged; a
committed one as committed); a released or expired one is a 409 RESERVATION_NOT_ACTIVE.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from ultramarket.core.container import Container
from ultramarket.core.deps import container_of, read_session
from ultramarket.core.errors import Forbidden
from ultramarket.core.schemas import Envelope, Page, PageParams, page_params
from ultramarket.core.security import Principal, current_principal, require
from ultramarket.core.service import ServiceRouter
from ultramarket.services.inventory import schemas as s
from ultramarket.services.inventory.service import InventoryService, ItemQuery

router = ServiceRouter(prefix="/api/v1/inventory", tags=["inventory"])

ReadSession = Annotated[AsyncSession, read_session("inventory")]
Reader = Annotated[Principal, require("inventory:read")]
Paging = Annotated[PageParams, Depends(page_params)]


@asynccontextmanager
async def inventory_unit(
    container: Container, principal: Principal
) -> AsyncIterator[InventoryService]:
    """The service on a unit of work (committed when the block ends), for a principal
    holding inventory:write: the routes' and the in-process client's."""
    if not principal.can("inventory:write"):
        raise Forbidden("Missing permission inventory:write")
    database = container.db("inventory")
    async with database.session() as session:
        yield InventoryService(
            session,
            container.publisher("inventory"),
            actor=principal.service or principal.subject,
            database=database,
        )


async def inventory_service(request: Request) -> AsyncIterator[InventoryService]:
    """The service on a unit of work that commits before the response is sent."""
    async with inventory_unit(container_of(request), await current_principal(request)) as unit:
        yield unit


async def inventory_reader(session: ReadSession, principal: Reader) -> InventoryService:
    return InventoryService(session)


Inventory = Annotated[InventoryService, Depends(inventory_service, scope="function")]
InventoryReader = Annotated[InventoryService, Depends(inventory_reader)]

ERRORS = {
    401: {"description": "Not authenticated"},
    403: {"description": "Needs MANAGER or higher (or a service)"},
    422: {"description": "Invalid input"},
}
ITEM_ERRORS = {**ERRORS, 404: {"description": "No such item (ITEM_NOT_FOUND)"}}
RESERVE_ERRORS = {
    **ITEM_ERRORS,
    409: {
        "description": "INSUFFICIENT_STOCK (details: requested and available per short line), "
        "IDEMPOTENCY_KEY_REUSED (the key was used with other lines or another TTL) or "
        "RESERVATION_NOT_ACTIVE (the key's reservation was released or has expired)"
    },
}
CLOSE_ERRORS = {
    **ERRORS,
    404: {"description": "No such reservation (RESERVATION_NOT_FOUND)"},
    409: {
        "description": "RESERVATION_ALREADY_COMMITTED, RESERVATION_EXPIRED or "
        "RESERVATION_NOT_ACTIVE (released)"
    },
}

RESTOCK_ERRORS = {
    **ERRORS,
    404: {"description": "No such reservation (RESERVATION_NOT_FOUND)"},
    409: {
        "description": "RESERVATION_NOT_COMMITTED (only a sale can be restocked), "
        "RESTOCK_EXCEEDS_RETURNABLE (details: requested and returnable per line), "
        "STOCK_LIMIT_EXCEEDED (on hand would pass 1,000,000,000) or "
        "IDEMPOTENCY_KEY_REUSED (the reference was used with other lines)"
    },
    422: {"description": "Invalid input, or a variant that is not in the reservation"},
}


def item_read(row: object) -> s.ItemRead:
    return s.ItemRead.model_validate(row)


# -- multi-line reservations (orders), first: routes match in order, and checkouts call these -----


@router.post(
    "/reservations",
    status_code=201,
    response_model=Envelope[s.ReservationRead],
    responses=RESERVE_ERRORS,
)
async def create_reservation(
    body: s.ReservationCreate, inventory: Inventory, response: Response
) -> Envelope[s.ReservationRead]:
    """All or nothing: any short line is a 409 INSUFFICIENT_STOCK naming every short line,
    and nothing is reserved. The same key with the same lines returns the first one (200)."""
    reservation, created = await inventory.reserve_lines(
        body.key, body.ttl_seconds, [(line.variant_id, line.quantity) for line in body.lines]
    )
    if not created:
        response.status_code = 200
    return Envelope(data=reservation)


@router.get(
    "/reservations/{key}",
    response_model=Envelope[s.ReservationRead],
    responses={**ERRORS, 404: {"description": "RESERVATION_NOT_FOUND"}},
)
async def get_reservation(key: str, inventory: InventoryReader) -> Envelope[s.ReservationRead]:
    return Envelope(data=await inventory.get_reservation(key))


@router.post(
    "/reservations/{key}/commit",
    response_model=Envelope[s.ReservationRead],
    responses=CLOSE_ERRORS,
)
async def commit_reservation(key: str, inventory: Inventory) -> Envelope[s.ReservationRead]:
    """The sale: on_hand and reserved both drop. Only once: a second commit is a 409."""
    return Envelope(data=await inventory.commit(key))


@router.post(
    "/reservations/{key}/release",
    response_model=Envelope[s.ReservationRead],
    responses=CLOSE_ERRORS,
)
async def release_reservation(key: str, inventory: Inventory) -> Envelope[s.ReservationRead]:
    return Envelope(data=await inventory.release(key))


@router.post(
    "/reservations/{key}/restock",
    response_model=Envelope[s.ReservationRead],
    responses=RESTOCK_ERRORS,
)
async def restock_reservation(
    key: str, body: s.Restock, inventory: Inventory
) -> Envelope[s.ReservationRead]:
    """Give sold units back to stock (an order cancelled or refunded before shipping): the
    given lines, or every unit not yet returned when `lines` is null. Never more than was
    sold per line (`returned`); nothing changes when any line asks too much. The same
    `reference` with the same lines restocks once and returns the reservation again."""
    lines = None if body.lines is None else [(ln.variant_id, ln.quantity) for ln in body.lines]
    return Envelope(data=await inventory.restock(key, body.reference, lines))


# -- public ---------------------------------------------------------------------------------------


@router.get(
    "/availability",
    response_model=Envelope[list[s.VariantAvailability]],
    responses={422: {"description": "Invalid input"}},
)
async def availability(
    session: ReadSession,
    variant_id: Annotated[list[uuid.UUID], Query(min_length=1, max_length=100)],
) -> Envelope[list[s.VariantAvailability]]:
    """Public: units available per variant, summed over warehouses (unknown ids: 0)."""
    result = await InventoryService(session).availability(list(dict.fromkeys(variant_id)))
    return Envelope(
        data=[
            s.VariantAvailability(variant_id=v, available=n, in_stock=n > 0)
            for v, n in result.items()
        ]
    )


# -- alerts ---------------------------------------------------------------------------------------


@router.get("/alerts", response_model=Page[s.AlertRead], responses=ERRORS)
async def list_alerts(
    inventory: InventoryReader,
    paging: Paging,
    include_resolved: bool = False,
) -> Page[s.AlertRead]:
    """Open alerts (items at or under their threshold, or out of stock), newest first."""
    rows, total = await inventory.alerts(
        offset=paging.offset, limit=paging.limit, include_resolved=include_resolved
    )
    return Page.of(
        [s.AlertRead.model_validate(r) for r in rows],
        page=paging.page,
        limit=paging.limit,
        total=total,
    )


# -- warehouses -----------------------------------------------------------------------------------

WAREHOUSE_ERRORS = {**ERRORS, 404: {"description": "No such warehouse (WAREHOUSE_NOT_FOUND)"}}


@router.get("/warehouses", response_model=Envelope[list[s.WarehouseRead]], responses=ERRORS)
async def list_warehouses(inventory: InventoryReader) -> Envelope[list[s.WarehouseRead]]:
    rows = await inventory.list_warehouses()
    return Envelope(data=[s.WarehouseRead.model_validate(w) for w in rows])


@router.post(
    "/warehouses",
    status_code=201,
    response_model=Envelope[s.WarehouseRead],
    responses={**ERRORS, 409: {"description": "DUPLICATE_WAREHOUSE (code taken)"}},
)
async def create_warehouse(
    body: s.WarehouseCreate, inventory: Inventory
) -> Envelope[s.WarehouseRead]:
    warehouse = await inventory.create_warehouse(body)
    return Envelope(data=s.WarehouseRead.model_validate(warehouse))


@router.get(
    "/warehouses/{warehouse_id}",
    response_model=Envelope[s.WarehouseRead],
    responses=WAREHOUSE_ERRORS,
)
async def get_warehouse(
    warehouse_id: uuid.UUID, inventory: InventoryReader
) -> Envelope[s.WarehouseRead]:
    return Envelope(
        data=s.WarehouseRead.model_validate(await inventory.get_warehouse(warehouse_id))
    )


@router.put(
    "/warehouses/{warehouse_id}",
    response_model=Envelope[s.WarehouseRead],
    responses={**WAREHOUSE_ERRORS, 409: {"description": "DUPLICATE_WAREHOUSE"}},
)
async def update_warehouse(
    warehouse_id: uuid.UUID, body: s.WarehouseUpdate, inventory: Inventory
) -> Envelope[s.WarehouseRead]:
    warehouse = await inventory.update_warehouse(warehouse_id, body)
    return Envelope(data=s.WarehouseRead.model_validate(warehouse))


@router.delete(
    "/warehouses/{warehouse_id}",
    status_code=204,
    responses={
        **WAREHOUSE_ERRORS,
        409: {"description": "DEFAULT_WAREHOUSE, or WAREHOUSE_IN_USE (it holds stock items)"},
    },
)
async def delete_warehouse(warehouse_id: uuid.UUID, inventory: Inventory) -> Response:
    await inventory.delete_warehouse(warehouse_id)
    return Response(status_code=204)


# -- items ----------------------------------------------------------------------------------------


@router.get("", response_model=Page[s.ItemRead], responses=ERRORS)
@router.get("/", response_model=Page[s.ItemRead], responses=ERRORS, include_in_schema=False)
async def list_items(
    inventory: InventoryReader,
    paging: Paging,
    sku: Annotated[str | None, Query(max_length=100)] = None,
    warehouse: Annotated[str | None, Query(max_length=64, description="id or code")] = None,
    variant_id: uuid.UUID | None = None,
    low_stock: bool | None = None,
) -> Page[s.ItemRead]:
    """Sort by sku (default), on_hand, reserved, available, updated_at; `-` for descending."""
    rows, total = await inventory.list_items(
        ItemQuery(sku=sku, warehouse=warehouse, variant_id=variant_id, low_stock=low_stock),
        offset=paging.offset,
        limit=paging.limit,
        sort=paging.sort,
    )
    return Page.of([item_read(r) for r in rows], page=paging.page, limit=paging.limit, total=total)


@router.post(
    "",
    status_code=201,
    response_model=Envelope[s.ItemRead],
    responses={
        **ERRORS,
        404: {"description": "WAREHOUSE_NOT_FOUND"},
        409: {"description": "ITEM_EXISTS"},
    },
)
async def create_item(body: s.ItemCreate, inventory: Inventory) -> Envelope[s.ItemRead]:
    """Stock a variant in another warehouse (new variants get a default item by themselves)."""
    return Envelope(data=item_read(await inventory.create_item(body)))


@router.get("/{item_id}", response_model=Envelope[s.ItemRead], responses=ITEM_ERRORS)
async def get_item(item_id: uuid.UUID, inventory: InventoryReader) -> Envelope[s.ItemRead]:
    return Envelope(data=item_read(await inventory.get_item(item_id)))


@router.get("/{item_id}/movements", response_model=Page[s.MovementRead], responses=ITEM_ERRORS)
async def list_movements(
    item_id: uuid.UUID, inventory: InventoryReader, paging: Paging
) -> Page[s.MovementRead]:
    """The audit log of an item, newest first: its counts are the sums of these deltas."""
    rows, total = await inventory.movements(item_id, offset=paging.offset, limit=paging.limit)
    return Page.of(
        [s.MovementRead.model_validate(r) for r in rows],
        page=paging.page,
        limit=paging.limit,
        total=total,
    )


@router.put(
    "/{item_id}",
    response_model=Envelope[s.ItemRead],
    responses={
        **ITEM_ERRORS,
        409: {
            "description": "STOCK_BELOW_RESERVED, or STOCK_LIMIT_EXCEEDED (on hand would pass "
            "1,000,000,000; details: on_hand, requested_delta, maximum)"
        },
    },
)
async def update_item(
    item_id: uuid.UUID, body: s.StockUpdate, inventory: Inventory
) -> Envelope[s.ItemRead]:
    """`{on_hand}` sets the count, `{delta, reason}` adjusts it; each is a stock movement."""
    return Envelope(data=item_read(await inventory.update_item(item_id, body)))


@router.post(
    "/{item_id}/reserve",
    status_code=201,
    response_model=Envelope[s.ReservationRead],
    responses=RESERVE_ERRORS,
)
async def reserve(
    item_id: uuid.UUID, body: s.ReserveItem, inventory: Inventory, response: Response
) -> Envelope[s.ReservationRead]:
    """201 with a new reservation; 200 with the same one when the key is replayed."""
    reservation, created = await inventory.reserve_item(
        item_id, body.quantity, body.key, body.ttl_seconds
    )
    if not created:
        response.status_code = 200
    return Envelope(data=reservation)


@router.delete(
    "/{item_id}/reserve",
    response_model=Envelope[s.ReservationRead],
    responses=CLOSE_ERRORS,
)
async def release(
    item_id: uuid.UUID,
    inventory: Inventory,
    key: Annotated[str, Query(min_length=1, max_length=200)],
) -> Envelope[s.ReservationRead]:
    """Release the reservation ``key`` holding this item."""
    return Envelope(data=await inventory.release(key, item_id=item_id))
