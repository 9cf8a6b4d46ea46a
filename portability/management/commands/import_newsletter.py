import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from portability.restore import RestoreRefused, restore_newsletter


class Command(BaseCommand):
    help = "Restore a newsletter from its export zip (export_newsletter) into this installation."

    def add_arguments(self, parser):
        parser.add_argument("export", metavar="EXPORT.zip")
        parser.add_argument("--slug", help="Restore it under this slug instead of the exported one.")
        parser.add_argument("--owner", metavar="USERNAME", help="The creator login that will own it.")

    def handle(self, *args, export, slug, owner, **options):
        user = None
        if owner:
            User = get_user_model()
            user = User.objects.filter(**{User.USERNAME_FIELD: owner}).first()
            if user is None:
                raise CommandError(f"There is no user {owner!r}.")
        try:
            counts = restore_newsletter(export, slug=slug, owner=user)
        except RestoreRefused as error:
            raise CommandError(str(error)) from error
        self.stdout.write(json.dumps(counts))
