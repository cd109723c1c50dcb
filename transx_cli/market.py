"""`transx solve` and `transx verify`: the market tools on their own, on instance files."""

from __future__ import annotations

import json
import sys
from fractions import Fraction

import click

from .plugin_api import fail, tokens, kwh, format_price, table, progress


@click.command()
@click.argument("instance", required=False, type=click.Path(dir_okay=False))
@click.option("--solver", "solver_name", type=click.Choice(["auto", "clarabel", "scs", "dual"]), default="auto",
              show_default=True, help="auto: Clarabel for small markets, the smoothed dual for large ones.")
@click.option("--cap", type=click.IntRange(1, 1024), default=16, show_default=True, help="Candidate sellers per buyer.")
@click.option("--time-limit", type=click.FloatRange(0, min_open=True), help="Seconds the solver may take.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable clearing.")
@click.option("--all", "show_all", is_flag=True, help="Show every trade and participant.")
@click.option("--report", is_flag=True,
              help="Add welfare, the welfare LP's optimum on the same pairs, the price of fairness and Jain's index.")
@click.option("--generate", type=click.IntRange(1, 4_000_000), help="Write a random instance of N participants instead.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for --generate.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="File for --generate (default stdout).")
def solve(instance, solver_name, cap, time_limit, as_json, show_all, report, generate, seed, output) -> None:
    """Clear INSTANCE.json: Nash-bargaining trades, payments and certificate."""
    from solver.instance import InstanceError, load_instance

    if generate is not None:
        from solver.generator import generate as make

        doc = json.dumps(make(generate, seed).to_json(), indent=None, separators=(",", ":"))
        if output:
            with open(output, "w", encoding="utf-8") as f:
                f.write(doc + "\n")
        else:
            click.echo(doc)
        return
    if instance is None:
        fail("give an INSTANCE.json to clear, or --generate N")
    from solver.market import clear
    from solver.relaxation import SolverError

    try:
        inst = load_instance(instance)
    except InstanceError as e:
        fail(str(e))
    try:
        result = clear(inst, cap=cap, solver=solver_name, time_limit=time_limit, progress=progress())
    except SolverError as e:
        fail(f"no clearing: {e}", status=1)
    fairness = _fairness(inst, result, cap) if report else None
    if as_json:
        doc = _solution_doc(inst, result)
        if fairness is not None:
            doc["report"] = {k: v for k, v in fairness.to_json().items() if k != "return_vs_grid"}
        click.echo(json.dumps(doc, indent=1))
    else:
        click.echo(_solution_text(inst, result, show_all))
        if fairness is not None:
            click.echo(_fairness_text(fairness))


def _fairness(inst, result, cap):
    from solver.pairs import candidate_pairs
    from solver.report import slot_report

    return slot_report(inst, result.clearing, pairs=candidate_pairs(inst, cap), verdict=result.verdict)


def _fairness_text(r) -> str:
    """The slot report for people: tokens (money is in nano-units there), ratios, counts."""

    def ratio(v, fmt):
        return "-" if v is None else format(v, fmt)

    pof = r.price_of_fairness
    return "\n".join([
        "",
        f"welfare (total gain over the participants' limits): {tokens(r.welfare_nano // 1000)} tokens; "
        f"the welfare LP on the same {r.pairs} pairs: {tokens(r.lp_welfare_nano // 1000)} tokens",
        f"price of fairness: {ratio(None if pof is None else 100 * pof, '.2f')}%"
        f" (the LP's optimum trades {r.lp_traders} participants, this clearing {r.traders} of {r.able} that can trade)",
        f"Jain's index of the gains: {ratio(r.jain, '.3f')}; "
        f"trades per trading participant: {ratio(r.trades_per_trader, '.2f')}",
        f"tradable sellers without a candidate pair: {r.left_out_sellers} of {r.tradable_sellers}",
    ])


def _solution_doc(inst, result) -> dict:
    from solver.report import outcomes

    v = result.verdict
    doc = result.clearing.to_json()
    rows = outcomes(inst, result.clearing)
    doc["surplus"] = {o.id: o.surplus_nano / 1000 for o in rows}
    doc["return_vs_grid"] = {o.id: o.return_vs_grid for o in rows}
    doc["objective"] = v.objective
    doc["gap"] = float(v.gap)
    doc["participants"] = v.participants
    doc["weight"] = v.weight
    doc["pairs"] = result.pairs
    doc["timing"] = {k: round(t, 6) for k, t in result.timings.items()}
    return doc


def _solution_text(inst, result, show_all: bool) -> str:
    from solver.report import outcomes

    v = result.verdict
    limit = None if show_all else 20
    c = result.clearing
    trades = [
        [t.seller, t.buyer, kwh(t.wh), tokens(t.payment), format_price(t.payment * 1000 // t.wh)] for t in c.trades
    ]
    rows = [o for o in outcomes(inst, c) if o.wh]
    people = [
        [o.id, o.side, kwh(o.wh), tokens(o.surplus_nano // 1000), tokens(o.return_vs_grid), f"{100 * o.return_vs_grid / o.grid:+.1f}%" if o.grid else "-"]
        for o in rows
    ]
    energy = sum(t.wh for t in c.trades)
    gain = sum(o.return_vs_grid for o in rows)
    out = [f"slot {c.slot}: {len(c.trades)} trades, {kwh(energy)} kWh, over {result.pairs} candidate pairs"]
    if c.trades:
        out += ["", table(["seller", "buyer", "kWh", "payment", "price/kWh"], trades, limit)]
        out += ["", table(["participant", "side", "kWh", "surplus", "vs grid", "return"], people, limit)]
    gap = v.gap if v.gap is not None else Fraction(0)
    out += [
        "",
        f"return against the grid, all participants: {tokens(gain)} tokens",
        f"objective: {v.objective} (x1e-6 nats), certificate gap {float(gap):.3g} nats over {v.participants} participants",
        "timing: " + ", ".join(f"{k} {t:.3f}s" for k, t in result.timings.items()),
    ]
    return "\n".join(out)


@click.command()
@click.argument("instance", type=click.Path(dir_okay=False))
@click.argument("solution", type=click.Path(dir_okay=False))
@click.option("--cap", type=click.IntRange(1, 1024), default=16, show_default=True, help="Candidate sellers per buyer.")
@click.option("--json", "as_json", is_flag=True)
def verify(instance, solution, cap, as_json) -> None:
    """Check SOLUTION.json against INSTANCE.json exactly; exit 0 if valid, 1 if not.

    A clearing valid in every way but whose multipliers do not certify it is
    valid on the chain (it ranks below any certified one): reported as
    "valid, not certified", exit 0.
    """
    import time

    from solver.clearing import load_clearing
    from solver.instance import InstanceError, load_instance
    from solver.verifier import verify as check

    try:
        inst = load_instance(instance)
        clearing = load_clearing(solution)
    except InstanceError as e:
        fail(str(e))
    t0 = time.perf_counter()
    v = check(inst, clearing, cap=cap, require_certificate=False)
    took = time.perf_counter() - t0
    if as_json:
        click.echo(json.dumps({"valid": v.ok, "certified": v.ok and v.certified, "reason": v.reason,
                               "objective": v.objective, "gap": None if v.gap is None else float(v.gap),
                               "seconds": round(took, 6)}))
    elif v.ok and not v.certified:
        click.echo(f"{v.reason}: objective {v.objective} (x1e-6 nats), checked in {took:.3f}s")
    elif v.ok:
        click.echo(f"valid: objective {v.objective} (x1e-6 nats), gap {float(v.gap):.3g} nats, checked in {took:.3f}s")
    else:
        click.echo(f"invalid: {v.reason}")
    sys.exit(0 if v.ok else 1)


COMMANDS = [solve, verify]
