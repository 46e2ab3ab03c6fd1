"""image-audit: a read-only policy and compliance auditor for Azure VM image estates.

`auditor.audit(snapshot, ...)` runs an audit from Python (see auditor.api)."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # The API pulls in pandas and the rule engine: loaded on first use, not on import.
    if name in ("audit", "Audit"):
        from auditor import api
        return getattr(api, name)
    raise AttributeError(f"module 'auditor' has no attribute {name!r}")
