"""Admin for connections, agents and tokens; every change goes through connections.actions.

Secrets never render: a connection's credentials can only be replaced, and
tokens are issued by `manage.py agents token` so their plaintext is shown once.
"""

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from guardian.admin import GuardedModelAdmin

from connections.actions import (
    do_create_service_account,
    do_delete_connection,
    do_delete_service_account,
    do_revoke_token,
    do_set_connection_password,
    validate_ca_pem,
    validate_name,
    validate_port,
)
from connections.models import AccessToken, Connection, ServiceAccount


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

    def clean(self) -> dict:
        cleaned = super().clean()
        if self.instance.pk is None and not cleaned.get("new_password"):
            self.add_error("new_password", "A new connection needs the upstream password.")
        return cleaned


@admin.register(Connection)
class ConnectionAdmin(GuardedModelAdmin):
    form = ConnectionAdminForm
    list_display = ["name", "kind", "target", "username", "tls_mode", "retention_days"]
    list_filter = ["kind", "tls_mode"]
    search_fields = ["name", "host", "database"]
    readonly_fields = ["has_credentials", "created_at"]

    @admin.display(description="target")
    def target(self, obj: Connection) -> str:
        return f"{obj.host}:{obj.port}/{obj.database}"

    @admin.display(description="credentials stored", boolean=True)
    def has_credentials(self, obj: Connection) -> bool:
        return bool(obj.encrypted_credentials)

    def save_model(self, request, obj: Connection, form, change: bool) -> None:
        if form.cleaned_data.get("new_password"):
            do_set_connection_password(obj, form.cleaned_data["new_password"])
        super().save_model(request, obj, form, change)

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
    inlines = [AccessTokenInline]

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
