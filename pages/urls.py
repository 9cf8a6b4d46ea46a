"""Public addresses under a newsletter's slug. Included after every fixed top-level route."""

from django.urls import path

from . import checkout, site

app_name = "site"

urlpatterns = [
    path("<slug:slug>/", site.page, name="page"),
    path("<slug:slug>/subscribe", site.subscribe, name="subscribe"),
    path("<slug:slug>/embed", site.embed, name="embed"),
    path("<slug:slug>/r/<slug:code>", site.source_link, name="source_link"),
    path("<slug:slug>/join", checkout.join, name="join"),
    path("<slug:slug>/joined", checkout.joined, name="joined"),
]
