"""Configuration from the environment and the JSON guard, with no app running."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.errors import json_depth
from app.settings import PRODUCTION_RULES, ConfigError, Settings, flask_config, markdown

ROOT = Path(__file__).resolve().parents[2]
STRONG = "s" * 40
PRODUCTION = {"APP_ENV": "production", "JWT_SECRET_KEY": STRONG, "ADMISSION_SECRET_KEY": "a" * 40,
              "DATABASE_URL": "mysql+pymysql://u:p@db/tickets", "STRIPE_SECRET_KEY": "sk_live_x",
              "STRIPE_WEBHOOK_SECRET": "whsec_x", "STRIPE_PUBLISHABLE_KEY": "pk_live_x"}


def test_defaults_are_for_development_and_the_environment_overrides_them():
    settings = Settings.from_env({})
    assert settings.APP_ENV == "development" and settings.HOLD_WRITER_LINGER_MS == 25
    assert settings.NOTIFY_WEB_LINK_TEMPLATE == "http://127.0.0.1:8000/events/{event_id}/queue"
    settings = Settings.from_env({"HOLD_WRITER_LINGER_MS": "5", "PUBLIC_BASE_URL": "https://tickets.example.com/",
                                  "WEBPUSH_ENDPOINT_HOSTS": "push.example.com, fcm.googleapis.com",
                                  "DATABASE_TLS": "on", "SSE_ENABLED": "off", "KAFKA_TOPIC_PREFIX": ""})
    assert settings.HOLD_WRITER_LINGER_MS == 5 and settings.database_tls and not settings.SSE_ENABLED
    assert settings.NOTIFY_WEB_LINK_TEMPLATE == "https://tickets.example.com/events/{event_id}/queue"
    assert settings.WEBPUSH_ENDPOINT_HOSTS == ("push.example.com", "fcm.googleapis.com")
    assert settings.KAFKA_TOPIC_PREFIX == "tickets"  # empty counts as unset
    assert not Settings.from_env({}).database_tls and Settings.from_env(
        {"DATABASE_URL": "mysql+pymysql://u@db.internal/t"}).database_tls  # off on loopback only


def test_the_settings_are_typed_frozen_and_name_the_variable_they_refuse():
    with pytest.raises(ConfigError, match="APP_ENV"):
        Settings.from_env({"APP_ENV": "staging"})
    with pytest.raises(ConfigError, match="HOLD_WRITER_BATCH.*'many'"):
        Settings.from_env({"HOLD_WRITER_BATCH": "many"})
    with pytest.raises(ConfigError, match="REDIS_CLUSTER"):
        Settings.from_env({"REDIS_CLUSTER": "1"})
    with pytest.raises(ConfigError, match="VERIFY_CHANNELS"):
        Settings.from_env({"VERIFY_CHANNELS": "perhaps"})
    settings = Settings.from_env({})
    with pytest.raises(ValidationError):
        settings.HOLD_SECONDS = 1  # frozen: one process, one configuration


def test_production_refuses_the_repositorys_secrets_and_switched_off_checks():
    Settings.from_env(PRODUCTION).refuse_unsafe_production()  # a proper configuration passes
    for change in ({"JWT_SECRET_KEY": ""}, {"REQUIRE_VERIFIED_EMAIL": "0"}, {"ADMISSION_SECRET_KEY": "CHANGE_ME"},
                   {"STRIPE_WEBHOOK_SECRET": ""}, {"STRIPE_SECRET_KEY": "CHANGE_ME_STRIPE_SECRET_KEY"},
                   {"RATELIMIT_ENABLED": "off"}, {"DATABASE_URL": ""}):
        (name,) = change
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({**PRODUCTION, **change}).refuse_unsafe_production()
    Settings.from_env({**PRODUCTION, "REQUIRE_VERIFIED_EMAIL": "0", "APP_ENV": "development"}
                      ).refuse_unsafe_production()  # development may switch it off
    assert flask_config(Settings.from_env(PRODUCTION))["JWT_COOKIE_SECURE"] is True
    assert flask_config(Settings.from_env({}))["JWT_COOKIE_SECURE"] is False


def test_production_refuses_the_fake_payment_provider_naming_the_variable():
    """The fake provider confirms any `tok_ok…` string: production refuses it at start."""
    with pytest.raises(ConfigError, match="PAYMENT_PROVIDER"):
        Settings.from_env({**PRODUCTION, "PAYMENT_PROVIDER": "fake"}).refuse_unsafe_production()
    assert Settings.from_env({**PRODUCTION, "PAYMENT_PROVIDER": ""}).PAYMENT_PROVIDER == "stripe"  # production's
    assert Settings.from_env({}).PAYMENT_PROVIDER == "fake"  # development's


def test_every_environment_refuses_a_database_that_is_not_mysql():
    """The record is MySQL/MariaDB (row locks, READ COMMITTED): no stand-in, in any environment."""
    for app_env in ("development", "testing", "production"):
        with pytest.raises(ConfigError, match="MySQL/MariaDB"):
            Settings.from_env({"APP_ENV": app_env, "DATABASE_URL": "sqlite:///x.db"})
    assert Settings.from_env({}).DATABASE_URL.startswith("mysql+pymysql://")


def test_the_settings_object_is_the_only_reader_of_the_environment():
    """No module of the product reads os.environ or os.getenv but app/settings.py. (app/serve.py
    writes one variable for its worker processes, which read it back through their settings.)"""
    files = [*ROOT.glob("app/**/*.py"), *ROOT.glob("tasks/*.py"), ROOT / "celeryconfig.py", ROOT / "wsgi.py",
             ROOT / "docker" / "gunicorn.conf.py", ROOT / "migrations" / "env.py"]
    offenders = {}
    for path in files:
        if path == ROOT / "app" / "settings.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute) or not isinstance(node.value, ast.Name) or node.value.id != "os":
                continue
            if node.attr in {"environ", "getenv", "environb"}:
                offenders.setdefault(str(path.relative_to(ROOT)), []).append(node.lineno)
    assert offenders == {"app/serve.py": [offenders.get("app/serve.py", [0])[0]]}, offenders
    serve = (ROOT / "app" / "serve.py").read_text()
    assert serve.count("os.environ") == 1 and 'os.environ.setdefault("SSE_ENABLED", "0")' in serve


def test_docs_list_every_setting_as_generated():
    """docs/settings.md is `python -m app.settings`: every variable with type, default and rule."""
    assert (ROOT / "docs" / "settings.md").read_text() == markdown(), "run: python -m app.settings > docs/settings.md"
    for name in Settings.model_fields:
        assert f"| `{name}` |" in markdown()
    for name, rule in PRODUCTION_RULES.items():
        assert f"| `{name}` |" in markdown() and rule.text in markdown()


def test_json_depth_counts_nesting_outside_strings():
    assert json_depth(b'{"a": [1, {"b": []}]}') == 4
    assert json_depth(b'{"a": "[[[[["}') == 1
    assert json_depth(b"[" * 50 + b"]" * 50) == 50
