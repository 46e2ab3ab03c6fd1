"""The `image-audit` command line: it only wires the data-flow modules together."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import textwrap
import traceback
from pathlib import Path

import click
from click.core import ParameterSource

from auditor import __version__, api
from auditor import prices as price_table
from auditor.baseline import load_baseline
from auditor.collect import CLOUDS, collect_from_options
from auditor.cost import DELETION_RULES, FIX_SAVINGS
from auditor.docs import rules_markdown
from auditor.engine import SEVERITIES, SEVERITY_RANK, load_rules
from auditor.errors import AuditError
from auditor.exemptions import load_exemptions
from auditor.importer import (
    import_files,
)
from auditor.report import (
    OutputsFailed,
    atomic_write,
    cost_totals,
    counts_line,
    report_set,
    write_cost,
    write_reports,
)
from auditor.safetext import redact_sas, shown
from auditor.snapshot import check_target

FORMATS = ["json", "csv", "xlsx", "sarif", "junit", "html", "md", "cost"]
DEFAULT_CONFIG = Path("image-audit.yaml")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="image-audit")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx, debug):
    """Read-only policy, compliance and storage-cost auditor for Azure VM image estates."""
    ctx.obj = {"debug": debug}


@cli.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Snapshot directory to create.")
@click.option("--collected-at", help="Snapshot time (ISO 8601); default now.")
@click.option("--force", is_flag=True, help="Replace an existing snapshot at OUTPUT.")
def import_command(files, output, collected_at, force):
    """Import JSON exports of raw Azure resources into a snapshot."""
    check_target(output, overwrite=force)
    snapshot = import_files(list(files), collected_at=api.parse_time(collected_at, "--collected-at"))
    snapshot.write(output, overwrite=force)
    counts = ", ".join(f"{name} {table.num_rows}" for name, table in
                       snapshot.arrow_tables.items() if name not in ("resource_tags", "scope"))
    skipped = snapshot.manifest["skipped_types"]
    kinds = ", ".join(f"{shown(str(kind))} {count}" for kind, count in sorted(skipped.items()))
    click.echo(f"snapshot {output}: {counts}; {sum(skipped.values())} other resources skipped"
               + (f" ({kinds})" if kinds else ""))
    gaps = snapshot.manifest.get("gaps") or []
    if gaps:
        click.echo(f"image-audit: warning: {len(gaps)} file(s) incomplete, audited as partial "
                   f"(COV001): {gaps[0]['ids'][0]}: {gaps[0]['detail']}; see 'gaps' in "
                   f"{output / 'manifest.json'}", err=True)
    problems = snapshot.manifest.get("problem_count", 0)
    if problems:
        click.echo(f"image-audit: warning: {problems} input problems (values of the wrong type, "
                   f"items skipped); they are listed under 'problems' in {output / 'manifest.json'}",
                   err=True)


LOCK_FILE = ".image-audit.lock"


def _claim_output(out_dir: Path) -> None:
    """Before any work: the output folder is a folder (made if missing) and this run alone
    writes it until the command ends (a lock file, released however the command ends)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise AuditError(f"{out_dir}: not a folder (-o names a file); give a folder for the reports")
    made = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AuditError(f"{out_dir}: cannot create the output folder ({exc.strerror or exc})") from None
    click.get_current_context().with_resource(_output_lock(out_dir, made))


@contextlib.contextmanager
def _output_lock(out_dir: Path, made: bool = False):
    """A lock file made with O_EXCL: two audits writing one folder at once would leave a mixed
    set of reports. A lock whose process is gone (killed) on this host is taken over."""
    lock = out_dir / LOCK_FILE
    owner = f"{os.getpid()} {socket.gethostname()}\n"
    for attempt in range(2):
        try:
            handle = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = _lock_holder(lock)
            if attempt == 0 and holder is None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(lock)  # left behind by a process that no longer runs
                continue
            raise AuditError(f"{out_dir}: another image-audit is writing this folder ({holder or 'lock'}"
                             f", {lock}); wait for it to finish or choose another -o (remove the "
                             "lock file if no run is active)") from None
        except OSError as exc:
            raise AuditError(f"{out_dir}: cannot write ({exc.strerror or exc})") from None
        with os.fdopen(handle, "w") as file:
            file.write(owner)
        break
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if lock.read_text() == owner:
                os.unlink(lock)
            if made:  # a run that failed before writing anything leaves no empty folder
                out_dir.rmdir()


def _lock_holder(lock: Path) -> str | None:
    """`pid N` if the lock's process may still run, None if it is gone from this host."""
    try:
        pid, _, host = lock.read_text().strip().partition(" ")
        pid = int(pid)
    except (OSError, ValueError):
        return "lock unreadable"
    if host and host != socket.gethostname():
        return f"pid {pid} on {host}"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except OSError:
        pass
    return f"pid {pid}"


def _scope_only_with_collect(ctx: click.Context, collect_now: bool) -> None:
    """Scope options mean nothing without --collect: say so instead of ignoring them."""
    if collect_now:
        return
    names = {"subscriptions", "management_groups", "cloud", "endpoint", "deep", "marketplace",
             "locks", "quiet", "timeout", "instances"}
    given = [param.opts[0] for param in ctx.command.params
             if param.name in names and ctx.get_parameter_source(param.name) is not ParameterSource.DEFAULT]
    if given:
        raise click.UsageError(f"{', '.join(given)} only appl{'ies' if len(given) == 1 else 'y'} "
                               "with --collect (scope options say what to collect)")


def _price_options(command):
    """How storage is priced: shared by `audit`, `cost` and `cleanup-plan`."""
    command = click.option(
        "--prices", "prices_path", type=click.Path(path_type=Path),
        help="Price table CSV (default: the one shipped, see `prices refresh`).")(command)
    return click.option(
        "--occupancy", type=click.FloatRange(min=0, max=1, min_open=True),
        help="Occupied share of the provisioned disk size (0-1] for cost; default: "
             "provisioned size, an upper bound.")(command)


def _scope_options(command):
    """Where to collect from: shared by `collect` and `audit --collect`."""
    options = [
        click.option("--subscription", "subscriptions", multiple=True, metavar="ID",
                     help="Subscription to collect (repeatable)."),
        click.option("--management-group", "management_groups", multiple=True, metavar="ID",
                     help="Management group to collect (repeatable). With neither option, "
                     "every subscription the credential can see."),
        click.option("--cloud", type=click.Choice(list(CLOUDS)), default="public",
                     show_default=True, help="Azure cloud whose Resource Manager to ask."),
        click.option("--endpoint", metavar="URL", help="Resource Manager URL (overrides --cloud)."),
        click.option("--deep", is_flag=True,
                     help="Also read each image version's replication status (one GET each), "
                     "and everything --marketplace and --locks read."),
        click.option("--marketplace", is_flag=True,
                     help="Also read the deprecation status of each Marketplace image version "
                     "in use (one GET per location and image; DEP001)."),
        click.option("--locks", is_flag=True,
                     help="Also read each subscription's management locks (one list GET per "
                     "subscription; REP009)."),
        click.option("--no-instances", "instances", flag_value=False, default=True,
                     help="Leave out the instances of Uniform scale sets (for very large "
                     "tenants: STL007 then cannot judge scale-set drift)."),
        click.option("--quiet", is_flag=True, help="No progress and no closing line on stderr."),
        click.option("--timeout", type=click.FloatRange(min=1), default=60, show_default=True,
                     help="Seconds to wait for a connection or a whole answer before retrying."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@cli.command("collect")
@_scope_options
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Snapshot directory to create.")
@click.option("--force", is_flag=True, help="Replace an existing snapshot at OUTPUT.")
def collect_command(output, force, **scope):
    """Collect the image estate from Azure Resource Graph into a snapshot (read-only)."""
    check_target(output, overwrite=force)
    snapshot = collect_from_options(**scope)
    snapshot.write(output, overwrite=force)
    gaps = int((snapshot.tables["scope"]["status"] != "ok").sum())
    if gaps:
        click.echo(f"warning: {gaps} subscription(s) or group(s) not fully collected; "
                   "see the scope table", err=True)
    click.echo(f"snapshot {output}")


def _config_path(config_path: Path | None) -> Path | None:
    """The config file a run reads: the one given, else image-audit.yaml in the working
    directory if there is one. Said on stderr, so a run never reads a config unseen; its
    path and SHA-256 go into the reports."""
    if config_path is None and DEFAULT_CONFIG.is_file():
        config_path = DEFAULT_CONFIG
    if config_path is not None:
        api.rule_pack(config_path)  # a bad config is its own one-line error, said first
        digest = api.file_evidence(config_path)["sha256"]
        click.echo(f"using config {shown(str(config_path))} (sha256 {digest[:12]})", err=True)
    return config_path


@cli.command()
@click.argument("snapshot", required=False, type=click.Path(path_type=Path))
@click.option("--sample", is_flag=True, help="Audit the bundled sample estate.")
@click.option("-o", "--output", "out_dir", default="reports", show_default=True,
              type=click.Path(path_type=Path), help="Folder for the reports.")
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              help="Config file (default: image-audit.yaml if present).")
@click.option("--fail-on", type=click.Choice(SEVERITIES),
              help="Exit 1 when a non-exempt finding is at or above this severity.")
@click.option("--as-of", help="The 'now' of time-based rules (default: the snapshot's time).")
@click.option("--format", "formats", multiple=True, type=click.Choice(FORMATS),
              help="Report formats to write (repeatable; default all).")
@_price_options
@click.option("--exemptions", "exemptions_path", type=click.Path(path_type=Path),
              help="Exemptions file (YAML): matched findings are reported as exempted.")
@click.option("--baseline", "baseline_path", type=click.Path(path_type=Path),
              help="An earlier run's findings.json: mark findings new or existing.")
@click.option("--fail-on-new", is_flag=True,
              help="With --fail-on and --baseline: count only new findings for the exit code.")
@click.option("--collect", "collect_now", is_flag=True,
              help="Collect from Azure first (scope options below); the snapshot is kept in "
              "the output folder.")
@click.option("--history", "history_dir", type=click.Path(path_type=Path),
              help="History folder: append this run, and give findings first_seen and age.")
@_scope_options
def audit(snapshot, sample, out_dir, config_path, fail_on, as_of, formats, occupancy,
          prices_path, exemptions_path, baseline_path, fail_on_new, collect_now, history_dir,
          **scope):
    """Evaluate the rule pack over a snapshot and write the reports."""
    if bool(snapshot) + bool(sample) + bool(collect_now) != 1:
        raise click.UsageError("give a SNAPSHOT directory, --sample or --collect (one of them)")
    if fail_on_new and not (fail_on and baseline_path):
        raise click.UsageError("--fail-on-new needs --fail-on and --baseline")
    _scope_only_with_collect(click.get_current_context(), collect_now)
    _claim_output(out_dir)
    config_path = _config_path(config_path)
    options = dict(config=config_path, exemptions=exemptions_path, baseline=baseline_path,
                   as_of=as_of, prices=prices_path, occupancy=occupancy, history=history_dir)
    if collect_now:  # bad input fails before a long collection, not after
        rules = api.rule_pack(config_path)
        if exemptions_path is not None:
            load_exemptions(exemptions_path, rules)
        if baseline_path is not None:
            load_baseline(baseline_path)
        api.parse_time(as_of, "--as-of")
        loaded = collect_from_options(**scope)
        stamp = loaded.collected_at.strftime("%Y%m%dT%H%M%SZ")
        snapshot = loaded.write(Path(out_dir) / f"snapshot-{stamp}")
        run = api.audit(loaded, **options)
        run.context["snapshot"] = str(snapshot)
    else:
        run = api.audit(api.SAMPLE if sample else snapshot, **options)
    findings, context = run.findings, run.context
    context["command"] = " ".join(["image-audit"] + sys.argv[1:])
    failed = None
    try:
        with report_set(out_dir, context) as written:
            written += write_reports(
                out_dir, findings, run.estate.tables, context, list(formats) or FORMATS,
                rules=run.rules, cost=run.cost, plan=run.plan, usage=run.estate.usage,
                exemptions=run.exemptions.entries if run.exemptions else None,
                fail_on=fail_on, fail_on_new=fail_on_new)
    except OutputsFailed as exc:  # the others were written: say so, then fail (exit 2)
        failed, written = exc, exc.written
    counts = run.counts
    click.echo(counts_line(counts))
    for rule_id, count in counts["open_by_rule"].items():
        click.echo(f"  {rule_id}  {count}")
    if baseline_path is not None:
        compared = context["baseline"]
        click.echo(f"against {baseline_path}: {compared['new']} new, {compared['existing']} "
                   f"existing, {compared['resolved']} resolved")
    if history_dir is not None:
        recorded = context["history"]
        added = "run added" if recorded["recorded"] else "run already there, nothing changed"
        click.echo(f"history {history_dir}: {added}; {recorded['runs']} run(s)")
    for path in written:
        click.echo(f"wrote {path}")
    if failed is not None:
        if click.get_current_context().find_root().obj.get("debug"):
            for error in failed.errors:
                traceback.print_exception(error)
        for line in failed.failures:
            click.echo(f"image-audit: error: {line}", err=True)
        sys.exit(2)
    if fail_on:
        active = findings[~findings["exempted"].astype(bool)]
        if fail_on_new:
            active = active[active["status"] == "new"]
        failing = active["severity"].map(SEVERITY_RANK) >= SEVERITY_RANK[fail_on]
        if failing.any():
            click.echo(f"{int(failing.sum())} {'new ' if fail_on_new else ''}findings at or "
                       f"above {fail_on}", err=True)
            sys.exit(1)


@cli.command()
@click.option("--machines", required=True, type=click.IntRange(min=1),
              help="Number of VMs and scale sets.")
@click.option("--seed", default=0, show_default=True, help="Same seed, same estate.")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="File to write: .jsonl, or .jsonl.gz for gzip.")
def synth(machines, seed, output):
    """Write a deterministic synthetic tenant in raw Resource Graph shape (JSON lines)."""
    from auditor.synth import COLLECTED_AT, write_estate

    count = write_estate(output, machines, seed)
    click.echo(f"wrote {output}: {count} resources ({machines} machines); import it with "
               f"`image-audit import {output} -o SNAPSHOT --collected-at "
               f"{COLLECTED_AT.isoformat()}`")


@cli.command("cleanup-plan")
@click.argument("snapshot", required=False, type=click.Path(path_type=Path))
@click.option("--sample", is_flag=True, help="Plan for the bundled sample estate.")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Script to write (never run, never made executable).")
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              help="Config file (default: image-audit.yaml if present).")
@click.option("--exemptions", "exemptions_path", type=click.Path(path_type=Path),
              help="Exemptions file: exempted findings are blocked, not deleted.")
@click.option("--as-of", help="The 'now' of time-based rules (default: the snapshot's time).")
@click.option("--retain-tag", help="A resource with this tag (any value but false/no/0) is never "
              "deleted (default: RET001's retain_tag param, else `retain`).")
@_price_options
def cleanup_plan_command(snapshot, sample, output, config_path, exemptions_path, as_of,
                         retain_tag, occupancy, prices_path):
    """Write a reviewed script of the deletions that RET and STL findings call for."""
    if bool(snapshot) == bool(sample):
        raise click.UsageError("give a SNAPSHOT directory or --sample (one of them)")
    if output.is_dir():
        raise AuditError(f"{output}: is a folder; -o names the script file to write")
    run = api.audit(api.SAMPLE if sample else snapshot, config=_config_path(config_path),
                    exemptions=exemptions_path, as_of=as_of, prices=prices_path,
                    occupancy=occupancy, retain_tag=retain_tag, rule_ids=DELETION_RULES)
    plan, loaded, estate, cost = run.plan, run.snapshot, run.estate, run.cost
    script = plan.script({"tool_version": __version__,
                          "snapshot": "sample estate" if sample else str(snapshot),
                          "snapshot_sha256": loaded.sha256, "as_of": estate.as_of.isoformat(),
                          "cost_basis": cost.basis})
    atomic_write(output, lambda temporary: temporary.write_text(script, encoding="utf-8"))
    output.chmod(0o644)
    click.echo(f"wrote {output}: {len(plan.deletions)} deletion(s), {len(plan.blocked)} "
               "blocked; nothing was run")


@cli.command("cost")
@click.argument("snapshot", required=False, type=click.Path(path_type=Path))
@click.option("--sample", is_flag=True, help="Cost the bundled sample estate.")
@click.option("-o", "--output", "out_dir", default="reports", show_default=True,
              type=click.Path(path_type=Path), help="Folder for cost.csv and cost_lines.csv.")
@_price_options
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              help="Config file for the rules whose findings give the savings "
              "(default: image-audit.yaml if present).")
@click.option("--exemptions", "exemptions_path", type=click.Path(path_type=Path),
              help="Exemptions file: exempted findings save nothing (as in `audit`).")
@click.option("--as-of", help="The 'now' of time-based rules (default: the snapshot's time).")
def cost_command(snapshot, sample, out_dir, occupancy, prices_path, config_path,
                 exemptions_path, as_of):
    """Storage cost of images and replicas: totals by gallery, region, storage type, team,
    and the savings deletable now and blocked (the same figures as `audit`)."""
    if bool(snapshot) == bool(sample):
        raise click.UsageError("give a SNAPSHOT directory or --sample (one of them)")
    _claim_output(out_dir)
    run = api.audit(api.SAMPLE if sample else snapshot, config=_config_path(config_path),
                    exemptions=exemptions_path, as_of=as_of, prices=prices_path,
                    occupancy=occupancy, rule_ids=DELETION_RULES + FIX_SAVINGS)
    cost = run.cost
    totals = cost_totals(cost, run.findings, run.plan)
    click.echo(f"monthly image storage cost, {cost.currency} ({cost.basis})")
    width = min(60, max(13, int(totals["key"].astype(str).str.len().max())))
    for row in totals.itertuples(index=False):
        unpriced = f"  ({row.unpriced} unpriced)" if row.unpriced else ""
        click.echo(f"  {row.section:<15} {shown(str(row.key)):<{width}} "
                   f"{row.monthly_cost:>12,.2f}{unpriced}")
    run.context["command"] = " ".join(["image-audit"] + sys.argv[1:])
    with report_set(out_dir, run.context) as written:
        written += write_cost(out_dir, cost, run.findings, run.plan)
    for path in written:
        click.echo(f"wrote {path}")


@cli.group("history")
def history_group():
    """A history of runs: findings, cost and coverage over time (Parquet, by run date)."""


@history_group.command("add")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--history", "history_dir", required=True, type=click.Path(path_type=Path),
              help="History folder to append to (made if missing).")
def history_add(files, history_dir):
    """Append runs made elsewhere, from their findings.json (cost totals from the cost.csv
    beside it, when there is one)."""
    from auditor import history

    for path in files:
        recorded, name = history.add_findings_file(history_dir, path)
        click.echo(f"{path}: {'added as' if recorded else 'already there as'} {name}")


@history_group.command("show")
@click.argument("history_dir", type=click.Path(path_type=Path))
@click.option("--since", help="Only runs from this date (ISO 8601) on.")
@click.option("--last", type=click.IntRange(min=1), default=30, show_default=True,
              help="Runs shown one by one (the months cover every run from --since).")
def history_show(history_dir, since, last):
    """Open findings per severity and rule per run, mean time to resolve per rule, cost and
    savings per month, coverage per run."""
    from rich.console import Console

    from auditor import history

    loaded = history.load(history_dir, since=api.parse_time(since, "--since"))
    if loaded.runs.empty:
        raise AuditError(f"{history_dir}: no runs{f' since {since}' if since else ''}")
    # piped output is not cut to 80 columns: the per-run table needs about 130
    history.show(loaded, Console(width=None if sys.stdout.isatty() else 160), last=last)


@cli.group("prices")
def prices_group():
    """The snapshot price table used for cost."""


@prices_group.command("refresh")
@click.option("--currency", default="USD", show_default=True, help="ISO currency code.")
@click.option("--regions", help="Comma-separated ARM regions (default: every region).")
@click.option("--endpoint", default=price_table.RETAIL_PRICES_URL, show_default=True,
              help="Retail Prices API endpoint.")
@click.option("--output", type=click.Path(path_type=Path),
              help="Price table to write (default: the one shipped with the package).")
def prices_refresh(currency, regions, endpoint, output):
    """Rebuild the price table from the Azure Retail Prices API."""
    region_list = [r.strip() for r in (regions or "").split(",") if r.strip()]
    path, table = price_table.refresh(output, currency, region_list, endpoint)
    click.echo(f"wrote {path}: {len(table)} prices in {currency.upper()}")


@cli.group()
def rules():
    """List and describe the rules of the pack."""


@rules.command("list")
def rules_list():
    """One line per rule: id, severity, title."""
    for rule in load_rules():
        state = " (retired)" if rule.retired else "" if rule.enabled else " (off by default)"
        click.echo(f"{rule.id}  {rule.severity:<8}  {rule.title}{state}")


@rules.command("show")
@click.argument("rule_id")
def rules_show(rule_id):
    """Everything about one rule, from its YAML."""
    by_id = {rule.id: rule for rule in load_rules()}
    rule = by_id.get(rule_id.upper())
    if rule is None:
        raise AuditError(f"unknown rule id {rule_id!r} (see `image-audit rules list`)")
    def indented(text: str) -> str:
        return textwrap.indent(str(text).strip(), "  ")

    click.echo(f"{rule.id}  {rule.name}\n{rule.title}\nseverity: {rule.severity}\n"
               f"resource: {', '.join(rule.tables)}\n\nWhy it matters:\n{indented(rule.rationale)}"
               f"\n\nHow to fix:\n{indented(rule.remediation)}")
    if rule.params:
        click.echo("\nParams:")
        for name, default in rule.params.items():
            click.echo(f"  {name}: {default!r}")
    click.echo("\nReferences:")
    for reference in rule.references:
        click.echo(f"  {reference}")


@rules.command("docs")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Markdown file to write (default: print it).")
def rules_docs(output):
    """The rule reference in markdown, generated from the YAML (docs/rules.md)."""
    markdown = rules_markdown(load_rules())
    if output is None:
        click.echo(markdown, nl=False)
        return
    atomic_write(output, lambda temporary: temporary.write_text(markdown, encoding="utf-8"))
    click.echo(f"wrote {output}")


@cli.command("schema")
@click.argument("name", type=click.Choice(["config", "rules", "exemptions"]))
def schema_command(name):
    """Print the JSON Schema of a config, rule or exemptions file (for editors; see README)."""
    import json

    from auditor.engine import file_schema
    click.echo(json.dumps(file_schema(name), indent=2, ensure_ascii=False))


def _one_line(message: str) -> str:
    """An error message for the terminal: one line, no SAS token, and no escape sequence or
    control character from the data (each shown escaped, never interpreted)."""
    return shown(redact_sas(" ".join(message.splitlines())))


def main(argv=None):
    """Console entry point: errors become one line on stderr and exit code 2."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="image-audit", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("image-audit: aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:  # one line, with where to read more (click shows four)
        where = exc.ctx.command_path if exc.ctx is not None else "image-audit"
        message = _one_line(" ".join(exc.format_message().split()))
        click.echo(f"image-audit: usage error: {message} (see `{where} --help`)", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"image-audit: error: {_one_line(exc.format_message())}", err=True)
        sys.exit(2)
    except AuditError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"image-audit: error: {_one_line(str(exc))}", err=True)
        sys.exit(2)
    except Exception as exc:  # an unexpected failure still ends in one line, not a traceback
        if debug:
            raise
        detail = _one_line(str(exc))  # one line, whatever the exception holds
        detail = detail if len(detail) <= 200 else detail[:197] + "..."
        click.echo(f"image-audit: internal error: {type(exc).__name__}: {detail} "
                   "(run with --debug for the traceback)", err=True)
        sys.exit(2)
    sys.exit(0)


if __name__ == "__main__":
    main()
