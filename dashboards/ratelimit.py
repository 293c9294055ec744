"""Backoff after failed sign-ins, and who the client is (pure: the caller brings the clock).

A name (or a client) has a few free failures; after that each failure doubles the wait
before the next attempt is even checked, up to a cap. Failures older than the window are
forgotten, and a successful sign-in forgets the name's (not the client's: an attacker
signing in to its own account must not reset the counter it builds up against others).
Refusals *because* of the backoff are not counted (nor stored), so waiting it out is
always enough.

Which failures count as the name's is the caller's choice (:mod:`dashboards.auth`): from
every client, except for a client that has signed in as that user before, which counts
only its own failures at that name — so a name alone cannot lock its owner out.

With the defaults a name can be guessed at about fifteen times an hour, whatever the number
of clients, while the person who mistypes a password twice never notices.

The client is the socket's address (:func:`client_address`), or, behind a reverse proxy
the operator names in ``[dashboard] trusted_proxy_header``, the address that proxy put in
that header. Backoffs count per :func:`client_key`: the address, or for IPv6 its /64 (one
host usually holds a whole /64, so counting per address would give it 2^64 buckets).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from dashboards.errors import RateLimited


@dataclass(frozen=True)
class Backoff:
    free_failures: int
    base_delay_s: float
    max_delay_s: float

    def delay_s(self, failures: int) -> float:
        """Seconds to wait after the last of ``failures`` recent failures before the next try."""
        if failures < self.free_failures:
            return 0.0
        return float(min(self.base_delay_s * 2 ** (failures - self.free_failures), self.max_delay_s))


@dataclass(frozen=True)
class Throttle:
    user: Backoff = Backoff(free_failures=5, base_delay_s=1.0, max_delay_s=900.0)
    client: Backoff = Backoff(free_failures=20, base_delay_s=1.0, max_delay_s=900.0)
    window_s: float = 3600.0

    def since(self, now: datetime) -> datetime:
        """Failures before this instant no longer count."""
        return now - timedelta(seconds=self.window_s)


@dataclass(frozen=True)
class ThrottleCheck:
    passed: bool
    retry_at: datetime | None  # when an attempt will be checked again (None: now)
    scope: str | None  # "user" or "client": which backoff refused
    user_failures: int
    client_failures: int


def _retry_at(backoff: Backoff, failures: Sequence[datetime]) -> datetime | None:
    delay = backoff.delay_s(len(failures))
    if not failures or delay <= 0:
        return None
    return max(failures) + timedelta(seconds=delay)


def check_throttle(
    throttle: Throttle,
    user_failures: Sequence[datetime],
    client_failures: Sequence[datetime],
    now: datetime,
) -> ThrottleCheck:
    """May a sign-in be attempted at ``now``, given the recent counted failures?"""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    since = throttle.since(now)
    users = [t for t in user_failures if t >= since]
    clients = [t for t in client_failures if t >= since]
    waits = [
        (at, scope)
        for at, scope in ((_retry_at(throttle.user, users), "user"), (_retry_at(throttle.client, clients), "client"))
        if at is not None and at > now
    ]
    if not waits:
        return ThrottleCheck(True, None, None, len(users), len(clients))
    at, scope = max(waits)
    return ThrottleCheck(False, at, scope, len(users), len(clients))


def verify_throttle(
    throttle: Throttle,
    user_failures: Sequence[datetime],
    client_failures: Sequence[datetime],
    now: datetime,
) -> ThrottleCheck:
    """As :func:`check_throttle`, raising :class:`RateLimited` when an attempt must wait."""
    result = check_throttle(throttle, user_failures, client_failures, now)
    if not result.passed:
        assert result.retry_at is not None and result.scope is not None
        seconds = max(1, round((result.retry_at - now).total_seconds()))
        raise RateLimited(
            f"too many failed sign-ins {'for this user' if result.scope == 'user' else 'from this address'}; "
            f"try again in {seconds} s",
            retry_at=result.retry_at,
            scope=result.scope,
        )
    return result


LOCAL = "local"
"""The client of a loopback connection (Streamlit does not tell its address)."""


def _address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def client_address(socket_address: str | None, headers: Mapping[str, str], trusted_header: str) -> str:
    """The client's address: the socket's, or the one a trusted reverse proxy put in its header.

    With ``trusted_header`` empty (the default) headers are ignored: any client can write
    them. Named, the header's **last** entry is taken — the address the proxy in front of
    the dashboards saw and appended (``X-Forwarded-For: <anything the client sent>, <its
    address>``); a missing or malformed header falls back to the socket's address.
    """
    if trusted_header:
        wanted = trusted_header.lower()
        value = next((v for k, v in headers.items() if k.lower() == wanted), None)
        found = _address(value.rsplit(",", 1)[-1]) if value else None
        if found is not None:
            return found
    return socket_address if isinstance(socket_address, str) and socket_address else LOCAL


def client_key(address: str) -> str:
    """What a client's backoff is counted under: its address, an IPv6 address's /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:128]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
