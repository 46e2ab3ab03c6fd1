"""Coverage: subscriptions (or batches) the collector could not read, from the scope table."""

from __future__ import annotations

import pandas as pd

from auditor.estate import lowered


def scope_not_read(estate, params) -> pd.DataFrame:
    """Every scope entry whose status is not `ok`: an audit that skipped them is partial."""
    scope = estate.scope
    bad = scope[lowered(scope["status"]) != "ok"]
    subscription = bad["subscription_id"].fillna("(unknown)").astype(str)
    # A management group the collector could not read is recorded by its own id, an
    # incomplete export file as `export:NAME`.
    kept = subscription.str.startswith("/") | subscription.str.startswith("export:")
    arm_id = subscription.where(kept, "/subscriptions/" + subscription)
    return pd.DataFrame({
        "id": arm_id.str.lower(), "arm_id": arm_id,
        "name": bad["display_name"].astype("object").fillna(subscription),
        "subscription_id": subscription.str.lower().where(~subscription.str.startswith("/")),
        "status": bad["status"].astype("object").fillna("(none)"),
        "detail": bad["detail"].astype("object").fillna("(no detail)"),
    })
