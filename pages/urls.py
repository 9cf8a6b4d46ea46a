"""Public addresses under a newsletter's slug. Included after every fixed top-level route."""

from django.urls import path

from . import site

app_name = "site"

urlpatterns = [
    path("<slug:slug>/", site.page, name="page"),
    path("<slug:slug>/subscribe", site.subscribe, name="subscribe"),
    path("<slug:slug>/embed", site.embed, name="embed"),
    path("<slug:slug>/r/<slug:code>", site.source_link, name="source_link"),
]
