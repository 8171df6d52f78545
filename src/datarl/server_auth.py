"""Who may talk to ``datarl serve``: the shared token, where clients put it, and which hosts need one.

- A request is authorized when it carries the token in ``Authorization: Bearer <token>`` or as the first
  segment of its path (``http://host:port/<token>/get_reward``: for clients that send no header, such as
  OpenRLHF's remote reward client). Both are compared as SHA-256 digests with :func:`hmac.compare_digest`,
  so the time taken says nothing about the token, its length included.
- A token is at least :data:`MIN_TOKEN_CHARS` characters from the URL-safe set (letters, digits, ``-``,
  ``_``, ``.``, ``~``), so that it can stand in a URL path as it is; :func:`new_token` makes one.
- Listening anywhere but loopback without a token is refused unless the user says ``--insecure``
  (:func:`bind_problem`): the port would let anyone who reaches it read what is scored and feed rewards
  into a training run.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets

__all__ = ["TOKEN_ENV", "MIN_TOKEN_CHARS", "TokenCheck", "bind_problem", "is_loopback", "new_token", "token_problem"]

TOKEN_ENV = "DATARL_SERVE_TOKEN"
MIN_TOKEN_CHARS = 16
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~-]+")
_MAKE_ONE = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def token_problem(token: str) -> str | None:
    """Why ``token`` cannot be used, or None."""
    if len(token) < MIN_TOKEN_CHARS:
        return f"the token has {len(token)} characters; use at least {MIN_TOKEN_CHARS} (make one: {_MAKE_ONE})"
    if not _TOKEN_CHARS.fullmatch(token):
        return f"the token may hold only letters, digits, '-', '_', '.' and '~' (make one: {_MAKE_ONE})"
    return None


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1); any other name or address is not."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def bind_problem(host: str, token: str | None, insecure: bool) -> str | None:
    """Why listening on ``host`` with this token setting is refused, or None."""
    if token or insecure or is_loopback(host):
        return None
    return (
        f"--host {host} is not a loopback address and no token is set: anyone who can reach the port could read "
        f"what is scored and feed rewards into training; set {TOKEN_ENV} (or --token) and give clients the "
        "token, or pass --insecure on a network you trust"
    )


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


class TokenCheck:
    """Checks requests against one token (``None``: every request is authorized)."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        self._digest = _digest(token) if token else b""

    def matches(self, candidate: str) -> bool:
        """Constant-time comparison of ``candidate`` with the token."""
        return hmac.compare_digest(_digest(candidate), self._digest)

    def authorize(self, authorization: str | None, path: str) -> tuple[bool, str]:
        """``(authorized, path)``: the path has the token segment removed when the token came in the path."""
        if not self.token:
            return True, path
        scheme, _, credentials = (authorization or "").strip().partition(" ")
        header_ok = self.matches(credentials.strip()) if scheme.lower() == "bearer" else False
        first, sep, rest = path.lstrip("/").partition("/")
        if self.matches(first):
            return True, "/" + rest
        return header_ok, path

    def redact(self, path: str) -> str:
        """``path`` with the token replaced by ``<token>`` (for logs)."""
        return path.replace(self.token, "<token>") if self.token else path
