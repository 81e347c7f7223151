"""A fan's orders and tickets (support finds any order by its number)."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint

from app.auth.jwt_setup import current_user_id
from app.auth.services import is_admin_now
from app.orders import services
from app.orders.schemas import OrderPageSchema, OrderSchema
from app.pagination import PageArgsSchema, page_body

blp = Blueprint("orders", __name__, url_prefix="/api/orders", description="Orders and tickets")


@blp.route("")
class MyOrders(MethodView):
    @jwt_required()
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, OrderPageSchema)
    def get(self, args: dict) -> dict[str, Any]:
        """The caller's orders, newest first, each with its lines, refund and tickets."""
        items, total = services.list_orders(current_user_id(), args["page"], args["page_size"])
        return page_body(items, total, args)


@blp.route("/<number>")
class OneOrder(MethodView):
    @jwt_required()
    @blp.response(200, OrderSchema)
    def get(self, number: str) -> dict[str, Any]:
        """One order by its number (dashes and case do not matter): the buyer's, or any for an admin."""
        user_id = current_user_id()
        return services.get_order(number, user_id, admin=is_admin_now(user_id))
