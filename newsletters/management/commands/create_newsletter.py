from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email, validate_slug

from newsletters.services import creator_ensure, creator_reset_password, newsletter_create
from newsletters.slugs import validate_public_slug


class Command(BaseCommand):
    help = "Create a newsletter and the staff login of its owner (both left alone if they exist)."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", required=True)
        parser.add_argument("--owner", required=True, help="The creator's email; it is also their login.")
        parser.add_argument("--language", default="en", choices=["en", "vi"])
        parser.add_argument("--sender-email", default="")
        parser.add_argument("--postal-address", default="")
        parser.add_argument("--description", default="", help="Shown on the newsletter's public page.")
        parser.add_argument("--welcome-subject", default="", help="With --welcome-body: sent after a fan confirms.")
        parser.add_argument("--welcome-body", default="")
        parser.add_argument(
            "--reset-password",
            action="store_true",
            help="Give the owner a new random password and print it (also done when the login is new).",
        )

    def handle(self, *args, slug, name, owner, language, sender_email, postal_address, reset_password,
               description="", welcome_subject="", welcome_body="", **kw):
        try:
            validate_slug(slug)
            validate_public_slug(slug)
            validate_email(owner)
            if sender_email:
                validate_email(sender_email)
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from error

        user, user_created = creator_ensure(email=owner)
        password = creator_reset_password(user) if user_created or reset_password else None
        newsletter, created = newsletter_create(
            slug=slug,
            name=name,
            owner=user,
            language=language,
            sender_email=sender_email or owner,
            sender_name=name,
            postal_address=postal_address,
            description=description,
            welcome_subject=welcome_subject,
            welcome_body=welcome_body,
        )
        verb = "Created" if created else "Found"
        self.stdout.write(f"{verb} newsletter '{newsletter.slug}' ({newsletter.name}), owned by {user.username}.")
        if password:
            self.stdout.write(f"Creator login: {user.username}")
            self.stdout.write(f"Password:      {password}")
        else:
            self.stdout.write(f"Creator login: {user.username} (password unchanged; --reset-password prints a new one)")
