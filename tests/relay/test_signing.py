"""relay.delivery.signing: Standard Webhooks signatures, checked with the receivers' library."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from relay.delivery.signing import new_secret, signature, signature_header

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_SECRET = "whsec_" + base64.b64encode(b"another-key-of-32-bytes-length!!").decode()
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
BODY = b'{"test": 2432232314}'


def headers(msg_id: str, timestamp: int, sig: str) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": sig}


def test_standard_webhooks_test_vector() -> None:
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert signature(SECRET, MSG_ID, 1614265330, BODY) == expected


def test_one_secret_one_signature() -> None:
    assert signature_header((SECRET,), MSG_ID, 1614265330, BODY) == signature(
        SECRET, MSG_ID, 1614265330, BODY
    )


def test_several_secrets_give_space_separated_signatures() -> None:
    header = signature_header((SECRET, OTHER_SECRET), MSG_ID, 1614265330, BODY)
    parts = header.split(" ")
    assert parts == [signature(SECRET, MSG_ID, 1614265330, BODY),
                     signature(OTHER_SECRET, MSG_ID, 1614265330, BODY)]
    assert parts[0] != parts[1]
    assert all(part.startswith("v1,") for part in parts)


@pytest.mark.parametrize("secret", [SECRET, OTHER_SECRET])
def test_each_secret_verifies_with_standardwebhooks(secret: str) -> None:
    now = int(time.time())
    header = signature_header((SECRET, OTHER_SECRET), MSG_ID, now, BODY)
    assert Webhook(secret).verify(BODY, headers(MSG_ID, now, header)) == {"test": 2432232314}


def test_tampered_body_fails() -> None:
    now = int(time.time())
    header = signature_header((SECRET,), MSG_ID, now, BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(b'{"test": 2432232315}', headers(MSG_ID, now, header))


def test_other_message_id_fails() -> None:
    now = int(time.time())
    header = signature_header((SECRET,), MSG_ID, now, BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY, headers("msg_other", now, header))


def test_unknown_secret_fails() -> None:
    now = int(time.time())
    header = signature_header((OTHER_SECRET,), MSG_ID, now, BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY, headers(MSG_ID, now, header))


def test_new_secret_is_usable_and_random() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 24
    assert new_secret() != secret
    now = int(time.time())
    Webhook(secret).verify(BODY, headers(MSG_ID, now, signature(secret, MSG_ID, now, BODY)))
