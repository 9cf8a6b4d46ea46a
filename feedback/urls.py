"""Feedback addresses: SES's bounces, complaints and deliveries, posted by Amazon SNS."""

from django.urls import path

from . import views

app_name = "feedback"
urlpatterns = [
    path("ses/", views.ses, name="ses"),
]
