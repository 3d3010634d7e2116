"""The hierarchy commands: test, unmapped, remap, and the rules."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from peachdw import db, rules
from peachdw.cli.base import (
    Options,
    cli,
    console,
    count_noun,
    global_options,
    setup,
)
from peachdw.cli.reports import campaigns_table
from peachdw.status import LOW_CONFIDENCE, campaigns_to_check

# -- hierarchy ------------------------------------------------------------------------


@cli.group()
@global_options
def hierarchy() -> None:
    """Explain and check how campaign names map to the five tiers."""


@hierarchy.command("test")
@global_options
@click.argument("name", required=False)
@click.option(
    "--campaign-id",
    type=int,
    help="Explain a stored campaign instead: its name, URLs and any override by id.",
)
@click.pass_context
def hierarchy_test(
    ctx: click.Context, name: str | None, campaign_id: int | None
) -> None:
    """Show the tiers NAME would get, the rule behind each and the confidence.

    Uses the rules in the database (read only) or, without one, the default rules. A
    name alone knows nothing of a campaign's URLs or id: use --campaign-id for a stored
    campaign, so rules on those fields and manual overrides show too.
    """
    _, settings = setup(ctx)
    if (name is None) == (campaign_id is None):
        raise click.UsageError("Give a campaign NAME or --campaign-id, one of the two.")
    path = settings.database.path
    campaign: dict[str, Any] = {"name": name}
    if path.exists():
        conn = db.connect_read_only(path)
        ruleset = rules.RuleSet(rules.stored_rules(conn))
        if campaign_id is not None:
            row = conn.execute("SELECT * FROM campaigns WHERE id = ?", (campaign_id,))
            found = row.fetchone()
            if found is None:
                raise click.BadParameter(
                    f"no campaign {campaign_id} in {path}.", param_hint="--campaign-id"
                )
            campaign = dict(found)
            name = campaign["name"]
        conn.close()
        source = f"rules in {path}"
    else:
        if campaign_id is not None:
            raise click.BadParameter(
                f"there is no database at {path} yet.", param_hint="--campaign-id"
            )
        ruleset = rules.RuleSet(rules.default_rules())
        source = "the default rules (no database yet)"

    mapping = ruleset.map(campaign)
    by_id = {rule.id: rule for rule in ruleset.rules if rule.id is not None}
    by_key = {rule.rule_key: rule for rule in ruleset.rules}
    table = Table(title=f"{name} ({source})")
    for column in ("tier", "value", "rule", "matched", "confidence"):
        # Patterns are shown whole, wrapped, never cut short with an ellipsis.
        table.add_column(column, overflow="fold")

    def describe(rule: rules.Rule) -> tuple[str, str, str]:
        label = f"{rule.id or ''} {rule.rule_key or ''}".strip()
        return label, f"{rule.match_type} {rule.pattern}", f"{rule.confidence:g}"

    for tier in rules.TIERS:
        rule = by_id.get(mapping.rule_ids[tier]) or by_key.get(mapping.rule_keys[tier])
        parts = [
            (slot, found)
            for slot, found in mapping.parts.items()
            if slot.startswith(f"{tier}.")
        ]
        if parts:
            table.add_row(tier, mapping.tiers[tier], "joined from its parts:", "", "")
            for slot, (value, part_rule) in parts:
                table.add_row(f"  {slot.split('.', 1)[1]}", value, *describe(part_rule))
        elif rule is None:
            table.add_row(
                tier, mapping.tiers[tier], "fallback: no rule matched", "", "0"
            )
        else:
            table.add_row(tier, mapping.tiers[tier], *describe(rule))
    console.print(table)
    verdict = "ok" if mapping.confidence >= LOW_CONFIDENCE else "needs a rule"
    console.print(f"confidence {mapping.confidence:.2f}: {verdict}")


@hierarchy.group("rules")
@global_options
def hierarchy_rules() -> None:
    """List, add, disable, remove, import and export the mapping rules."""


def _rules_conn(ctx: click.Context) -> tuple[Options, sqlite3.Connection]:
    options, settings = setup(ctx)
    return options, db.open_warehouse(settings.database.path)


@hierarchy_rules.command("list")
@global_options
@click.option("--all", "show_all", is_flag=True, help="Include disabled rules.")
@click.pass_context
def rules_list(ctx: click.Context, show_all: bool) -> None:
    """Show the rules, highest priority first."""
    _, conn = _rules_conn(ctx)
    stored = rules.stored_rules(conn)
    conn.close()
    shown = [rule for rule in stored if show_all or rule.is_active]
    shown.sort(key=lambda rule: (-rule.priority, rule.id or 0))
    table = Table(title=f"{len(shown)} rules" + ("" if show_all else " (active)"))
    for column in ("id", "key", "on", "priority", "conf.", "match", "pattern", "sets"):
        table.add_column(column, overflow="fold")
    for rule in shown:
        table.add_row(
            str(rule.id),
            rule.rule_key or "",
            "yes" if rule.is_active else "no",
            str(rule.priority),
            f"{rule.confidence:g}",
            f"{rule.match_field} {rule.match_type}",
            rule.pattern,
            ", ".join(f"{tier}={value}" for tier, value in rule.tiers.items()),
        )
    console.print(table)


@hierarchy_rules.command("add")
@global_options
@click.option("--pattern", required=True, help="What to match.")
@click.option(
    "--type",
    "match_type",
    type=click.Choice(rules.MATCH_TYPES),
    default="contains",
    show_default=True,
    help="How to match.",
)
@click.option(
    "--field",
    "match_field",
    type=click.Choice(rules.MATCH_FIELDS),
    default="name",
    show_default=True,
    help="The campaign field to match.",
)
@click.option(
    "--set",
    "assignments",
    multiple=True,
    required=True,
    metavar="TIER=VALUE",
    help="A tier and its value, such as network=ExoClick; repeat for more tiers.",
)
@click.option("--priority", type=int, default=100, show_default=True)
@click.option(
    "--confidence", type=click.FloatRange(0, 1), default=1.0, show_default=True
)
@click.option("--note", help="Why the rule exists.")
@click.pass_context
def rules_add(
    ctx: click.Context,
    pattern: str,
    match_type: str,
    match_field: str,
    assignments: tuple[str, ...],
    priority: int,
    confidence: float,
    note: str | None,
) -> None:
    """Add a rule. Then `peachdw hierarchy remap --dry-run` shows what it moves."""
    tiers = {}
    for assignment in assignments:
        tier, sep, value = assignment.partition("=")
        if not sep or not value.strip():
            raise click.BadParameter(
                f"{assignment!r} is not TIER=VALUE, such as network=ExoClick.",
                param_hint="--set",
            )
        tiers[tier.strip().lower()] = value.strip()
    rule = rules.Rule(
        pattern=pattern,
        match_type=match_type,
        match_field=match_field,
        tiers=tiers,
        priority=priority,
        confidence=confidence,
        note=note,
    )
    options, conn = _rules_conn(ctx)
    if options.dry_run:
        rules._check(rule)
        console.print("The rule is valid; nothing was stored (--dry-run).")
        return
    with db.transaction(conn):
        rule_id = rules.add_rule(conn, rule)
    conn.close()
    console.print(f"Added rule {rule_id}. {_NEXT_STEP}")


_NEXT_STEP = (
    "Preview: peachdw hierarchy remap --dry-run; apply: peachdw hierarchy remap"
)


def _switch(ctx: click.Context, rule_id: int, active: bool) -> None:
    options, conn = _rules_conn(ctx)
    state = "enabled" if active else "disabled"
    with db.transaction(conn):
        rules.require_rule(conn, rule_id)
        if options.dry_run:
            console.print(
                f"Rule {rule_id} would be {state} (--dry-run: nothing written)."
            )
            return
        rules.set_active(conn, rule_id, active)
    conn.close()
    console.print(f"Rule {rule_id} {state}. {_NEXT_STEP}")


@hierarchy_rules.command("disable")
@global_options
@click.argument("rule_id", type=int)
@click.pass_context
def rules_disable(ctx: click.Context, rule_id: int) -> None:
    """Stop using a rule (it stays listed with --all)."""
    _switch(ctx, rule_id, False)


@hierarchy_rules.command("enable")
@global_options
@click.argument("rule_id", type=int)
@click.pass_context
def rules_enable(ctx: click.Context, rule_id: int) -> None:
    """Use a disabled rule again."""
    _switch(ctx, rule_id, True)


@hierarchy_rules.command("remove")
@global_options
@click.argument("rule_id", type=int)
@click.pass_context
def rules_remove(ctx: click.Context, rule_id: int) -> None:
    """Delete a rule. Mappings it set keep their values until the next remap."""
    options, conn = _rules_conn(ctx)
    with db.transaction(conn):
        rules.require_rule(conn, rule_id)
        if options.dry_run:
            console.print(
                f"Rule {rule_id} would be removed (--dry-run: nothing written)."
            )
            return
        rules.remove_rule(conn, rule_id)
    conn.close()
    console.print(f"Rule {rule_id} removed. {_NEXT_STEP}")


@hierarchy_rules.command("export")
@global_options
@click.argument(
    "path",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    default="-",
)
@click.pass_context
def rules_export(ctx: click.Context, path: Path) -> None:
    """Write every rule as YAML to PATH (default: standard output)."""
    options, conn = _rules_conn(ctx)
    count = len(rules.stored_rules(conn))
    text = rules.export_rules(conn)
    conn.close()
    if str(path) == "-":
        sys.stdout.write(text)
        return
    if options.dry_run:
        console.print(f"Would write {count} rules to {path}.")
        return
    path.write_text(text, encoding="utf-8")
    console.print(f"Wrote {count} rules to {path}.")


@hierarchy_rules.command("import")
@global_options
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.pass_context
def rules_import(ctx: click.Context, path: Path) -> None:
    """Add the rules of a YAML file written by `export` (or by hand, same format)."""
    options, conn = _rules_conn(ctx)
    with db.transaction(conn):
        added, updated, unchanged = rules.import_rules(
            conn, path.read_text("utf-8"), str(path), dry_run=options.dry_run
        )
    conn.close()
    verbs = ("would add", "would update") if options.dry_run else ("added", "updated")
    console.print(
        f"{path}: {verbs[0]} {added}, {verbs[1]} {updated}, {unchanged} unchanged. "
        f"{_NEXT_STEP}"
    )


@hierarchy.command("unmapped")
@global_options
@click.pass_context
def hierarchy_unmapped(ctx: click.Context) -> None:
    """List campaigns with a fallback tier or a low confidence, most sessions first."""
    _, settings = setup(ctx)
    conn = db.open_warehouse(settings.database.path)
    rows = campaigns_to_check(conn)
    conn.close()
    if not rows:
        console.print("Every live campaign maps with confidence 0.8 or more.")
        return
    console.print(
        campaigns_table(rows, count_noun(len(rows), "campaign") + " to check")
    )


@hierarchy.command("remap")
@global_options
@click.pass_context
def hierarchy_remap(ctx: click.Context) -> None:
    """Apply the rules to every campaign again; show what changes, old and new.

    With --dry-run nothing is written. Manual overrides are never changed.
    """
    options, settings = setup(ctx)
    conn = db.open_warehouse(settings.database.path)
    with db.transaction(conn):
        changes = rules.plan_mappings(conn)
        if not options.dry_run:
            rules.apply_mappings(conn, changes)
    conn.close()

    if not changes:
        console.print("No mapping changes.")
        return
    verb = "would change" if options.dry_run else "changed"
    table = Table(title=f"{count_noun(len(changes), 'mapping')} {verb}")
    for column in ("id", "name", "old", "new", "confidence"):
        table.add_column(column)
    for change in changes:
        old = " / ".join(change.old) if change.old else "(not mapped)"
        before = (
            "-" if change.old_confidence is None else f"{change.old_confidence:.2f}"
        )
        table.add_row(
            str(change.campaign_id),
            change.name,
            old,
            " / ".join(change.new_tiers),
            f"{before} -> {change.new.confidence:.2f}",
        )
    console.print(table)
