"""How the gateway reads policies: the effective spec of a connection, and a cheap "did anything change?".

A session loads its connection's spec when it opens (`policy_spec_for`). A
gateway node polls `policy_revision()` every few seconds; when the number
differs from the last one it saw, it reloads the specs of the connections
its live sessions use, in one query (`policy_specs_for`). Every change made
through connections.actions (rules, description, attaching or detaching a
connection) gives the policies involved a revision larger than any before,
so any change moves the maximum. Deleting a policy may lower it, which is a
change too; a deleted policy guards no connection (the foreign key protects
it), so no session's policy changes with it.

These functions use the ORM: call them from a thread (database_sync_to_async),
never from the proxy's event loop.
"""

import logging
from collections.abc import Iterable

from django.db.models import Max

from connections.models import Connection, Policy
from connections.policy.policy_file import PolicyFileError, spec_from_dict
from connections.policy.rules import PolicySpec

logger = logging.getLogger(__name__)

_SPEC_CACHE_SIZE = 256
# (policy id, revision) -> spec. A revision is never reused for other rules, so entries never go stale.
_spec_cache: dict[tuple[int, int], PolicySpec] = {}


def policy_revision() -> int:
    """The largest revision of any policy (0 when there are none): poll it, and reload when it differs."""
    return Policy.objects.aggregate(revision=Max("revision"))["revision"] or 0


def spec_of(policy: Policy) -> PolicySpec:
    """The spec a policy row holds. Rules that no longer validate give a deny-everything spec: fail closed."""
    key = (policy.pk, policy.revision)
    cached = _spec_cache.get(key)
    if cached is not None:
        return cached
    try:
        spec = spec_from_dict(policy.name, policy.rules)
    except PolicyFileError as exc:
        logger.error("policy %s has invalid stored rules, denying everything: %s", policy.name, exc)
        return PolicySpec(name=policy.name, default="deny", unparseable="deny", opaque="deny")
    if policy.revision:  # revision 0 was never set by an action: do not trust it as a cache key
        if len(_spec_cache) >= _SPEC_CACHE_SIZE:
            _spec_cache.clear()
        _spec_cache[key] = spec
    return spec


def policy_specs_for(connection_names: Iterable[str]) -> dict[str, PolicySpec | None]:
    """{connection name: its spec, or None if it has no policy}, in one query.

    Names of connections that do not exist are left out of the result, so a
    caller can tell "deleted" (absent) from "no policy" (None).
    """
    policies = policies_by_connection(connection_names)
    return {name: None if policy is None else spec_of(policy) for name, policy in policies.items()}


def policies_by_connection(connection_names: Iterable[str]) -> dict[str, Policy | None]:
    """{connection name: its policy row (id, name, rules, revision), or None}, in one query."""
    names = set(connection_names)
    if not names:
        return {}
    rows = (
        Connection.objects.filter(name__in=names)
        .select_related("policy")
        .only("name", "policy__name", "policy__rules", "policy__revision")
    )
    return {row.name: row.policy for row in rows}


def policy_spec_for(connection: Connection | str) -> PolicySpec | None:
    """The spec of a connection (an instance or a name), read fresh; None means no policy: all allowed, none masked.

    Raises Connection.DoesNotExist when there is no such connection, so a
    deleted connection is never mistaken for an unguarded one.
    """
    name = connection if isinstance(connection, str) else connection.name
    specs = policy_specs_for([name])
    if name not in specs:
        raise Connection.DoesNotExist(f"no connection named {name!r}")
    return specs[name]
