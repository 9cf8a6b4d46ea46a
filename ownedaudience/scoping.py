"""Admin scoping: a creator sees and changes only what belongs to newsletters they own."""

from django.contrib import admin
from django.http import Http404


class CreatorScopedAdmin(admin.ModelAdmin):
    """Filters every admin query through `owner_path`, a lookup that ends at Newsletter.owners.

    Change pages, delete pages, actions and autocomplete all go through get_queryset, so
    a direct URL to another creator's object answers 404 like a missing one.
    """

    owner_path = None  # e.g. "newsletter__owners"

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        # A subquery, not a join: no duplicate rows, and bulk delete still works.
        owned = self.model._default_manager.filter(**{self.owner_path: request.user}).values("pk")
        return queryset.filter(pk__in=owned)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "newsletter" and not request.user.is_superuser:
            kwargs["queryset"] = db_field.remote_field.model.objects.filter(owners=request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def _get_obj_does_not_exist_redirect(self, request, opts, object_id):
        # The stock admin redirects with "perhaps it was deleted?"; another creator's
        # object must look exactly like one that does not exist: a 404.
        raise Http404(f"No {opts.verbose_name} with id {object_id!r}.")
