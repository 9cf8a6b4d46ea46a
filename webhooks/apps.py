from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self):
        from django.db.models.signals import post_delete, post_save

        from delivery.signals import issue_finished
        from subscribers.signals import subscribers_erasing, subscriptions_changed

        from . import events
        from .models import Endpoint

        subscriptions_changed.connect(events.on_subscriptions_changed, dispatch_uid="webhooks.subscriptions")
        issue_finished.connect(events.on_issue_finished, dispatch_uid="webhooks.issues")
        subscribers_erasing.connect(events.on_subscribers_erasing, dispatch_uid="webhooks.erasing")
        post_save.connect(events.forget_endpoints, sender=Endpoint, dispatch_uid="webhooks.endpoint_saved")
        post_delete.connect(events.forget_endpoints, sender=Endpoint, dispatch_uid="webhooks.endpoint_deleted")
