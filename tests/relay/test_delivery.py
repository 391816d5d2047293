"""relay.delivery.webhook_headers: the five headers every webhook carries."""

from __future__ import annotations

import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from relay.delivery.send import webhook_headers
from relay.delivery.signing import signature_header
from relay.version import VERSION

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BODY = b'{"type":"job.completed","data":{"job_id":"job_1"}}'


def test_all_five_headers() -> None:
    headers = webhook_headers("msg_1", BODY, (SECRET,), 1614265330)
    assert headers == {
        "content-type": "application/json",
        "user-agent": f"varg-relay/{VERSION}",
        "webhook-id": "msg_1",
        "webhook-timestamp": "1614265330",
        "webhook-signature": signature_header((SECRET,), "msg_1", 1614265330, BODY),
    }


def test_user_agent_names_the_installed_version() -> None:
    agent = webhook_headers("msg_1", BODY, (SECRET,), 0)["user-agent"]
    assert agent.startswith("varg-relay/")
    assert agent.removeprefix("varg-relay/")[:1].isdigit()


def test_signature_verifies_with_standardwebhooks() -> None:
    headers = webhook_headers("msg_1", BODY, (SECRET,), int(time.time()))
    assert Webhook(SECRET).verify(BODY, headers)["type"] == "job.completed"


def test_signature_does_not_cover_another_body() -> None:
    headers = webhook_headers("msg_1", BODY, (SECRET,), int(time.time()))
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY.replace(b"completed", b"failed"), headers)
