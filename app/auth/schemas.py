from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

from app.auth.passwords import weakness


class RegisterSchema(Schema):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=8, max=128))
    name = fields.String(required=True, validate=validate.Length(min=1, max=120))
    locale = fields.String(load_default="en", validate=validate.OneOf(["en", "ko"]))

    @validates_schema
    def _hard_to_guess(self, data: dict, **_kwargs) -> None:
        problem = weakness(data.get("password", ""), data.get("email", ""), data.get("name", ""))
        if problem:
            raise ValidationError({"password": [problem]})

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
    email_verified = fields.Boolean(metadata={"description": "buying needs a verified e-mail"})
    notify_by_email = fields.Boolean(metadata={"description": "notices also go to the verified account e-mail"})
    created_at = fields.DateTime()


class TokenPairSchema(Schema):
    access_token = fields.String()
    refresh_token = fields.String()
    token_type = fields.String()
    expires_in = fields.Integer()


class AccountUpdateSchema(Schema):
    locale = fields.String(validate=validate.OneOf(["en", "ko"]),
                           metadata={"description": "the language of pages, messages and notices"})
    notify_by_email = fields.Boolean(metadata={"description": "notices to the account's verified e-mail"})

    @validates_schema
    def _at_least_one(self, data: dict, **_kwargs: object) -> None:
        if not data:
            raise ValidationError("Give locale, notify_by_email or both", field_name="_schema")


class VerifyCodeSchema(Schema):
    code = fields.String(required=True, validate=validate.Regexp(r"^\s*\d{6}\s*$", error="six digits"))


class DeleteAccountSchema(Schema):
    password = fields.String(required=True, validate=validate.Length(min=1, max=200), load_only=True)
