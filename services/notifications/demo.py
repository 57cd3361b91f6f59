"""Demo contacts: the organisation department's (组织部) staff, so that notices
addressed to org_admin (objections, rectification notices) have someone to
reach. Inbox only: no email address, so the demo sends no mail."""
from __future__ import annotations

from shared.errors import NotFound

STAFF = [("zuzhibu.li", "组织部李老师"), ("zuzhibu.chen", "组织部陈老师")]


def load(admin) -> dict:
    created = 0
    for recipient_id, name in STAFF:
        try:
            admin.notifications.get_contact(recipient_id=recipient_id)
            continue
        except NotFound:
            pass
        admin.notifications.register_contact(recipient_id=recipient_id, name=name, kind="staff",
                                             groups=["org_admin"], reason="演示数据 demo data")
        created += 1
    return {"contacts": created}
