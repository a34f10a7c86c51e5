"""How allauth treats local accounts here: sign-up is closed unless GATEHOUSE_OPEN_SIGNUP says otherwise.

People who review production access get their accounts from an admin (or,
later, single sign-on); an open sign-up page would let anyone make one.
"""

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings


class GatehouseAccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request) -> bool:
        return settings.GATEHOUSE_OPEN_SIGNUP
