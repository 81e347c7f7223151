from __future__ import annotations

import re

from marshmallow import Schema, ValidationError, fields, validate, validates


class RegisterSchema(Schema):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=8, max=128))
    name = fields.String(required=True, validate=validate.Length(min=1, max=120))
    locale = fields.String(load_default="en", validate=validate.OneOf(["en", "ko"]))

    @validates("password")
    def _strong_enough(self, value: str, **_kwargs) -> None:
        if not (re.search(r"[A-Za-z]", value) and re.search(r"\d", value)):
            raise ValidationError("Password must contain at least one letter and one digit.")

    @validates("name")
    def _not_blank(self, value: str, **_kwargs) -> None:
        if not value.strip():
            raise ValidationError("Name must not be blank.")


class LoginSchema(Schema):
    email = fields.String(required=True)
    password = fields.String(required=True, load_only=True)


class UserSchema(Schema):
    id = fields.Integer()
    email = fields.String()
    name = fields.String()
    locale = fields.String()
    roles = fields.List(fields.String())
    created_at = fields.DateTime()


class TokenPairSchema(Schema):
    access_token = fields.String()
    refresh_token = fields.String()
    token_type = fields.String()
    expires_in = fields.Integer()


