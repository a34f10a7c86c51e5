"""access_connection with personas: a granted agent, a group member, an outsider, a superuser."""

import pytest
from django.contrib.auth import get_user_model
from guardian.shortcuts import assign_perm

from connections.access import access_connection, connections_for
from connections.actions import do_grant_connect
from connections.models import Connection


@pytest.fixture
def personas(make_connection, make_agent, make_group):
    warehouse = make_connection("warehouse")
    make_connection("billing")
    granted, member, outsider = make_agent("granted"), make_agent("member"), make_agent("outsider")
    do_grant_connect(granted, warehouse)
    assign_perm("connections.connect", make_group("analysts", member.user), warehouse)
    return {"warehouse": warehouse, "granted": granted, "member": member, "outsider": outsider}


def test_it_lets_a_granted_agent_connect(personas):
    assert access_connection(personas["granted"].user, "warehouse", "connect") == personas["warehouse"]


def test_it_counts_group_permissions(personas):
    assert access_connection(personas["member"].user, "warehouse", "connect") == personas["warehouse"]


def test_it_turns_an_outsider_away(personas):
    with pytest.raises(Connection.DoesNotExist):
        access_connection(personas["outsider"].user, "warehouse", "connect")


def test_it_grants_per_connection_not_globally(personas):
    with pytest.raises(Connection.DoesNotExist):
        access_connection(personas["granted"].user, "billing", "connect")


def test_it_makes_missing_and_forbidden_look_the_same(personas):
    user = personas["outsider"].user
    with pytest.raises(Connection.DoesNotExist) as forbidden:
        access_connection(user, "billing", "connect")
    with pytest.raises(Connection.DoesNotExist) as missing:
        access_connection(user, "no-such-db", "connect")
    assert type(forbidden.value) is type(missing.value)
    assert str(forbidden.value).replace("billing", "X") == str(missing.value).replace("no-such-db", "X")


def test_it_lets_a_superuser_do_everything(personas):
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw-irrelevant")
    assert access_connection(admin, "billing", "connect").name == "billing"
    assert set(connections_for(admin, "connect").values_list("name", flat=True)) == {"billing", "warehouse"}


def test_it_denies_an_inactive_user(personas):
    user = personas["granted"].user
    user.is_active = False
    user.save()
    with pytest.raises(Connection.DoesNotExist):
        access_connection(user, "warehouse", "connect")
    assert not connections_for(user, "connect").exists()


def test_it_lists_what_a_persona_may_use(personas):
    assert list(connections_for(personas["granted"].user, "connect")) == [personas["warehouse"]]
    assert list(connections_for(personas["member"].user, "connect")) == [personas["warehouse"]]
    assert list(connections_for(personas["outsider"].user, "connect")) == []


def test_it_rejects_an_unknown_action(personas):
    with pytest.raises(ValueError, match="unknown connection action"):
        access_connection(personas["granted"].user, "warehouse", "drop")
