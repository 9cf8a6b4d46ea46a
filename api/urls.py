from django.urls import path

from .main import api

# Mounted at /api/v1/ by ownedaudience/urls.py; names in the "api" namespace (api:openapi-json).
urlpatterns = [path("", api.urls)]
