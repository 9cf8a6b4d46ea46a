"""Admin scoping: a creator sees and changes only what belongs to newsletters they own.

One rule, applied everywhere the admin reads rows: a model's rows a creator may see are those
its scoped admin's `owned()` returns (a lookup ending at Newsletter.owners). The changelist, the
change and delete pages, actions and autocomplete go through `get_queryset`; list filters,
foreign-key choices, raw-id labels and autocomplete widgets go through `visible()`, which asks
the admin registered for the *related* model. A model without a scoped admin shows a creator
nothing (superusers see everything).
"""

from django.contrib import admin
from django.contrib.admin.exceptions import NotRegistered
from django.contrib.admin.utils import (
    NotRelationField,
    get_fields_from_path,
    get_model_from_relation,
    reverse_field_path,
)
from django.contrib.admin.widgets import ForeignKeyRawIdWidget
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import models
from django.db.models.constants import LOOKUP_SEP
from django.http import Http404


def visible(request, queryset, admin_site=None):
    """`queryset` narrowed to the rows request.user may see, by the rule of its model's admin."""
    if request.user.is_superuser:
        return queryset
    try:
        model_admin = (admin_site or admin.site).get_model_admin(queryset.model)
    except NotRegistered:
        model_admin = None
    if isinstance(model_admin, CreatorScoped):
        return model_admin.scope(request, queryset)
    return queryset.none()  # no ownership rule for this model: nothing, rather than everything


def _as_q(limit_choices_to):
    if not limit_choices_to:
        return models.Q()
    return limit_choices_to if isinstance(limit_choices_to, models.Q) else models.Q(**limit_choices_to)


class ScopedRelatedFieldListFilter(admin.RelatedFieldListFilter):
    """The "By newsletter", "By issue"… filters: their choices are the related objects the user may see
    (the stock filter lists every row of the related table)."""

    def field_choices(self, field, request, model_admin):
        if request.user.is_superuser:
            return super().field_choices(field, request, model_admin)
        related = get_model_from_relation(field)
        own = visible(request, related._default_manager.all(), model_admin.admin_site).values("pk")
        if hasattr(field, "get_limit_choices_to"):
            limit = field.get_limit_choices_to()
        else:  # a reverse relation
            limit = field.limit_choices_to
        return field.get_choices(
            include_blank=False,
            limit_choices_to=models.Q(pk__in=own) & _as_q(limit),
            ordering=self.field_admin_ordering(field, request, model_admin),
        )


class ScopedAllValuesFieldListFilter(admin.AllValuesFieldListFilter):
    """A plain value across a relation ("newsletter__name"): the stock filter lists the values of
    every row of the related table; this one only those of the rows the user may see."""

    def __init__(self, field, request, params, model, model_admin, field_path):
        super().__init__(field, request, params, model, model_admin, field_path)
        if request.user.is_superuser:
            return
        parent_model, _ = reverse_field_path(model, field_path)
        queryset = visible(request, parent_model._default_manager.all(), model_admin.admin_site)
        self.lookup_choices = queryset.distinct().order_by(field.name).values_list(field.name, flat=True)


class ScopedForeignKeyRawIdWidget(ForeignKeyRawIdWidget):
    """The raw-id input names the object whose id it holds only when the user may see it
    (the stock widget looks any id up, so `?issue=<someone else's id>` showed its title)."""

    def __init__(self, rel, admin_site, attrs=None, using=None, queryset=None):
        super().__init__(rel, admin_site, attrs, using)
        self.queryset = queryset

    def label_and_url_for_value(self, value):
        if self.queryset is not None:
            key = self.rel.get_related_field().name
            try:
                if not self.queryset.using(self.db).filter(**{key: value}).exists():
                    return "", ""
            except (ValueError, ValidationError):
                return "", ""
        return super().label_and_url_for_value(value)


class CreatorScoped:
    """The ownership rule for a ModelAdmin or an inline: `owner_path`, a lookup that ends at
    Newsletter.owners, or an `owned()` of its own."""

    owner_path = None  # e.g. "newsletter__owners"

    def owned(self, request):
        """The primary keys (a subquery) of the rows of self.model that request.user owns."""
        return self.model._default_manager.filter(**{self.owner_path: request.user}).values("pk")

    def scope(self, request, queryset):
        if request.user.is_superuser:
            return queryset
        # A subquery, not a join: no duplicate rows, and bulk delete still works.
        return queryset.filter(pk__in=self.owned(request))

    def get_queryset(self, request):
        return self.scope(request, super().get_queryset(request))

    def get_field_queryset(self, db, db_field, request):
        # Every foreign-key and many-to-many choice (selects, autocomplete widgets, validation).
        queryset = super().get_field_queryset(db, db_field, request)
        if request.user.is_superuser:
            return queryset
        if queryset is None:
            queryset = db_field.remote_field.model._default_manager.using(db)
        return visible(request, queryset, self.admin_site)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if (
            "widget" not in kwargs
            and not request.user.is_superuser
            and db_field.name in self.raw_id_fields
            and db_field.name not in self.get_autocomplete_fields(request)
        ):
            db = kwargs.get("using")
            queryset = visible(request, db_field.remote_field.model._default_manager.all(), self.admin_site)
            kwargs["widget"] = ScopedForeignKeyRawIdWidget(
                db_field.remote_field, self.admin_site, using=db, queryset=queryset
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class CreatorScopedAdmin(CreatorScoped, admin.ModelAdmin):
    """Filters every admin query through the ownership rule.

    Change pages, delete pages, actions and autocomplete all go through get_queryset, so
    a direct URL to another creator's object answers 404 like a missing one; list filters and
    form choices list only what the creator may see.
    """

    def get_list_filter(self, request):
        return [self._scoped_list_filter(item) for item in super().get_list_filter(request)]

    def _scoped_list_filter(self, item):
        # A SimpleListFilter writes its own lookups(); anything else naming a field is scoped here.
        if isinstance(item, str):
            path, filter_class = item, None
        elif isinstance(item, (list, tuple)):
            path, filter_class = item
        else:
            return item
        try:
            fields = get_fields_from_path(self.model, path)
        except (FieldDoesNotExist, NotRelationField):
            return item
        field = fields[-1]
        if field.remote_field:  # the stock choice for a relation: RelatedFieldListFilter
            if filter_class in (None, admin.RelatedFieldListFilter):
                return (path, ScopedRelatedFieldListFilter)
            return item  # RelatedOnlyFieldListFilter already lists only related rows of this queryset
        # Across a relation, Django lists every value of the related table for a field with no
        # choices that is neither boolean nor date (or when told to): scoped here.
        values_filter = filter_class is admin.AllValuesFieldListFilter or (
            filter_class is None
            and not (field.choices or isinstance(field, (models.BooleanField, models.DateField)))
        )
        if len(fields) > 1 and values_filter:
            return (path, ScopedAllValuesFieldListFilter)
        return item

    def lookup_allowed(self, lookup, value, request):
        # Django lets any lookup through one relation pass (`?subscriptions=<id>`). On a row that
        # another creator's list shares (a Subscriber), a lookup through a reverse relation would
        # tell whether that fan is on some other list: allowed only when a list filter offers it.
        if not request.user.is_superuser and self._through_reverse_relation(lookup):
            paths = [item if isinstance(item, str) else item[0]
                     for item in self.get_list_filter(request) if isinstance(item, (str, list, tuple))]
            if not any(lookup == path or lookup.startswith(path + LOOKUP_SEP) for path in paths):
                return False
        return super().lookup_allowed(lookup, value, request)

    def _through_reverse_relation(self, lookup):
        try:
            field = self.model._meta.get_field(lookup.split(LOOKUP_SEP)[0])
        except FieldDoesNotExist:
            return False
        return field.is_relation and field.auto_created and not field.concrete

    def _get_obj_does_not_exist_redirect(self, request, opts, object_id):
        # The stock admin redirects with "perhaps it was deleted?"; another creator's
        # object must look exactly like one that does not exist: a 404.
        raise Http404(f"No {opts.verbose_name} with id {object_id!r}.")


class CreatorScopedTabularInline(CreatorScoped, admin.TabularInline):
    pass
