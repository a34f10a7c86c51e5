"""The person a command acts as (`--as USER`): looked up once, with a clear error when unknown."""

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError


def get_user(username: str):
    """The user named `username`; CommandError when there is none."""
    try:
        return get_user_model().objects.get(username=username)
    except get_user_model().DoesNotExist:
        raise CommandError(f"no user named {username!r}") from None
