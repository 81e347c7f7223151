from __future__ import annotations

from typing import Any

from flask import current_app
from flask.views import MethodView
from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint

from app.auth.jwt_setup import current_user_id
from app.auth.schemas import VerifyCodeSchema
from app.extensions import limiter
from app.notifications import flows, services
from app.notifications.models import Device
from app.notifications.schemas import (
    DeviceSchema,
    NotificationPageSchema,
    RegisterDeviceSchema,
    WebPushConfigSchema,
)
from app.pagination import PageArgsSchema, page_body

blp = Blueprint("notifications", __name__, url_prefix="/api/notifications",
                description="Channels that tell a user their turn has come")


@blp.route("/register")
class Register(MethodView):
    @jwt_required()
    # per account (under the token check, so the limit knows who is asking): a stadium's many fans
    # behind one address must still be able to register their phones at the same time
    @limiter.limit(lambda: current_app.config["CHANNEL_LIMIT_PER_USER"], key_func=lambda: f"user:{current_user_id()}",
                   scope="channel-register")
    @blp.arguments(RegisterDeviceSchema)
    @blp.response(201, DeviceSchema)
    @blp.alt_response(200, schema=DeviceSchema, description="The device was already registered")
    def post(self, data: dict) -> tuple[Device, int]:
        """Register a push token, a browser's web push subscription, an e-mail address or a phone
        number (201 new, 200 already known).

        An e-mail address or phone number is used only once verified: a code is sent to it, to be
        posted to `/devices/{id}/verify`. At most NOTIFY_MAX_CHANNELS (5) channels per account."""
        device, created = flows.register_device(current_user_id(), data)
        return device, 201 if created else 200


@blp.route("/webpush")
class WebPushConfig(MethodView):
    @blp.response(200, WebPushConfigSchema)
    def get(self) -> dict[str, Any]:
        """Whether web push is on, and the VAPID public key a browser subscribes with."""
        cfg = current_app.config
        enabled = bool(cfg["WEBPUSH_VAPID_PRIVATE_KEY"] and cfg["WEBPUSH_VAPID_PUBLIC_KEY"])
        return {"enabled": enabled, "public_key": cfg["WEBPUSH_VAPID_PUBLIC_KEY"] if enabled else None}


@blp.route("/devices")
class Devices(MethodView):
    @jwt_required()
    @blp.response(200, DeviceSchema(many=True))
    def get(self) -> list[Device]:
        """The caller's registered channels."""
        return services.list_devices(current_user_id())


@blp.route("/devices/<device_id>/verify")
class VerifyDevice(MethodView):
    @jwt_required()
    @blp.arguments(VerifyCodeSchema)
    @blp.response(200, DeviceSchema)
    def post(self, data: dict, device_id: str) -> Device:
        """Prove an e-mail address or phone number with the code sent to it (5 tries per code)."""
        return flows.verify_device(current_user_id(), device_id, data["code"])


@blp.route("/devices/<device_id>/code")
class DeviceCode(MethodView):
    @jwt_required()
    @limiter.limit(lambda: current_app.config["CODE_LIMIT_PER_USER"], key_func=lambda: f"user:{current_user_id()}",
                   scope="device-code")
    @blp.response(202, DeviceSchema)
    def post(self, device_id: str) -> Device:
        """Send a new verification code (the previous one stops working)."""
        return services.resend_code(current_user_id(), device_id)


@blp.route("/devices/<device_id>")
class DeviceItem(MethodView):
    @jwt_required()
    @blp.response(204)
    def delete(self, device_id: str) -> None:
        """Remove a channel (and its SNS endpoint)."""
        flows.delete_device(current_user_id(), device_id)


@blp.route("")
class History(MethodView):
    @jwt_required()
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, NotificationPageSchema)
    def get(self, args: dict) -> dict[str, Any]:
        """The caller's notification history with delivery status."""
        return page_body(*services.list_notifications(current_user_id(), args["page"], args["page_size"]), args)
