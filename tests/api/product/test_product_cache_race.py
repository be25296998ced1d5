"""A product page read while an edit commits: the read loaded the old product, the edit
invalidated the cache, then the read stored what it loaded. The next reader must see
the edit, not the old page until the cache's TTL."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.api.product.product_helpers import API, create, variant

from ultramarket.services.product import api as product_api


async def test_a_page_loaded_across_an_edit_is_not_served_after_it(
    client: Any, make_user: Any, monkeypatch: Any
) -> None:
    manager = await make_user(role="MANAGER")
    created = await create(client, manager, variants=[variant(price="10.00")])
    loaded, edited = asyncio.Event(), asyncio.Event()
    real = product_api._visible_row

    async def slow_read(*args: Any, **kwargs: Any) -> Any:
        row = await real(*args, **kwargs)
        loaded.set()
        await edited.wait()  # the edit commits between the read's load and its store
        return row

    monkeypatch.setattr(product_api, "_visible_row", slow_read)
    reader = asyncio.create_task(client.get(f"{API}/{created['slug']}"))
    await loaded.wait()
    [v] = created["variants"]
    edit = await client.patch(
        f"{API}/{created['id']}",
        headers=manager.headers,
        json={"variants": [{"id": v["id"], "sku": v["sku"], "price": "99.00"}]},
    )
    assert edit.status_code == 200, edit.text
    edited.set()
    assert (await reader).json()["data"]["price"] == "10.00"  # read before the edit
    monkeypatch.setattr(product_api, "_visible_row", real)
    after = await client.get(f"{API}/{created['slug']}")
    assert after.json()["data"]["price"] == "99.00"
