"""Page-number pagination shared by every list endpoint: {items, page, page_size, total}."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate
from sqlalchemy import Select, func, select

from app.extensions import db

MAX_PAGE = 10_000  # beyond it an OFFSET is a scan, not a page; and no 64-bit overflow reaches SQL


class PageArgsSchema(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=MAX_PAGE))
    page_size = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


def page_schema(item_schema: type[Schema], name: str) -> type[Schema]:
    """A response schema {items: [item_schema], page, page_size, total}."""
    return Schema.from_dict({"items": fields.List(fields.Nested(item_schema)), "page": fields.Integer(),
                             "page_size": fields.Integer(), "total": fields.Integer()}, name=name)


def paginate(query: Select, page: int, page_size: int) -> tuple[list[Any], int]:
    """One page of ``query`` (already ordered) and the total row count."""
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    items = db.session.scalars(query.offset((page - 1) * page_size).limit(page_size)).all()
    return list(items), total


def page_body(items: list[Any], total: int, args: dict[str, int]) -> dict[str, Any]:
    return {"items": items, "page": args["page"], "page_size": args["page_size"], "total": total}
