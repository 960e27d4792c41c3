"""{% worklist_rows worklist code %}: the rows of a reader's worklist table.

Rendered here rather than by a {% for %} in the template because a worklist runs to hundreds of reads and
Django's per-value escaping costs tens of microseconds (a 150-read worklist took ~20 ms of CPU): the page
is on a reader's path between cases. Every value that is not a constant or an integer is escaped.
An unavailable read says only "Not yet available" (its reason could reveal the arm).
"""
from html import escape

from django import template
from django.utils.safestring import mark_safe

from reading.models import ReadStatus
from reading.selectors import Worklist
from reading.serializers import id_url

register = template.Library()

# status: (badge class, label, action)
LOOK = {
    ReadStatus.SUBMITTED: ("text-bg-success", "Submitted", "View"),
    ReadStatus.IN_PROGRESS: ("text-bg-warning", "In progress", "Continue"),
    ReadStatus.ASSIGNED: ("text-bg-secondary", "To read", "Open"),
}
ROW = ('<tr class="{css}" data-read-id="{id:d}"><td class="text-end num">{position:d}</td><td class="case-code">{case}'
       '</td><td><span class="badge {badge}">{label}</span></td><td class="text-end small">{action}</td></tr>\n')
LINK = '<a href="{}" class="stretched-link" data-read-link>{}</a>'
MUTED = '<span class="text-body-secondary">{}</span>'


@register.simple_tag
def worklist_rows(worklist: Worklist, code: str):
    read_url = id_url("reading:read", code)
    resume = worklist.resume
    html = []
    for r in worklist.rows:
        badge, label, action = LOOK.get(r.status, LOOK[ReadStatus.ASSIGNED])
        if not r.available:
            action = MUTED.format("Not yet available")
        elif r.status == ReadStatus.SUBMITTED:
            action = MUTED.format(action)
        html.append(ROW.format(
            css=("" if r.available else "unavailable") + (" table-active" if r is resume else ""),
            id=r.id, position=r.position, badge=badge, label=label, action=action,
            case=LINK.format(escape(read_url(r.id)), escape(r.case_code)) if r.available else escape(r.case_code)))
    return mark_safe("".join(html))  # noqa: S308 - built above from constants, integers and escaped values
