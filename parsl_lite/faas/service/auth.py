"""Bearer tokens: made with ``secrets``, stored as SHA-256 hex only, checked on every request.

A refusal is a 401 whose reason says which of the three things was wrong:
no ``Authorization`` header, a header that is not ``Bearer <token>``, or a
token the service does not know.
"""
from __future__ import annotations

import hashlib
import secrets
from typing import Any, Optional

from parsl_lite.faas.service.store import User
from parsl_lite.faas.service.validation import ApiError

_MAX_CACHED = 10_000


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_from_header(header: Optional[str]) -> str:
    """The token in an ``Authorization`` header value; 401 naming what is wrong with it."""
    if header is None:
        raise ApiError(401, "missing_token", "no Authorization header; send 'Authorization: Bearer <token>'")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise ApiError(401, "malformed_token", "the Authorization header is not 'Bearer <token>'")
    return token


class Authenticator:
    """Token -> user, through the store, remembering hits.

    Users and tokens are never deleted by the store interface, so a cached
    hit stays true; a miss is not cached (a token added a moment ago by
    ``parsl-lite service add-user`` in another process must work at once).
    """

    def __init__(self, astore: Any) -> None:
        self._astore = astore
        self._users: dict[str, User] = {}

    async def user_for(self, header: Optional[str]) -> User:
        token_hash = hash_token(token_from_header(header))
        user = self._users.get(token_hash)
        if user is None:
            user = await self._astore.user_for_token(token_hash)
            if user is None:
                raise ApiError(401, "bad_token", "unknown token (not issued by this service, or mistyped)")
            if len(self._users) >= _MAX_CACHED:
                self._users.clear()
            self._users[token_hash] = user
        return user
