"""The admin base of the project: trial records change only through services (which audit), so the admin shows them,
and filters only by what the page offers."""
from django.contrib import admin


def _filter_names(model_admin) -> set[str]:
    names = set()
    for entry in model_admin.list_filter:
        if isinstance(entry, str):
            names.add(entry)
        elif isinstance(entry, (list, tuple)) and entry and isinstance(entry[0], str):
            names.add(entry[0])
    if model_admin.date_hierarchy:
        names.add(model_admin.date_hierarchy)
    return names


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def lookup_allowed(self, lookup, value, request=None):
        # Only the filters the page offers. Django lets a hand-written ?field=value filter on any field of the model
        # (?arm=assisted, ?payload__arm=…, ?assisted_side=A): the counts alone would unmask a blinded value.
        if not any(lookup == name or lookup.startswith(name + "__") for name in _filter_names(self)):
            return False
        return super().lookup_allowed(lookup, value, request)
