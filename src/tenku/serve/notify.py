"""Webhooks: ``video.completed`` and ``video.failed`` posted to the URL set on a key.

The body is an event in OpenAI's webhook shape (``{"id", "object": "event", "type",
"created_at", "data"}``, ``data`` being the video object); it is signed the Standard Webhooks
way: ``webhook-signature: v1,BASE64(HMAC-SHA256(secret, "ID.TIMESTAMP.BODY"))`` with the
``webhook-id`` and ``webhook-timestamp`` headers, so a receiver can check it came from us.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from tenku.serve.convert import video_object
from tenku.serve.store import JobStore

log = logging.getLogger("tenku.serve.notify")
ATTEMPTS = 3
TIMEOUT_S = 5.0


def sign(secret: str, event_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for ``body``."""
    message = f"{event_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def deliver_event(url: str, secret: str, event_type: str, video: dict[str, Any]) -> bool:
    """POST one event to ``url``, retrying twice with back-off; True once it is accepted (2xx)."""
    event_id = f"evt_{secrets.token_hex(12)}"
    timestamp = int(time.time())
    body = json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": event_type,
            "created_at": timestamp,
            "data": video,
        }
    ).encode()
    headers = {
        "content-type": "application/json",
        "user-agent": "tenku-webhooks",
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, event_id, timestamp, body),
    }
    for attempt in range(ATTEMPTS):
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                if 200 <= response.status < 300:
                    return True
        except (urllib.error.URLError, OSError) as error:
            log.warning("webhook %s to %s failed (%s)", event_type, url, error)
        time.sleep(0.5 * 2**attempt)
    return False


def notify_finished(store: JobStore, job_id: str) -> None:
    """Post ``video.completed`` or ``video.failed`` for a finished job to its key's webhook
    (if it has one), from a background thread."""
    job = store.get(None, job_id)
    if job is None or job["status"] not in ("completed", "failed"):
        return
    try:
        key = store.key(job["key_id"])
    except KeyError:
        return
    if key.webhook_url and key.webhook_secret:
        event = f"video.{job['status']}"
        threading.Thread(
            target=deliver_event,
            args=(key.webhook_url, key.webhook_secret, event, video_object(job)),
            daemon=True,
        ).start()
