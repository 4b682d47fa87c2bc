"""The `standardwebhooks` reference library (pinned in test/clients/requirements.txt)
verifying webhooks exactly as a receiver got them from klein-serve
(test/e2e/standard-webhooks.test.ts captures them and checks what this prints).

Usage: webhook_verify.py SECRET DELIVERIES_JSON, where the file holds a list of
{"name", "body_b64", "headers": [[name, value], ...]}: the raw body bytes and the raw header
lines as received. For each delivery it prints what `Webhook(secret).verify(body, headers)`
does with the delivery as received, with the body changed by one byte, with the headers
replayed six minutes later (past the library's 5-minute tolerance), with the timestamp
header moved a minute on (a replay made to look fresh), and with another secret: either the
parsed payload ("ok") or the WebhookVerificationError message.
"""
import base64
import json
import sys
from datetime import timedelta

import standardwebhooks.webhooks as sw
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

REAL_DATETIME = sw.datetime


class SixMinutesLater(REAL_DATETIME):
    """The library reads the clock as `datetime.now` in its own module; this is that clock
    six minutes on, so a delivery verified now is verified as a replay would be."""

    @classmethod
    def now(cls, tz=None):
        return REAL_DATETIME.now(tz) + timedelta(minutes=6)


def outcome(secret: str, body: bytes, headers: dict, clock=REAL_DATETIME) -> dict:
    sw.datetime = clock
    try:
        return {"ok": Webhook(secret).verify(body, headers)}
    except WebhookVerificationError as e:
        return {"error": str(e)}
    finally:
        sw.datetime = REAL_DATETIME


def main() -> None:
    secret, path = sys.argv[1:3]
    with open(path) as f:
        deliveries = json.load(f)
    other = "whsec_" + base64.b64encode(b"not the account's secret").decode()
    out = {}
    for d in deliveries:
        body = base64.b64decode(d["body_b64"])
        headers = dict(d["headers"])
        tampered = bytearray(body)
        tampered[len(tampered) // 2] ^= 0x01
        # A minute later than signed: still within the tolerance, so only the signature can refuse it.
        fresh = {k: (str(int(v) + 60) if k.lower() == "webhook-timestamp" else v) for k, v in headers.items()}
        out[d["name"]] = {
            "as_received": outcome(secret, body, headers),
            "tampered_body": outcome(secret, bytes(tampered), headers),
            "replayed_later": outcome(secret, body, headers, SixMinutesLater),
            "restamped": outcome(secret, body, fresh),
            "other_secret": outcome(other, body, headers),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
