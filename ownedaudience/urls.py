from django.contrib import admin
from django.urls import include, path

from .health import healthz

admin.site.site_header = "ownedaudience"
admin.site.site_title = "ownedaudience"
admin.site.index_title = "Your newsletters"

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("", include("subscribers.urls")),
    path("", include("newsletters.urls")),
    # Last: /<slug>/… matches any word, so every fixed route above must come first.
    path("", include("newsletters.site_urls")),
]
