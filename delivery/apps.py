from django.apps import AppConfig


class DeliveryConfig(AppConfig):
    name = "delivery"
    verbose_name = "Delivery"

    def ready(self):
        from subscribers.signals import subscribers_erasing

        from .erasure import forget_subscribers

        subscribers_erasing.connect(forget_subscribers, dispatch_uid="delivery.erasure")
