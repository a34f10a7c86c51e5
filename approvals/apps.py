from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    """Reviews and just-in-time access requests (models arrive with the approvals issue)."""

    name = "approvals"
