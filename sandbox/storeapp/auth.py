"""Token authentication against the one token given with --token."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.conf import settings
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed


@dataclass(frozen=True)
class TokenUser:
    """The caller who showed the token (the store has no user table)."""

    is_authenticated: bool = True


class SingleTokenAuthentication(TokenAuthentication):
    """DRF's `Authorization: Token T` parsing and messages, one fixed token.

    Only the lookup differs from DRF's: the token comes from the settings
    instead of the authtoken table, so no users or migrations are needed.
    """

    def authenticate_credentials(self, key: str) -> tuple[TokenUser, str]:
        if not secrets.compare_digest(key.encode(), settings.STORE_TOKEN.encode()):
            raise AuthenticationFailed("Invalid token.")
        return TokenUser(), key
