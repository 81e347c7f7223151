"""`flask --app wsgi notifications create-platform-apps`: SNS platform applications for local stacks
(moto/LocalStack in docker compose). In AWS they are created once by an operator with real
FCM/APNs credentials and their ARNs configured as SNS_FCM/APNS_APPLICATION_ARN."""

from __future__ import annotations

import click
from flask.cli import AppGroup

notifications_cli = AppGroup("notifications", help="Notification channels.")


@notifications_cli.command("create-platform-apps")
@click.option("--credential", default="local-development", help="Platform credential (FCM key / APNs cert).")
def create_platform_apps(credential: str) -> None:
    """Create (idempotently) the tickets-fcm and tickets-apns platform applications; print their ARNs."""
    from app.channels import sns_client

    client = sns_client()
    for name, platform in (("tickets-fcm", "GCM"), ("tickets-apns", "APNS")):
        arn = client.create_platform_application(Name=name, Platform=platform,
                                                 Attributes={"PlatformCredential": credential})
        click.echo(f"{platform}: {arn['PlatformApplicationArn']}")
