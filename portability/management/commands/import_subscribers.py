"""manage.py import_subscribers FILE --newsletter SLUG [--format …]: one JSON line of counts."""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from newsletters.models import Newsletter
from portability import importing
from portability.models import FORMAT_CHOICES, Import


class Command(BaseCommand):
    help = (
        "Import a subscriber export from Substack, Mailchimp, Ghost, Kit, Buttondown or beehiiv (CSV or "
        "the platform's zip). Running it attests, as the operator, that the file's active addresses "
        "opted in on the old platform; the attestation is recorded on each imported subscription."
    )

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--newsletter", required=True, help="the newsletter's slug")
        parser.add_argument("--format", default="auto", choices=[value for value, _ in FORMAT_CHOICES])
        parser.add_argument("--report", action="store_true", help="list every rejected row on stderr")

    def handle(self, *args, file, newsletter, format, report, **options):
        newsletter_obj = Newsletter.objects.filter(slug=newsletter).first()
        if newsletter_obj is None:
            raise CommandError(f"No newsletter with the slug {newsletter!r}.")
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"{file}: no such file.")
        job = Import.objects.create(newsletter=newsletter_obj, file_name=path.name, format=format, attested=True)
        try:
            with path.open("rb") as stream:
                job = importing.run(job, stream)
        except importing.ImportFailed as error:
            raise CommandError(f"{path.name}: {error}") from error
        rejections = job.rejections.order_by("line")
        if report or job.rejected <= 50:
            for rejection in rejections.iterator():
                self.stderr.write(f"{path.name}:{rejection.line}: {rejection.reason}: {rejection.value}")
        self.stderr.write(
            f"{dict(FORMAT_CHOICES).get(job.detected_format, job.detected_format)}: {job.created} new subscriptions, "
            f"{job.changed} changed, in {job.seconds:.1f} s ("
            + ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in job.timings.items())
            + f"; import #{job.pk})"
        )
        self.stdout.write(json.dumps(job.counts()))
