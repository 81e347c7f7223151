"""What goes to the providers, and how their errors are classified, without calling them."""

from __future__ import annotations

import json

from botocore.exceptions import ClientError, EndpointConnectionError

from app.channels import Message, PermanentError, TransientError, _aws_error, push_payload


def message(kind: str = "queue_admitted") -> Message:
    return Message(title="It's your turn!", body="Book now", deep_link="ticketapp://queue/1",
                   web_link="https://t.example/events/1/queue", event_id=1, admitted_until_iso="2026-11-28T10:00:00",
                   kind=kind)


def test_one_push_payload_per_platform_carries_the_links_and_the_kind():
    payload = json.loads(push_payload(message("waitlist_offer")))
    gcm, apns = json.loads(payload["GCM"]), json.loads(payload["APNS"])
    assert gcm["notification"] == {"title": "It's your turn!", "body": "Book now"}
    assert gcm["data"]["deep_link"] == "ticketapp://queue/1" and gcm["data"]["type"] == "waitlist_offer"
    assert apns["aps"]["alert"]["title"] == "It's your turn!" and apns["web_link"].endswith("/events/1/queue")
    assert payload["APNS_SANDBOX"] == payload["APNS"] and payload["default"] == "It's your turn! Book now"


def aws(code: str, status: int = 400, text: str = "") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": text}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "Publish")


def test_provider_errors_are_retried_or_given_up_as_they_deserve():
    disabled = _aws_error(aws("EndpointDisabled"))
    assert isinstance(disabled, PermanentError) and disabled.disable_device
    assert _aws_error(aws("NotFound")).disable_device
    assert isinstance(_aws_error(aws("Throttling")), TransientError)
    assert isinstance(_aws_error(aws("Whatever", status=503)), TransientError)
    assert isinstance(_aws_error(EndpointConnectionError(endpoint_url="http://sns")), TransientError)
    refused = _aws_error(aws("AuthorizationError", status=403))
    assert isinstance(refused, PermanentError) and not refused.disable_device
