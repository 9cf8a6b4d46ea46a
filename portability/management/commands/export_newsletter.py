import json

from django.core.management.base import BaseCommand, CommandError

from newsletters.models import Newsletter
from portability.exporting import export_newsletter


class Command(BaseCommand):
    help = "Write everything a newsletter is (settings, audience, history, archive, images) into one zip."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("out", metavar="OUT.zip")

    def handle(self, *args, slug, out, **options):
        newsletter = Newsletter.objects.filter(slug=slug).first()
        if newsletter is None:
            raise CommandError(f"There is no newsletter {slug!r}.")
        try:
            counts = export_newsletter(newsletter, out)
        except OSError as error:
            raise CommandError(f"Cannot write {out}: {error}") from error
        names = ("subscribers", "events", "issues", "images", "seconds")
        self.stdout.write(json.dumps({name: counts[name] for name in names}))
