from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.pagination import page_schema

E164 = r"^\+[1-9]\d{6,14}$"


class PushKeysSchema(Schema):
    # base64url: the browser's P-256 public key (65 bytes) and its 16-byte auth secret
    p256dh = fields.String(required=True, validate=[validate.Length(min=80, max=100),
                                                    validate.Regexp(r"^[A-Za-z0-9_\-=]+$")])
    auth = fields.String(required=True, validate=[validate.Length(min=16, max=32),
                                                  validate.Regexp(r"^[A-Za-z0-9_\-=]+$")])


class SubscriptionSchema(Schema):
    """A browser's PushSubscription, as `subscription.toJSON()` gives it."""
    endpoint = fields.Url(required=True, schemes={"https", "http"}, require_tld=False,
                          validate=validate.Length(max=512))
    keys = fields.Nested(PushKeysSchema, required=True)
    expirationTime = fields.Raw(load_default=None, allow_none=True)  # noqa: N815 - the browser's name


class RegisterDeviceSchema(Schema):
    channel = fields.String(required=True, validate=validate.OneOf(["push", "email", "sms", "webpush"]))
    platform = fields.String(validate=validate.OneOf(["fcm", "apns"]))
    # FCM registration tokens and APNs device tokens are URL-safe text (hex for APNs): anything
    # else is not a device token, and is a 422 here rather than an error from SNS
    token = fields.String(validate=[validate.Length(min=8, max=512),
                                    validate.Regexp(r"^[A-Za-z0-9:_.\-]+$", error="not a device token")])
    address = fields.Email(validate=validate.Length(max=254))
    phone = fields.String(validate=validate.Regexp(E164, error="Phone must be E.164, e.g. +821012345678"))
    subscription = fields.Nested(SubscriptionSchema, metadata={"description": "webpush: the browser's subscription"})

    @validates_schema
    def _fields_for_channel(self, data: dict, **_kwargs) -> None:
        needed = {"push": ("platform", "token"), "email": ("address",), "sms": ("phone",),
                  "webpush": ("subscription",)}[data["channel"]]
        missing = {name: ["required for this channel"] for name in needed if not data.get(name)}
        if missing:
            raise ValidationError(missing)


class WebPushConfigSchema(Schema):
    enabled = fields.Boolean()
    public_key = fields.String(allow_none=True, metadata={"description": "the VAPID applicationServerKey"})


class DeviceSchema(Schema):
    device_id = fields.String(attribute="id")
    channel = fields.String()
    platform = fields.String(allow_none=True)
    enabled = fields.Boolean()
    verified = fields.Boolean(metadata={"description": "false until the code sent to it was entered (e-mail, SMS)"})
    endpoint_arn = fields.String(allow_none=True)
    created_at = fields.DateTime()


class NotificationSchema(Schema):
    id = fields.String()
    event_id = fields.Integer()
    device_id = fields.String(allow_none=True)
    channel = fields.String()
    kind = fields.String()
    status = fields.String()
    attempts = fields.Integer()
    error = fields.String(allow_none=True)
    latency_ms = fields.Integer(allow_none=True)
    created_at = fields.DateTime()
    sent_at = fields.DateTime(allow_none=True)


NotificationPageSchema = page_schema(NotificationSchema, "NotificationPage")
