from django.urls import path

from . import views

app_name = "newsletters"
urlpatterns = [
    path("<slug:slug>/issues/", views.archive, name="archive"),
    path("<slug:slug>/issues/<slug:issue_slug>/", views.issue_detail, name="issue_detail"),
    path("<slug:slug>/feed.xml", views.IssueFeed(), name="feed"),
]
