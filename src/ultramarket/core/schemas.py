"""The envelope every endpoint answers with, and shared request/response pieces."""

from __future__ import annotations

import math
from typing import Annotated, Generic, Literal, TypeVar

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Schema(BaseModel):
    """Base for request and response models: strict about unknown input fields."""

    model_config = ConfigDict(extra="forbid", from_attributes=True, str_strip_whitespace=True)


class ReadSchema(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Envelope(BaseModel, Generic[T]):
    success: Literal[True] = True
    data: T


class PageMeta(BaseModel):
    page: int
    limit: int
    total: int
    pages: int


class Page(BaseModel, Generic[T]):
    success: Literal[True] = True
    data: list[T]
    meta: PageMeta

    @classmethod
    def of(cls, items: list[T], *, page: int, limit: int, total: int) -> Page[T]:
        pages = math.ceil(total / limit) if limit else 0
        return cls(data=items, meta=PageMeta(page=page, limit=limit, total=total, pages=pages))


class Message(BaseModel):
    message: str


class PageParams(BaseModel):
    page: int = 1
    limit: int = 20
    sort: str | None = None

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit


async def page_params(
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    sort: Annotated[str | None, Query(max_length=64, pattern=r"^-?[a-z_]+$")] = None,
) -> PageParams:
    return PageParams(page=page, limit=limit, sort=sort)


PasswordStr = Annotated[str, Field(min_length=1, max_length=256)]
