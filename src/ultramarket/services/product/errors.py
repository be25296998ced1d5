"""The product service's domain errors (stable codes)."""

from __future__ import annotations

from ultramarket.core.errors import Conflict, NotFound, ValidationFailed


class ProductNotFound(NotFound):
    code = "PRODUCT_NOT_FOUND"
    message = "No such product"


class CategoryNotFound(NotFound):
    code = "CATEGORY_NOT_FOUND"
    message = "No such category"


class SkuTaken(Conflict):
    code = "SKU_TAKEN"
    message = "A variant with this SKU already exists"


class SlugTaken(Conflict):
    code = "SLUG_TAKEN"
    message = "This slug is already in use"


class CategoryNotEmpty(Conflict):
    code = "CATEGORY_NOT_EMPTY"
    message = "The category has products or subcategories; say where they go with ?move_to="


class CategoryCycle(Conflict):
    code = "CATEGORY_CYCLE"
    message = "A category cannot move under itself or one of its descendants"


def unknown_category(field: str = "category_id") -> ValidationFailed:
    return ValidationFailed(
        "Unknown category",
        details=[{"field": field, "message": "no such category", "type": "unknown_category"}],
    )
