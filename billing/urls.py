"""Billing addresses: Stripe's webhooks (the installation's, and a newsletter's own account's)."""

from django.urls import path

from . import views

app_name = "billing"
urlpatterns = [
    path("stripe/webhook/", views.stripe_webhook, name="stripe_webhook"),
    path("stripe/webhook/<str:token>/", views.stripe_webhook, name="stripe_webhook_own"),
]
