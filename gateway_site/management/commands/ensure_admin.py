"""Create the first admin login if there is no superuser yet (run by `make run`)."""

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

ADMIN_USERNAME = "admin"
ADMIN_EMAIL = "admin@localhost"


class Command(BaseCommand):
    help = "Create a superuser 'admin' with a random password, unless a superuser already exists."

    def handle(self, *args: object, **options: object) -> None:
        users = get_user_model()
        with transaction.atomic():
            existing = users.objects.filter(is_superuser=True).order_by("pk").first()
            if existing is not None:
                self.stdout.write(f"An admin login already exists ({existing.get_username()}).")
                return
            if users.objects.filter(username=ADMIN_USERNAME).exists():
                raise CommandError(
                    f"A user named {ADMIN_USERNAME!r} exists but is not a superuser, so no admin login "
                    "was made. Create one under another name with `python manage.py createsuperuser`."
                )
            password = secrets.token_urlsafe(18)
            users.objects.create_superuser(username=ADMIN_USERNAME, email=ADMIN_EMAIL, password=password)
        self.stdout.write(self.style.SUCCESS("Created the admin login (shown once, keep it safe):"))
        self.stdout.write(f"  username: {ADMIN_USERNAME}")
        self.stdout.write(f"  email:    {ADMIN_EMAIL}")
        self.stdout.write(f"  password: {password}")
        self.stdout.write("Sign in at /admin/ and change the password there.")
