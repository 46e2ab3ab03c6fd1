"""The cleanup plan: the `az` commands that would delete what retention (RET) and staleness
(STL) findings flag, as a script for people to review and run. The tool never runs it.

Each deletion is preceded by comments saying why it is safe; anything that something still
needs (a machine that deploys or scales out from it, a version built from it, the newest
version of its definition, a retain tag, an exemption, the gallery's own deletion lock) is
listed as blocked with the reason instead of getting a command.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

import pandas as pd

from auditor.checks.ret import version_holds, withheld_versions
from auditor.cost import DELETION_RULES
from auditor.estate import Estate, lowered
from auditor.safetext import BIDI, shown, without_surrogates

VERSION_TYPE = "Microsoft.Compute/galleries/images/versions"
IMAGE_TYPE = "Microsoft.Compute/images"
NOT_RETAINED = {"", "false", "no", "0"}
VERSION_PATH = re.compile(r"(?i)^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/"
                          r"providers/Microsoft\.Compute/galleries/(?P<gallery>[^/]+)/images/"
                          r"(?P<definition>[^/]+)/versions/(?P<version>[^/]+)\Z")
IMAGE_PATH = re.compile(r"(?i)^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/"
                        r"providers/Microsoft\.Compute/images/(?P<name>[^/]+)\Z")
UNUSED = ("unused: no VM or scale set model references it, and no scale set runs instances "
          "created from it")
UNPARSED = "its id is not in the form the delete command needs; delete it by hand if at all"
SEMVER_NAME = r"[0-9]+\.[0-9]+\.[0-9]+"  # how Azure names a gallery version (ASCII digits)
NOT_SEMVER = ("its name is not MAJOR.MINOR.PATCH, the form Azure gives gallery versions: no "
              "command is written for it; look at it by hand")
# A name no command may carry: control characters (NUL, newline, escape sequences), line
# separators, bidi controls (a reviewer would read the line in another order), characters
# that are not text, and the path segments `.` and `..` (the URL the CLI builds would name
# the parent resource instead), and a leading `-` (the CLI could read the name as an option).
_UNSAFE_NAME = f"[\x00-\x1f\x7f-\x9f\u2028\u2029{BIDI}\ud800-\udfff\ufffe\uffff]|^\\.{{1,2}}\\Z|^-"
UNSAFE_NAME = ("a name in its id holds a control or bidi character, is `.` or `..`, or starts "
               "with `-`: no command is written for it; look at it by hand")
NO_SEMVER = ("no version of its definition is named MAJOR.MINOR.PATCH, so the newest cannot be "
             "told; keep at least one")


def _comment(text: str) -> str:
    """A comment line: a newline in a name from Azure must not end the comment early, and a
    bidi control must not reorder what the reviewer reads; each is shown escaped."""
    return "# " + shown(text)


def _unsafe(parts: pd.DataFrame) -> pd.Series:
    """Rows whose id holds a name no command may carry (see _UNSAFE_NAME)."""
    unsafe = pd.Series(False, index=parts.index)
    for column in parts.columns:
        unsafe |= parts[column].astype("object").str.contains(_UNSAFE_NAME, regex=True, na=False)
    return unsafe


def _text(values: pd.Series) -> pd.Series:
    """Looked-up values as text ('' where none), whatever dtype the lookup left them in."""
    return values.astype("object").fillna("").astype(str)


def _listed(names: pd.Series, limit: int = 3) -> str:
    names = sorted(names.astype(str))
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


@dataclass
class CleanupPlan:
    """What would be deleted (with why it is safe and the command) and what is blocked."""

    deletions: pd.DataFrame  # id, arm_id, label, rules, why (list of str), command, monthly_cost
    blocked: pd.DataFrame    # BLOCKED_COLUMNS: open says an open (not exempted) finding flags it
    currency: str = "USD"

    def savings_items(self) -> pd.DataFrame:
        """What the findings would save, resource by resource: each deletion of the plan
        (`deletable now`) and each resource an open finding flags but something holds
        (`blocked`, with the reason and, where the gallery's end-of-life lock alone holds
        it, `deletable_from`). Exempted findings save nothing: they were accepted."""
        now = self.deletions.assign(state="deletable now", reason="", deletable_from=pd.NaT)
        held = self.blocked[self.blocked["open"]].assign(state="blocked")
        columns = ["state", "id", "arm_id", "label", "rules", "monthly_cost", "deletable_from",
                   "reason"]
        items = pd.concat([now.reindex(columns=columns), held.reindex(columns=columns)],
                          ignore_index=True)
        return items.assign(deletable_from=pd.to_datetime(items["deletable_from"], utc=True))

    def savings(self) -> dict:
        """Monthly savings deletable now and blocked, as every report shows them: the same
        figures as the script's header, from the same plan."""
        items = self.savings_items()

        def total(part: pd.DataFrame) -> dict:
            return {"monthly_cost": round(float(part["monthly_cost"].sum()), 4),
                    "resources": int(len(part)),
                    "unpriced": int(part["monthly_cost"].isna().sum())}

        blocked = items[items["state"] == "blocked"]
        dated = blocked[blocked["deletable_from"].notna()]
        by_date = dated.groupby(dated["deletable_from"].dt.strftime("%Y-%m-%d"))["monthly_cost"]
        return {"currency": self.currency,
                "deletable_now": total(items[items["state"] == "deletable now"]),
                "blocked": {**total(blocked),
                            "until_date": [{"date": date, "monthly_cost": round(float(cost), 4),
                                            "resources": int(count)} for date, cost, count in
                                           zip(by_date.sum().index, by_date.sum(),
                                               by_date.size(), strict=True)],
                            "undated": total(blocked[blocked["deletable_from"].isna()])}}

    def script(self, context: dict) -> str:
        """The reviewed bash script: header, one commented command per deletion, then the
        blocked items as comments. Every argument is shell-quoted."""
        saving = self.deletions["monthly_cost"].sum(min_count=1)
        lines = ["#!/usr/bin/env bash",
                 _comment(f"Cleanup plan generated by image-audit {context['tool_version']}. "
                          "NOTHING HAS BEEN RUN: review every command before running this."),
                 _comment(f"snapshot: {context['snapshot']} (sha256 {context['snapshot_sha256']})"),
                 _comment(f"as of: {context['as_of']}"),
                 _comment(f"{len(self.deletions)} deletion(s), {len(self.blocked)} blocked item(s)"
                          + (f"; saves about {saving:,.2f} {self.currency} per month"
                             if pd.notna(saving) else ""))]
        if context.get("cost_basis") and pd.notna(saving):
            lines.append(_comment(f"storage cost basis: {context['cost_basis']}"))
        lines += ["set -euo pipefail", ""]
        if self.deletions.empty:
            lines += [_comment("Nothing to delete."), ""]
        for row in self.deletions.itertuples(index=False):
            lines.append(_comment(f"{row.label} ({row.rules})"))
            lines.append(_comment(f"  {row.arm_id}"))
            lines += [_comment(f"  {line}") for line in row.why]
            lines += [row.command, ""]
        if not self.blocked.empty:
            lines.append(_comment("Blocked: flagged, but something still needs them; no command."))
            for row in self.blocked.itertuples(index=False):
                lines.append(_comment(f"BLOCKED {row.label} ({row.rules}): {row.reason}"))
                lines.append(_comment(f"  {row.arm_id}"))
            lines.append("")
        return "\n".join(lines)


def _candidates(findings: pd.DataFrame, resource_type: str, table: pd.DataFrame) -> pd.DataFrame:
    """The snapshot rows that deletion findings of one resource type flag, with the rule ids
    and the reason of any exemption among their findings."""
    flagged = findings[findings["rule_id"].isin(DELETION_RULES)
                       & (findings["resource_type"] == resource_type)]
    flagged = flagged.assign(id=flagged["resource_id"].astype(str).str.lower(),
                             exempted=flagged["exempted"].astype(bool))
    flagged = flagged.sort_values(["id", "rule_id"]).drop_duplicates(["id", "rule_id"])
    exempted = flagged[flagged["exempted"]]
    grouped = pd.DataFrame({
        "rules": flagged.groupby("id")["rule_id"].agg(", ".join),
        "message": flagged.groupby("id")["message"].first(),
        "exempted": flagged.groupby("id")["exempted"].any(),
        "open": (~flagged["exempted"]).groupby(flagged["id"]).any(),
        "exemption": exempted.groupby("id")["exemption_reason"].agg(
            lambda reasons: "; ".join(without_surrogates(str(r)) for r in reasons))})
    return table.join(grouped, on="id", how="inner").reset_index(drop=True)


def _retained(estate: Estate, rows: pd.DataFrame, retain_tag: str) -> pd.Series:
    values = estate.tag(rows, retain_tag).astype("object")
    return values.notna() & ~values.astype(str).str.strip().str.lower().isin(NOT_RETAINED)


def _instance_versions(estate: Estate, ids: pd.Series) -> pd.DataFrame:
    """Scale sets with a row per version their instances run (not only the lowest), as
    `target`, for the versions in `ids`."""
    machines = estate.tables["machines"]
    pairs = estate.instance_versions
    pairs = pairs[pairs["version_id"].isin(ids)]
    out = machines.loc[pairs["row"]].assign(target=pairs["version_id"].to_numpy(dtype=object))
    return out[out["kind"] == "vmss"]


def _machine_refs(estate: Estate, ids: pd.Series) -> pd.Series:
    """Per id, the machines that still need it: any machine whose image reference names it,
    and scale sets whose instances were created from it (they may scale out)."""
    machines = estate.tables["machines"]
    referencing = machines[machines["image_id"].isin(ids)].assign(target=lambda m: m["image_id"])
    running = machines[(machines["kind"] == "vmss") & machines["running_version_id"].isin(ids)]
    running = running.assign(target=running["running_version_id"])
    refs = pd.concat([referencing, running, _instance_versions(estate, ids)]).drop_duplicates(
        ["target", "id"])
    if refs.empty:
        return pd.Series(dtype="object")
    is_set = refs["kind"] == "vmss"
    label = ("VM " + refs["name"].astype(str)).where(
        ~is_set, "scale set " + refs["name"].astype(str) + " (capacity "
        + refs["capacity"].astype("Int64").astype(str) + ", may scale out)")
    refs = refs.assign(label=label)
    return refs.groupby("target")["label"].agg(_listed)


def _version_plan(findings, estate: Estate, retain_tag: str,
                  retention: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    versions = estate.tables["image_versions"]
    rows = _candidates(findings, VERSION_TYPE, versions)
    # Only MAJOR.MINOR.PATCH names are ranked: another name is never "the newest" (unranked,
    # it would sort last and leave the real newest unprotected).
    ranked = versions[versions["major"].notna()].sort_values(
        ["definition_id", "major", "minor", "patch"])
    newest = ranked.drop_duplicates("definition_id", keep="last").set_index("definition_id")
    # The newest version that finished provisioning is kept too: the newest may still be
    # being created or replicated, and may fail.
    provisioned = ranked[lowered(ranked["provisioning_state"]) == "succeeded"]
    newest_ok = provisioned.drop_duplicates("definition_id", keep="last").set_index("definition_id")
    holds = version_holds(estate, retention)
    holds = pd.Series(holds.to_numpy(), index=versions["id"].to_numpy())
    usage = estate.usage
    # Every unversioned reference gets what `latest` gives in its region at its next
    # scale-out or deployment, whatever version its instances record now.
    by_latest = usage[usage["latest_version_id"].notna()]
    latest_users = by_latest.groupby("latest_version_id", observed=True)["name"].agg(_listed)

    refs = _machine_refs(estate, rows["id"])
    parts, label = _version_labels(rows["arm_id"])
    rows = rows.assign(label=label, definition=parts["definition"])
    newest_name = rows["definition_id"].map(newest["name"])
    eol = rows["end_of_life_date"]
    locked = rows["block_deletion_before_end_of_life"].fillna(False).astype(bool) & (
        eol.isna() | (eol > estate.as_of))
    rows = rows.assign(locked_until=eol.where(locked))
    reasons = [
        (parts["sub"].isna(), UNPARSED),
        (_unsafe(parts), UNSAFE_NAME),
        (~_unsafe(parts) & ~parts["version"].fillna("").str.fullmatch(SEMVER_NAME), NOT_SEMVER),
        (rows["exempted"], "finding exempted: " + rows["exemption"]),
        (rows["id"].isin(refs.index), "still used by " + _text(rows["id"].map(refs))),
        (~rows["definition_id"].isin(newest.index), NO_SEMVER),
        (rows["id"].isin(latest_users.index), "machines that reference the definition without a "
         "version get this one in their region: " + _text(rows["id"].map(latest_users))),
        (rows["id"] == rows["definition_id"].map(newest["id"]),
         "it is the newest version of " + rows["definition"] + "; keep at least one"),
        ((rows["id"] == rows["definition_id"].map(newest_ok["id"]))
         & (rows["id"] != rows["definition_id"].map(newest["id"])),
         "it is the newest provisioned version of " + rows["definition"] + "; keep at least one"),
        (rows["id"].map(holds).fillna("") != "", "not deletable: " + _text(rows["id"].map(holds))),
        (_retained(estate, rows, retain_tag), f"marked to retain (tag `{retain_tag}`)"),
        (locked, "the gallery blocks deleting it before its end of life ("
         + eol.dt.strftime("%Y-%m-%d").fillna("no date") + "); to delete it sooner, set an "
         "earlier date first (az sig image-version update --end-of-life-date)"),
    ]
    age = (estate.as_of - rows["published_date"]).dt.days.astype("Int64").astype(str)
    why = _lines(
        "flagged: " + rows["message"].astype(str),
        UNUSED,
        "age: published " + rows["published_date"].dt.strftime("%Y-%m-%d").fillna("?") + ", "
        + age + " days before the as-of date",
        "not the newest: " + rows["definition"] + " keeps " + newest_name.astype(str),
        f"not marked to retain: no `{retain_tag}` tag", index=rows.index)
    quoted = parts.fillna("").map(shlex.quote)
    command = ("az sig image-version delete --subscription " + quoted["sub"] + " -g " + quoted["rg"]
               + " -r " + quoted["gallery"] + " -i " + quoted["definition"]
               + " -e " + quoted["version"])
    deletions, blocked = _split(rows.assign(why=why, command=command), reasons)
    # Held by the end-of-life lock alone: deletable from that date, with nothing else to do.
    return deletions, blocked.assign(deletable_from=blocked["locked_until"].where(
        blocked["reason_count"] == 1))


def _image_plan(findings, estate: Estate, retain_tag: str,
                deleted_versions: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    images = estate.tables["managed_images"]
    rows = _candidates(findings, IMAGE_TYPE, images)
    versions = estate.tables["image_versions"]
    kept = versions[~versions["id"].isin(deleted_versions) & versions["source_id"].isin(rows["id"])]
    names = kept["id"].str.extract(r"/galleries/([^/]+)/images/([^/]+)/versions/([^/]+)$")
    kept = kept.assign(label=names[0] + "/" + names[1] + "/" + names[2])
    built = kept.groupby("source_id")["label"].agg(_listed)
    refs = _machine_refs(estate, rows["id"])
    parts = rows["arm_id"].str.extract(IMAGE_PATH)
    rows = rows.assign(label=("managed image " + parts["name"]).fillna(rows["arm_id"]))
    reasons = [
        (parts["sub"].isna(), UNPARSED),
        (_unsafe(parts), UNSAFE_NAME),
        (rows["exempted"], "finding exempted: " + rows["exemption"]),
        (rows["id"].isin(refs.index), "still used by " + _text(rows["id"].map(refs))),
        (rows["id"].isin(built.index), "gallery version(s) " + _text(rows["id"].map(built))
         + " were built from it"),
        (_retained(estate, rows, retain_tag), f"marked to retain (tag `{retain_tag}`)"),
    ]
    why = _lines("flagged: " + rows["message"].astype(str), UNUSED,
                 "no kept gallery version was built from it",
                 f"not marked to retain: no `{retain_tag}` tag", index=rows.index)
    quoted = parts.fillna("").map(shlex.quote)
    command = ("az image delete --subscription " + quoted["sub"] + " -g " + quoted["rg"]
               + " -n " + quoted["name"])
    return _split(rows.assign(why=why, command=command), reasons)


def _version_labels(arm_ids: pd.Series) -> tuple[pd.DataFrame, pd.Series]:
    """The parts of each version id (VERSION_PATH's groups) and its label,
    `image version gallery/definition/version` (the id itself where it does not parse)."""
    parts = arm_ids.str.extract(VERSION_PATH)
    label = ("image version " + parts["gallery"] + "/" + parts["definition"] + "/"
             + parts["version"]).fillna(arm_ids)
    return parts, label


def _withheld(estate: Estate, retention: dict) -> pd.DataFrame:
    """Versions RET001 does not flag only because something holds them, as blocked rows."""
    held = withheld_versions(estate, retention)
    versions = estate.tables["image_versions"].set_index("id")
    arm_id = held["id"].map(versions["arm_id"])
    label = _version_labels(arm_id)[1]
    return pd.DataFrame({"id": held["id"], "arm_id": arm_id, "label": label,
                         "rules": "RET001, not flagged",
                         "reason": "beyond retention and unused in the snapshot, but not "
                         "deletable: " + held["reason"]})


def _lines(*parts, index: pd.Index) -> pd.Series:
    """Per row, the list of comment lines given as columns (a Series) or constants (str)."""
    columns = [p if isinstance(p, pd.Series) else pd.Series(p, index=index) for p in parts]
    return pd.Series([list(line) for line in zip(*columns, strict=True)], index=index,
                     dtype="object")


def _split(rows: pd.DataFrame, reasons: list[tuple[pd.Series, pd.Series | str]]):
    """Rows with any blocking reason go to `blocked` (reasons joined), the rest to deletions."""
    reason = pd.Series("", index=rows.index, dtype="object")
    count = pd.Series(0, index=rows.index)
    for applies, text in reasons:
        text = text if isinstance(text, pd.Series) else pd.Series(text, index=rows.index)
        applies = applies.fillna(False).astype(bool)
        count += applies
        reason = reason.where(~applies, reason + (reason != "").map({True: "; ", False: ""})
                              + text.astype(str))
    blocked = rows[reason != ""].assign(reason=reason[reason != ""],
                                        reason_count=count[reason != ""])
    return rows[reason == ""], blocked


def cleanup_plan(findings: pd.DataFrame, estate: Estate, retain_tag: str = "retain",
                 monthly_cost: pd.Series | None = None, currency: str = "USD",
                 retention: dict | None = None) -> CleanupPlan:
    """The deletions RET and STL findings call for, and what blocks the rest. `monthly_cost`
    (by lower-cased resource id, as cost gives it) adds what each deletion saves.
    `retention` (RET001's params, when it is enabled) also lists as blocked the versions it
    would flag but for what holds them (an operation in flight, a gallery shared beyond
    the audit); whatever is given, such versions never get a command."""
    versions, blocked_versions = _version_plan(findings, estate, retain_tag, retention or {})
    if retention is not None:
        blocked_versions = pd.concat([blocked_versions, _withheld(estate, retention)],
                                     ignore_index=True)
    images, blocked_images = _image_plan(findings, estate, retain_tag, versions["id"])
    # Versions first: an image that a deleted version was built from goes after it.
    deletions = pd.concat([part.sort_values("label", kind="stable") for part in (versions, images)],
                          ignore_index=True)
    def costs(ids: pd.Series) -> pd.Series:
        """What deleting each saves: NaN where unpriced, 0 where it bills nothing of its own
        (a Shallow version), as cost gives it."""
        if monthly_cost is None:
            return pd.Series(float("nan"), index=ids.index)
        return ids.map(monthly_cost).astype(float).where(ids.isin(monthly_cost.index), 0.0)

    deletions = deletions.assign(monthly_cost=costs(deletions["id"]))
    deletions["why"] = [why + ([f"saves: about {c:,.2f} {currency} per month"] if c > 0 else [])
                        for why, c in zip(deletions["why"], deletions["monthly_cost"], strict=True)]
    columns = ["id", "arm_id", "label", "rules", "why", "command", "monthly_cost"]
    blocked = pd.concat([blocked_versions, blocked_images], ignore_index=True)
    blocked = blocked.reindex(columns=BLOCKED_COLUMNS).assign(
        monthly_cost=costs(blocked["id"]), open=blocked["open"].eq(True),
        deletable_from=pd.to_datetime(blocked["deletable_from"], utc=True))
    return CleanupPlan(currency=currency, deletions=deletions.reindex(columns=columns),
                       blocked=blocked.sort_values("label", kind="stable").reset_index(drop=True))


BLOCKED_COLUMNS = ["id", "arm_id", "label", "rules", "reason", "monthly_cost", "deletable_from",
                   "open"]
