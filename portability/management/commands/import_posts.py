import json

from django.core.management.base import BaseCommand, CommandError

from newsletters.models import Newsletter
from portability.posts import PostsUnreadable, import_posts


class Command(BaseCommand):
    help = ("Bring a Substack export (its zip or folder, or posts.csv) or a Ghost JSON export into a "
            "newsletter's archive: published posts as sent issues at their dates, drafts as drafts.")

    def add_arguments(self, parser):
        parser.add_argument("file", metavar="FILE")
        parser.add_argument("--newsletter", metavar="SLUG", required=True)
        parser.add_argument("--site-url", default="", help="Ghost: the old site's address, for __GHOST_URL__ links.")

    def handle(self, *args, file, newsletter, site_url, **options):
        target = Newsletter.objects.filter(slug=newsletter).first()
        if target is None:
            raise CommandError(f"There is no newsletter {newsletter!r}.")
        try:
            counts = import_posts(target, file, site_url=site_url)
        except PostsUnreadable as error:
            raise CommandError(str(error)) from error
        if options["verbosity"] > 1:
            for line in counts.get("report", []):
                self.stderr.write(line)
        self.stdout.write(json.dumps({name: counts[name] for name in ("sent", "drafts", "skipped")}))
