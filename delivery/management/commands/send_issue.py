from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email

from delivery import engine
from newsletters.models import Issue


class Command(BaseCommand):
    help = "Start sending an issue, exactly as the admin's Send button does; or send one test copy now."

    def add_arguments(self, parser):
        parser.add_argument("issue_id", type=int)
        parser.add_argument("--test-to", metavar="ADDRESS", help="Send one test copy to ADDRESS from this process.")

    def handle(self, *args, issue_id, test_to, **options):
        if not Issue.objects.filter(pk=issue_id).exists():
            raise CommandError(f"There is no issue {issue_id}.")
        try:
            if test_to:
                validate_email(test_to)
                provider_id = engine.send_test(issue_id, test_to)
                self.stdout.write(f"Test copy of issue {issue_id} accepted for {test_to} ({provider_id}).")
                return
            count = engine.start_send(issue_id)
        except ValidationError as error:
            raise CommandError(f"{test_to} is not a valid address.") from error
        except engine.IssueNotReady as error:
            raise CommandError("The issue cannot be sent yet:\n- " + "\n- ".join(error.problems)) from error
        except engine.SendFailed as error:
            raise CommandError(str(error)) from error
        self.stdout.write(f"Issue {issue_id} is sending to {count} subscribers; workers deliver it.")
