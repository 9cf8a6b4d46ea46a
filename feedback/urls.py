"""Feedback addresses: SES's bounces, complaints and deliveries, posted by Amazon SNS; an SMTP relay's bounces."""

from django.urls import path

from . import views

app_name = "feedback"
urlpatterns = [
    path("ses/", views.ses, name="ses"),
    path("relay/<str:secret>/", views.relay, name="relay"),
]
