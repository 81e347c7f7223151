from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint

from app.auth.jwt_setup import current_user_id
from app.notifications import services
from app.notifications.models import Device
from app.notifications.schemas import DeviceSchema, NotificationPageSchema, RegisterDeviceSchema
from app.pagination import PageArgsSchema, page_body

blp = Blueprint("notifications", __name__, url_prefix="/api/notifications",
                description="Channels that tell a user their turn has come")


@blp.route("/register")
class Register(MethodView):
    @jwt_required()
    @blp.arguments(RegisterDeviceSchema)
    @blp.response(201, DeviceSchema)
    @blp.alt_response(200, schema=DeviceSchema, description="The device was already registered")
    def post(self, data: dict) -> tuple[Device, int]:
        """Register a push token, e-mail address or phone number (201 new, 200 already known)."""
        device, created = services.register_device(current_user_id(), data)
        return device, 201 if created else 200


@blp.route("/devices")
class Devices(MethodView):
    @jwt_required()
    @blp.response(200, DeviceSchema(many=True))
    def get(self) -> list[Device]:
        """The caller's registered channels."""
        return services.list_devices(current_user_id())


@blp.route("/devices/<device_id>")
class DeviceItem(MethodView):
    @jwt_required()
    @blp.response(204)
    def delete(self, device_id: str) -> None:
        """Remove a channel (and its SNS endpoint)."""
        services.delete_device(current_user_id(), device_id)


@blp.route("")
class History(MethodView):
    @jwt_required()
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, NotificationPageSchema)
    def get(self, args: dict) -> dict[str, Any]:
        """The caller's notification history with delivery status."""
        return page_body(*services.list_notifications(current_user_id(), args["page"], args["page_size"]), args)
