from django.conf import settings
from django.db import models


class ApiToken(models.Model):
    """A creator's key to the REST API: `oa_<prefix>_<secret>`, sent as `Authorization: Bearer …`.

    Only the SHA-256 digest of the secret is kept: the whole token is shown once, when it is made,
    and never again. A revoked token is refused; its row stays, with when it was last used.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What it is for, e.g. “Zapier” or “my import script”.")
    prefix = models.CharField(max_length=8, db_index=True, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ("-created_at",)
        verbose_name = "API token"

    def __str__(self):
        return f"{self.name} (oa_{self.prefix}_…)"
