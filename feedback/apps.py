from django.apps import AppConfig


class FeedbackConfig(AppConfig):
    name = "feedback"
    verbose_name = "Feedback"

    def ready(self):
        from subscribers.signals import subscribers_erasing

        from .erasure import forget_subscribers

        subscribers_erasing.connect(forget_subscribers, dispatch_uid="feedback.erasure")
