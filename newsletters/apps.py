from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _refresh_creators_group(sender, using, **kwargs):
    """After every migrate: the creators' group gets the permissions of models added since."""
    from django.contrib.auth.models import Group

    from .services import CREATORS_GROUP, creators_group

    if Group.objects.using(using).filter(name=CREATORS_GROUP).exists():
        creators_group()


class NewslettersConfig(AppConfig):
    name = "newsletters"
    verbose_name = "Publishing"

    def ready(self):
        # After every app's post_migrate (the permissions of a model moved to another app exist only
        # once that app's turn has come); a few queries each time.
        post_migrate.connect(_refresh_creators_group, dispatch_uid="newsletters.creators_group")
