"""Bulk import of products from CSV or JSON Lines: validate every row first, then write
everything in one transaction (all or nothing).

CSV: one row per variant; rows with the same ``handle`` (or, without it, the same
``name``) are one product. Columns: handle, name, slug, description, brand,
category (slug or id), status, featured, seo_title, seo_description, sku, price,
compare_at_price, currency, weight_grams, barcode, options ("size=M;color=red"),
attributes ("material=cotton;fit=slim").
JSONL: one product per line, in the shape of ``POST /api/v1/products`` (``category``
may be given as a slug instead of ``category_id``).
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ultramarket.core.container import Container
from ultramarket.services.product.models import Category, ProductVariant
from ultramarket.services.product.repository import CACHE_PREFIX, CATEGORY_CACHE_PREFIX
from ultramarket.services.product.schemas import ProductCreate
from ultramarket.services.product.service import ProductService


@dataclass(frozen=True)
class RowError:
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}"


@dataclass
class ImportReport:
    rows: int = 0
    products: int = 0
    created: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _pairs(text: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for part in (text or "").split(";"):
        if part.strip():
            key, _, value = part.partition("=")
            result[key.strip()] = value.strip()
    return result


def _blank(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def _read_csv(path: Path) -> list[tuple[list[int], dict[str, Any]]]:
    grouped: dict[str, tuple[list[int], dict[str, Any]]] = {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            line = reader.line_num
            key = (row.get("handle") or row.get("name") or f"#{line}").strip()
            variant = {
                "sku": row.get("sku", ""),
                "price": row.get("price", ""),
                "compare_at_price": _blank(row.get("compare_at_price")),
                "currency": _blank(row.get("currency")) or "USD",
                "weight_grams": _blank(row.get("weight_grams")),
                "barcode": _blank(row.get("barcode")),
                "options": _pairs(row.get("options", "")),
            }
            if key in grouped:
                grouped[key][0].append(line)
                grouped[key][1]["variants"].append(variant)
                continue
            body: dict[str, Any] = {
                "name": row.get("name", ""),
                "slug": _blank(row.get("slug")),
                "description": row.get("description") or "",
                "brand": _blank(row.get("brand")),
                "category": _blank(row.get("category")),
                "status": _blank(row.get("status")) or "active",
                "featured": (row.get("featured") or "").strip().lower() in {"1", "true", "yes"},
                "seo_title": _blank(row.get("seo_title")),
                "seo_description": _blank(row.get("seo_description")),
                "attributes": _pairs(row.get("attributes", "")),
                "variants": [variant],
            }
            grouped[key] = ([line], body)
    return list(grouped.values())


def _read_jsonl(path: Path, report: ImportReport) -> list[tuple[list[int], dict[str, Any]]]:
    items = []
    with path.open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                body = json.loads(text)
            except json.JSONDecodeError as exc:
                report.errors.append(RowError(number, "-", f"invalid JSON: {exc.msg}"))
                continue
            if not isinstance(body, dict):
                report.errors.append(RowError(number, "-", "each line must be a JSON object"))
                continue
            items.append(([number], body))
    return items


def read_rows(path: Path, report: ImportReport) -> list[tuple[list[int], dict[str, Any]]]:
    if path.suffix.lower() == ".csv":
        return _read_csv(path)
    if path.suffix.lower() in {".jsonl", ".ndjson"}:
        return _read_jsonl(path, report)
    raise ValueError("the file must be .csv or .jsonl")


def _line_for(lines: list[int], loc: tuple[Any, ...]) -> int:
    if len(loc) >= 2 and loc[0] == "variants" and isinstance(loc[1], int) and loc[1] < len(lines):
        return lines[loc[1]]
    return lines[0]


async def _validate(
    session: AsyncSession, items: list[tuple[list[int], dict[str, Any]]], report: ImportReport
) -> list[ProductCreate]:
    categories = {c.slug: c.id for c in await session.scalars(select(Category))}
    category_ids = set(categories.values())
    valid: list[ProductCreate] = []
    seen_skus: dict[str, int] = {}
    for lines, body in items:
        body = dict(body)
        ref = body.pop("category", None)
        if ref is not None and body.get("category_id") is None:
            try:
                cid: uuid.UUID | None = uuid.UUID(str(ref))
            except ValueError:
                cid = categories.get(str(ref))
            if cid is None or cid not in category_ids:
                report.errors.append(RowError(lines[0], "category", f"unknown category {ref!r}"))
                continue
            body["category_id"] = str(cid)
        try:
            product = ProductCreate.model_validate(body)
        except ValidationError as exc:
            for err in exc.errors():
                loc = tuple(err.get("loc", ()))
                name = ".".join(str(p) for p in loc) or "-"
                report.errors.append(RowError(_line_for(lines, loc), name, err["msg"]))
            continue
        if product.category_id is not None and product.category_id not in category_ids:
            report.errors.append(RowError(lines[0], "category_id", "unknown category"))
            continue
        bad = False
        for i, v in enumerate(product.variants):
            key = v.sku.lower()
            if key in seen_skus:
                line = lines[min(i, len(lines) - 1)]
                msg = f"SKU {v.sku!r} repeats line {seen_skus[key]}"
                report.errors.append(RowError(line, "sku", msg))
                bad = True
            seen_skus[key] = lines[min(i, len(lines) - 1)]
        if not bad:
            valid.append(product)
    if seen_skus:
        taken = await session.scalars(
            # case-insensitively, as the unique index on lower(sku) compares them
            select(ProductVariant.sku).where(func.lower(ProductVariant.sku).in_(list(seen_skus)))
        )
        for sku in taken:
            report.errors.append(RowError(seen_skus[sku.lower()], "sku", f"{sku!r} exists"))
    report.errors.sort(key=lambda e: e.line)
    return valid


async def import_products(
    container: Container,
    path: Path,
    *,
    on_validated: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import ``path``; nothing is written unless every row is valid."""
    report = ImportReport()
    items = read_rows(Path(path), report)
    report.rows = sum(len(lines) for lines, _ in items)
    report.products = len(items)
    async with container.db("product").session() as session:
        valid = await _validate(session, items, report)
        if report.errors:
            return report
        if on_validated is not None:
            on_validated(len(valid))
        service = ProductService(session, publisher=container.publisher("product"))
        for product in valid:
            data = product.model_dump(exclude={"variants"})
            data["variants"] = list(product.variants)
            await service.create(data)
            report.created += 1
            if on_progress is not None:
                on_progress(1)
    await container.cache.invalidate_prefix(CACHE_PREFIX)
    await container.cache.invalidate_prefix(CATEGORY_CACHE_PREFIX)
    return report
