"""Feedback tokens: proof, checkable by any worker, that a response showed an item at a position.

Each served result carries ``feedback_token``: ``<position>.<mac>``, where ``mac`` is an
HMAC-SHA256 (truncated to 128 bits, base64url) of the request id, the item id and the
position under the deployment's secret. A click or purchase sends it back; the worker
that answers recomputes the MAC, so feedback on an item a request did not show is refused
whichever worker served the page, and the position cannot be forged.

The secret is ``$SHOPRANK_FEEDBACK_SECRET`` where a deployment sets one (every replica the
same). Without it the first worker creates a random one in the feedback folder
(``paths.feedback``/``feedback.secret``, mode 0600) and the others read it: the workers of
one deployment share that folder (they write the feedback log there), and tokens stay
valid across restarts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

SECRET_ENV = "SHOPRANK_FEEDBACK_SECRET"
SECRET_FILE = "feedback.secret"
MAC_BYTES = 16


class FeedbackTokens:
    """Signs and checks feedback tokens under one secret."""

    def __init__(self, secret: bytes):
        if len(secret) < 16:
            raise ValueError("the feedback secret must be at least 16 bytes")
        self._secret = secret

    def _mac(self, request_id: str, item_id: str, position: int) -> str:
        message = f"{request_id}\n{item_id}\n{position}".encode()
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()[:MAC_BYTES]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def sign(self, request_id: str, item_id: str, position: int) -> str:
        return f"{position}.{self._mac(request_id, item_id, position)}"

    def position(self, token: str, request_id: str, item_id: str) -> int | None:
        """The position ``token`` proves ``item_id`` had in ``request_id``; None when it proves nothing."""
        head, _, mac = token.partition(".")
        if not head.isdigit() or len(head) > 6:
            return None
        position = int(head)
        return position if hmac.compare_digest(mac, self._mac(request_id, item_id, position)) else None


def deployment_secret(folder: Path) -> bytes:
    """``$SHOPRANK_FEEDBACK_SECRET``, else the secret file in ``folder``, created once if missing."""
    given = os.environ.get(SECRET_ENV)
    if given:
        return given.encode()
    path = folder / SECRET_FILE
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{SECRET_FILE}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
        try:  # a link does not replace: when workers race, the first one's secret is everyone's
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip().encode()
