"""Admin for connections, agents, tokens and policies; every change goes through connections.actions.

Secrets never render: a connection's credentials can only be replaced, and
tokens are issued by `manage.py agents token` so their plaintext is shown once.
A policy's rules are edited as YAML and checked by the same parser as
`manage.py policies apply`, with the same messages.
"""

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.html import format_html_join
from guardian.admin import GuardedModelAdmin

from connections.actions import (
    do_create_service_account,
    do_delete_connection,
    do_delete_policy,
    do_delete_service_account,
    do_revoke_token,
    do_save_policy,
    do_set_connection_password,
    do_set_connection_policy,
    validate_ca_pem,
    validate_name,
    validate_port,
)
from connections.models import AccessToken, AgentKey, Connection, Policy, ServiceAccount
from connections.policy.policy_file import PolicyFileError, parse_policy_body, policy_body_yaml
from connections.policy_store import spec_of
from connections.ssh_actions import normalize_public_key, parse_forwarding


class ConnectionAdminForm(forms.ModelForm):
    new_password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Fill in to replace the stored upstream password; leave empty to keep it.",
    )

    class Meta:
        model = Connection
        fields = "__all__"

    def clean_port(self) -> int:
        port = self.cleaned_data["port"]
        validate_port(port)
        return port

    def clean_tls_ca_pem(self) -> str:
        pem = self.cleaned_data["tls_ca_pem"]
        validate_ca_pem(pem)
        return pem

    def clean_known_host(self) -> str:
        key = self.cleaned_data["known_host"]
        return normalize_public_key(key) if key.strip() else ""

    def clean_allow_forwarding(self) -> str:
        return parse_forwarding(self.cleaned_data["allow_forwarding"])

    def clean_allow_remote_forwarding(self) -> str:
        return parse_forwarding(self.cleaned_data["allow_remote_forwarding"])

    def clean(self) -> dict:
        cleaned = super().clean()
        # An SSH connection may log in with a key instead (`connections add --kind ssh --key-file`).
        if self.instance.pk is None and not cleaned.get("new_password") and cleaned.get("kind") != Connection.Kind.SSH:
            self.add_error("new_password", "A new connection needs the upstream password.")
        return cleaned


@admin.register(Connection)
class ConnectionAdmin(GuardedModelAdmin):
    form = ConnectionAdminForm
    list_display = ["name", "kind", "target", "username", "tls_mode", "retention_days", "policy"]
    list_filter = ["kind", "tls_mode", "policy"]
    list_select_related = ["policy"]
    search_fields = ["name", "host", "database"]
    readonly_fields = ["has_credentials", "created_at"]

    @admin.display(description="target")
    def target(self, obj: Connection) -> str:
        return f"{obj.host}:{obj.port}/{obj.database}" if obj.database else f"{obj.host}:{obj.port}"

    @admin.display(description="credentials stored", boolean=True)
    def has_credentials(self, obj: Connection) -> bool:
        return bool(obj.encrypted_credentials)

    def save_model(self, request, obj: Connection, form, change: bool) -> None:
        if form.cleaned_data.get("new_password"):
            do_set_connection_password(obj, form.cleaned_data["new_password"])
        # The policy changes through its action, which gives gateway nodes a new revision to notice.
        policy = obj.policy
        obj.policy_id = form.initial.get("policy")
        super().save_model(request, obj, form, change)
        do_set_connection_policy(obj, policy, actor=request.user)

    def delete_model(self, request, obj: Connection) -> None:
        do_delete_connection(obj)

    def delete_queryset(self, request, queryset) -> None:
        for connection in queryset:
            do_delete_connection(connection)


class AccessTokenInline(admin.TabularInline):
    model = AccessToken
    fields = ["prefix", "expires_at", "revoked", "last_used_at", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class AgentKeyInline(admin.TabularInline):
    """An agent's SSH keys; added with `manage.py agents add-key`, which checks and fingerprints them."""

    model = AgentKey
    fields = ["fingerprint", "comment", "created_at"]
    readonly_fields = fields
    extra = 0

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class ServiceAccountAdminForm(forms.ModelForm):
    class Meta:
        model = ServiceAccount
        fields = ["name", "description"]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        if self.instance.pk is None:
            try:
                validate_name(name, "agent")
            except ValidationError as exc:
                raise forms.ValidationError(exc.messages) from None
        return name


@admin.register(ServiceAccount)
class ServiceAccountAdmin(admin.ModelAdmin):
    form = ServiceAccountAdminForm
    list_display = ["name", "description", "created_at"]
    search_fields = ["name", "description"]
    inlines = [AccessTokenInline, AgentKeyInline]

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        # Renaming would orphan the backing user name and every client's user=.
        return ["name", "user", "created_at"] if obj else []

    def get_fields(self, request, obj=None) -> list[str]:
        return ["name", "description", "user", "created_at"] if obj else ["name", "description"]

    def save_model(self, request, obj: ServiceAccount, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        created = do_create_service_account(obj.name, obj.description)
        # The admin goes on to log and redirect with the form's instance.
        obj.pk, obj.user, obj.scram_salt, obj.created_at = (
            created.pk,
            created.user,
            created.scram_salt,
            created.created_at,
        )
        obj._state.adding = False

    def delete_model(self, request, obj: ServiceAccount) -> None:
        do_delete_service_account(obj)

    def delete_queryset(self, request, queryset) -> None:
        for account in queryset.select_related("user"):
            do_delete_service_account(account)


@admin.register(AccessToken)
class AccessTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "account", "expires_at", "revoked", "last_used_at", "created_at"]
    list_filter = ["revoked"]
    search_fields = ["prefix", "account__name"]
    list_select_related = ["account"]
    fields = ["prefix", "account", "expires_at", "revoked", "revoked_at", "last_used_at", "created_at"]

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        # Revoking is final, so a revoked token has nothing left to edit.
        fixed = ["prefix", "account", "expires_at", "revoked_at", "last_used_at", "created_at"]
        return [*fixed, "revoked"] if obj is not None and obj.revoked else fixed

    def has_add_permission(self, request) -> bool:
        return False

    def save_model(self, request, obj: AccessToken, form, change: bool) -> None:
        if "revoked" in form.changed_data and obj.revoked:
            do_revoke_token(obj)


NEW_POLICY_RULES = """\
default: allow
unparseable: deny
opaque: review
guardrails:
  - name: no-drop
    match: {kind: [DROP, TRUNCATE]}
    action: deny
masking:
  - name: secrets
    columns: ["*password*", "*secret*", api_key]
    style: full
"""


class PolicyAdminForm(forms.ModelForm):
    rules_yaml = forms.CharField(
        label="Rules",
        strip=False,  # stripping would shift the line numbers of the error messages
        widget=forms.Textarea(
            attrs={"rows": 30, "cols": 100, "spellcheck": "false", "style": "font-family: monospace"}
        ),
        help_text="YAML with the keys of a policy in a policy file: default, unparseable, opaque, guardrails, "
        "masking. See: manage.py policies show CONNECTION.",
    )

    class Meta:
        model = Policy
        fields = ["name", "description"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["rules_yaml"].initial = (
            policy_body_yaml(spec_of(self.instance)) if self.instance.pk else NEW_POLICY_RULES
        )

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        try:
            validate_name(name, "policy")
        except ValidationError as exc:
            raise forms.ValidationError(exc.messages) from None
        return name

    def clean(self) -> dict:
        cleaned = super().clean()
        name = self.instance.name if self.instance.pk else cleaned.get("name") or "new-policy"
        if cleaned.get("rules_yaml") is not None:
            try:
                cleaned["spec"] = parse_policy_body(cleaned["rules_yaml"], name)
            except PolicyFileError as exc:
                self.add_error("rules_yaml", [str(problem) for problem in exc.problems])
        return cleaned


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    form = PolicyAdminForm
    list_display = ["name", "description", "guarded_connections", "guardrail_count", "masking_count", "updated_at"]
    search_fields = ["name", "description"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("connections")

    def get_fields(self, request, obj=None) -> list[str]:
        if obj is None:
            return ["name", "description", "rules_yaml"]
        return ["name", "description", "rules_yaml", "guarded_connections", "revision", "updated_at", "created_at"]

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        # Renaming would break every policy file and `show` output that refers to the name.
        return ["name", "guarded_connections", "revision", "updated_at", "created_at"] if obj else []

    @admin.display(description="connections")
    def guarded_connections(self, obj: Policy) -> str:
        connections = list(obj.connections.all())
        if not connections:
            return "none (attach one on its connection page, or with a policy file)"
        links = ((reverse("admin:connections_connection_change", args=[c.pk]), c.name) for c in connections)
        return format_html_join(", ", '<a href="{}">{}</a>', links)

    @admin.display(description="guardrails")
    def guardrail_count(self, obj: Policy) -> int:
        return len(spec_of(obj).guardrails)

    @admin.display(description="masking rules")
    def masking_count(self, obj: Policy) -> int:
        return len(spec_of(obj).masking)

    def save_model(self, request, obj: Policy, form, change: bool) -> None:
        spec = form.cleaned_data["spec"]
        saved = do_save_policy(spec, description=obj.description, policy=obj if change else None, actor=request.user)
        # The admin goes on to log and redirect with the form's instance.
        obj.pk, obj.rules, obj.revision = saved.pk, saved.rules, saved.revision
        obj.created_at, obj.updated_at = saved.created_at, saved.updated_at
        obj._state.adding = False

    def delete_model(self, request, obj: Policy) -> None:
        do_delete_policy(obj, actor=request.user)

    def delete_queryset(self, request, queryset) -> None:
        for policy in queryset:
            do_delete_policy(policy, actor=request.user)
