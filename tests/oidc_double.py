"""An OpenID Connect provider **test double** (tests only): a small HTTP server on 127.0.0.1.

It plays a company's identity provider for the authorization code flow of OpenID Connect
Core 1.0, as a relying party such as Streamlit's ``st.login`` (Authlib) drives it. It is
not a mock of one test: it keeps state, checks what the relying party sends and answers
as a provider does; what it does not implement, it refuses.

Routes
- ``GET /.well-known/openid-configuration`` — the discovery document (OpenID Connect
  Discovery 1.0): issuer, endpoints, RS256, ``code`` only, PKCE ``S256``.
- ``GET /jwks`` — the public half of one RSA-2048 signing key (RFC 7517), with a ``kid``.
- ``GET /authorize`` — checks ``client_id``, the registered ``redirect_uri``,
  ``response_type=code``, an ``openid`` scope and PKCE ``S256`` when a challenge is sent;
  then "signs in" the identity the test chose with :meth:`OidcDouble.sign_in_as` (the
  stand-in for a person at the provider's login page) and redirects back with a one-time
  ``code`` and the ``state``.
- ``POST /token`` — client authentication (``client_secret_basic`` or
  ``client_secret_post``), ``grant_type=authorization_code``, the code once, the same
  ``redirect_uri``, the PKCE verifier; answers an access token and an RS256-signed ID
  token (``iss``, ``sub``, ``aud``, ``iat``, ``exp``, ``nonce``, and the identity's claims
  such as ``email`` and ``email_verified``).
- ``GET /userinfo`` — the identity's claims for a valid bearer access token.

Errors are OAuth 2.0 error responses (RFC 6749 §4.1.2.1, §5.2). :attr:`OidcDouble.log`
records each request's method and path.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _uint(n: int) -> str:
    return _b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    nonce: str | None
    challenge: str | None
    claims: dict[str, Any]
    issued: float


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


@dataclass
class OidcDouble:
    """``with OidcDouble(client_id, client_secret, redirect_uri) as idp: idp.url …``"""

    client_id: str
    client_secret: str
    redirect_uri: str
    log: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._kid = secrets.token_hex(8)
        self._identity: dict[str, Any] | None = None
        self._grants: dict[str, _Grant] = {}
        self._tokens: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def metadata_url(self) -> str:
        return f"{self.url}/.well-known/openid-configuration"

    def __enter__(self) -> OidcDouble:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def sign_in_as(self, sub: str, **claims: Any) -> None:
        """The person who will sign in at the next ``/authorize``: subject and claims."""
        with self._lock:
            self._identity = {"sub": sub, **claims}

    # ------------------------------------------------------------------ the protocol

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "userinfo_endpoint": f"{self.url}/userinfo",
            "jwks_uri": f"{self.url}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "email", "email_verified", "name"],
        }

    def jwks(self) -> dict[str, Any]:
        public = self._key.public_key().public_numbers()
        key = {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self._kid, "n": _uint(public.n), "e": _uint(public.e)}
        return {"keys": [key]}

    def _id_token(self, grant: _Grant) -> str:
        now = int(time.time())
        claims = {"iss": self.url, "aud": grant.client_id, "iat": now, "exp": now + 300, **grant.claims}
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        header = {"alg": "RS256", "typ": "JWT", "kid": self._kid}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}".encode("ascii")
        signature = self._key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input.decode('ascii')}.{_b64(signature)}"

    def authorize(self, query: dict[str, str]) -> str:
        """The URL the browser is sent back to (or raises OAuthError before any redirect)."""
        if query.get("client_id") != self.client_id:
            raise OAuthError("unauthorized_client", "unknown client_id")
        if query.get("redirect_uri") != self.redirect_uri:
            raise OAuthError("invalid_request", "redirect_uri is not registered for this client")
        if query.get("response_type") != "code":
            raise OAuthError("unsupported_response_type", "only the code flow")
        if "openid" not in query.get("scope", "").split():
            raise OAuthError("invalid_scope", "the openid scope is required")
        challenge = query.get("code_challenge")
        if challenge is not None and query.get("code_challenge_method") != "S256":
            raise OAuthError("invalid_request", "PKCE needs code_challenge_method S256")
        with self._lock:
            if self._identity is None:
                raise OAuthError("access_denied", "no one signs in: call sign_in_as() first")
            code = secrets.token_urlsafe(24)
            self._grants[code] = _Grant(
                self.client_id, self.redirect_uri, query.get("nonce"), challenge, dict(self._identity), time.time()
            )
        back = {"code": code}
        if "state" in query:
            back["state"] = query["state"]
        return f"{self.redirect_uri}?{urlencode(back)}"

    def token(self, form: dict[str, str], authorization: str | None) -> dict[str, Any]:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.startswith("Basic "):
            client_id, _, secret = base64.b64decode(authorization[6:]).decode().partition(":")
        if client_id != self.client_id or secret != self.client_secret:
            raise OAuthError("invalid_client", "client authentication failed", 401)
        if form.get("grant_type") != "authorization_code":
            raise OAuthError("unsupported_grant_type", "only authorization_code")
        with self._lock:
            grant = self._grants.pop(form.get("code", ""), None)  # a code is good once
        if grant is None or time.time() - grant.issued > 60:
            raise OAuthError("invalid_grant", "unknown, used or expired code")
        if form.get("redirect_uri") != grant.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri differs from the authorization request")
        if grant.challenge is not None:
            verifier = form.get("code_verifier", "")
            if _b64(hashlib.sha256(verifier.encode("ascii")).digest()) != grant.challenge:
                raise OAuthError("invalid_grant", "PKCE verifier does not match")
        access_token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[access_token] = grant.claims
        return {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "openid email profile",
            "id_token": self._id_token(grant),
        }

    def userinfo(self, authorization: str | None) -> dict[str, Any]:
        token = authorization[7:] if authorization and authorization.startswith("Bearer ") else ""
        with self._lock:
            claims = self._tokens.get(token)
        if claims is None:
            raise OAuthError("invalid_token", "unknown access token", 401)
        return claims

    # ------------------------------------------------------------------ HTTP

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet: the log list keeps what matters
                pass

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, exc: OAuthError) -> None:
                self._json(exc.status, {"error": exc.error, "error_description": exc.description})

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                idp.log.append(("GET", parts.path))
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                try:
                    if parts.path == "/.well-known/openid-configuration":
                        self._json(200, idp.discovery())
                    elif parts.path == "/jwks":
                        self._json(200, idp.jwks())
                    elif parts.path == "/authorize":
                        location = idp.authorize(query)
                        self.send_response(302)
                        self.send_header("Location", location)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                    elif parts.path == "/userinfo":
                        self._json(200, idp.userinfo(self.headers.get("Authorization")))
                    else:
                        self._json(404, {"error": "not_found", "error_description": parts.path})
                except OAuthError as exc:
                    self._error(exc)

            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                idp.log.append(("POST", parts.path))
                length = int(self.headers.get("Content-Length") or 0)
                if length > 65536:
                    self._json(413, {"error": "invalid_request", "error_description": "body too large"})
                    return
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                try:
                    if parts.path != "/token":
                        raise OAuthError("invalid_request", f"no POST {parts.path}", 404)
                    self._json(200, idp.token(form, self.headers.get("Authorization")))
                except OAuthError as exc:
                    self._error(exc)

        return Handler
