"""One bounded HTTP POST for talking to witnesses and time-stamping authorities.

Both are third parties: a slow or hostile one must not hold the log for long or fill its
memory. The answer is read as it arrives, up to ``limit`` bytes (one more is read to tell
that it was longer) and within ``total_s`` seconds overall, on top of the per-read time-out
(a peer that trickles a byte at a time is cut at the deadline);
redirects are not followed. Network failures surface as ``requests`` exceptions, a
deadline overrun as :class:`requests.Timeout`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import requests
import urllib3


def post(
    session: requests.Session,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    limit: int,
    connect_s: float = 5.0,
    total_s: float = 15.0,
) -> tuple[int, str, bytes]:
    """(status, content type, at most ``limit + 1`` bytes of the answer)."""
    deadline = time.monotonic() + total_s
    with session.post(
        url,
        data=body,
        headers=dict(headers),
        timeout=(connect_s, total_s),
        stream=True,
        allow_redirects=False,
    ) as resp:
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            if time.monotonic() > deadline:
                raise requests.Timeout(f"the answer took more than {total_s:g} s")
            try:
                chunk = resp.raw.read1(min(8192, limit + 1 - size), decode_content=True)  # what has arrived
            except urllib3.exceptions.ReadTimeoutError as exc:
                raise requests.Timeout(str(exc)) from exc
            except urllib3.exceptions.HTTPError as exc:
                raise requests.ConnectionError(str(exc)) from exc
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return resp.status_code, resp.headers.get("Content-Type", ""), b"".join(chunks)
