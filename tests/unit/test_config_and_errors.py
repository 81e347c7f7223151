"""Configuration from the environment and the JSON guard, with no app running."""

from __future__ import annotations

import pytest

from app.config import ConfigError, check_production_safety, load_config
from app.errors import json_depth

STRONG = "s" * 40


def test_defaults_are_for_development_and_the_environment_overrides_them():
    cfg = load_config({})
    assert cfg["APP_ENV"] == "development" and cfg["HOLD_WRITER_LINGER_MS"] == 25
    assert cfg["NOTIFY_WEB_LINK_TEMPLATE"] == "http://127.0.0.1:8000/events/{event_id}/queue"
    cfg = load_config({"HOLD_WRITER_LINGER_MS": "5", "PUBLIC_BASE_URL": "https://tickets.example.com/"})
    assert cfg["HOLD_WRITER_LINGER_MS"] == 5
    assert cfg["NOTIFY_WEB_LINK_TEMPLATE"] == "https://tickets.example.com/events/{event_id}/queue"
    with pytest.raises(ConfigError):
        load_config({"APP_ENV": "staging"})


def test_production_refuses_the_repositorys_secrets_and_switched_off_checks():
    base = {"APP_ENV": "production", "JWT_SECRET_KEY": STRONG, "ADMISSION_SECRET_KEY": "a" * 40,
            "DATABASE_URL": "mysql+pymysql://u:p@db/tickets", "STRIPE_SECRET_KEY": "sk_live_x",
            "STRIPE_WEBHOOK_SECRET": "whsec_x", "STRIPE_PUBLISHABLE_KEY": "pk_live_x"}
    check_production_safety(load_config(base))  # a proper configuration passes
    for change in ({"JWT_SECRET_KEY": ""}, {"REQUIRE_VERIFIED_EMAIL": "0"}, {"ADMISSION_SECRET_KEY": "CHANGE_ME"},
                   {"STRIPE_WEBHOOK_SECRET": ""}, {"STRIPE_SECRET_KEY": "CHANGE_ME_STRIPE_SECRET_KEY"}):
        with pytest.raises(ConfigError):
            check_production_safety(load_config({**base, **change}))
    assert load_config(base)["JWT_COOKIE_SECURE"] is True and load_config({})["JWT_COOKIE_SECURE"] is False


def test_production_refuses_the_fake_payment_provider_naming_the_variable():
    """The fake provider confirms any `tok_ok…` string: production refuses it at start."""
    base = {"APP_ENV": "production", "JWT_SECRET_KEY": STRONG, "ADMISSION_SECRET_KEY": "a" * 40,
            "DATABASE_URL": "mysql+pymysql://u:p@db/tickets", "PAYMENT_PROVIDER": "fake"}
    with pytest.raises(ConfigError, match="PAYMENT_PROVIDER"):
        check_production_safety(load_config(base))
    assert load_config({**base, "PAYMENT_PROVIDER": ""})["PAYMENT_PROVIDER"] == "stripe"  # production's default
    assert load_config({})["PAYMENT_PROVIDER"] == "fake"  # development's


def test_every_environment_refuses_a_database_that_is_not_mysql():
    """The record is MySQL/MariaDB (row locks, READ COMMITTED): no stand-in, in any environment."""
    for app_env in ("development", "testing", "production"):
        with pytest.raises(ConfigError, match="MySQL/MariaDB"):
            load_config({"APP_ENV": app_env, "DATABASE_URL": "sqlite:///x.db"})
    assert load_config({})["DATABASE_URL"].startswith("mysql+pymysql://")


def test_json_depth_counts_nesting_outside_strings():
    assert json_depth(b'{"a": [1, {"b": []}]}') == 4
    assert json_depth(b'{"a": "[[[[["}') == 1
    assert json_depth(b"[" * 50 + b"]" * 50) == 50
