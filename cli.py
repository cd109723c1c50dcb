"""`transx`: the command line of a TransX node, wallet and market tools.

Every command prints readable tables by default and a JSON document with
`--json`.  Bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import json
import sys
from fractions import Fraction

import click


def _fail(message: str, status: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(status)


def _tokens(micro: int | float) -> str:
    return f"{micro / 1e6:,.6f}"


def _table(headers: list[str], rows: list[list], limit: int | None = None) -> str:
    shown = rows if limit is None else rows[:limit]
    cells = [headers] + [[str(c) for c in r] for r in shown]
    widths = [max(len(r[k]) for r in cells) for k in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if k else c.ljust(w) for k, (c, w) in enumerate(zip(r, widths))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if limit is not None and len(rows) > limit:
        lines.append(f"... {len(rows) - limit} more (use --all)")
    return "\n".join(lines)


def _progress():
    """Stage messages on stderr for a person watching a terminal; silent otherwise."""
    if not sys.stderr.isatty():
        return None
    import time

    start = time.perf_counter()
    return lambda msg: click.echo(f"[{time.perf_counter() - start:7.2f}s] {msg}", err=True)


class _Transx(click.Group):
    """Usage errors as one line (`error: ...`, exit 2), like every other bad input.  Installed plugins
    (transxnode/plugins.py) add their commands here, looked up only when asked for."""

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(_plugin_commands()))

    def get_command(self, ctx, name):
        return super().get_command(ctx, name) or _plugin_commands().get(name)

    def main(self, *args, **kwargs):
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.Abort:
            _fail("aborted", status=1)
        except click.exceptions.NoArgsIsHelpError as e:
            click.echo(e.format_message(), err=True)
            sys.exit(2)
        except click.ClickException as e:
            hint = f" (see: {e.ctx.command_path} --help)" if isinstance(e, click.UsageError) and e.ctx else ""
            _fail(e.format_message() + hint, status=e.exit_code)
        sys.exit(code if isinstance(code, int) else 0)


def _plugin_commands() -> dict:
    from transxnode.plugins import load_plugins

    out = {}
    for p in load_plugins():
        for cmd in (getattr(p.obj, "commands", None) or []) if p.obj is not None else []:
            out.setdefault(cmd.name, cmd)
    return out


@click.group(cls=_Transx, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """TransX: a peer-to-peer energy market cleared by Proof-of-Solution."""


@main.command()
@click.argument("instance", required=False, type=click.Path(dir_okay=False))
@click.option("--solver", "solver_name", type=click.Choice(["auto", "clarabel", "scs", "dual"]), default="auto",
              show_default=True, help="auto: Clarabel for small markets, the smoothed dual for large ones.")
@click.option("--cap", type=click.IntRange(1, 1024), default=16, show_default=True, help="Candidate sellers per buyer.")
@click.option("--time-limit", type=click.FloatRange(0, min_open=True), help="Seconds the solver may take.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable clearing.")
@click.option("--all", "show_all", is_flag=True, help="Show every trade and participant.")
@click.option("--generate", type=click.IntRange(1, 4_000_000), help="Write a random instance of N participants instead.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for --generate.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="File for --generate (default stdout).")
def solve(instance, solver_name, cap, time_limit, as_json, show_all, generate, seed, output) -> None:
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
        _fail("give an INSTANCE.json to clear, or --generate N")
    from solver.market import clear
    from solver.relaxation import SolverError

    try:
        inst = load_instance(instance)
    except InstanceError as e:
        _fail(str(e))
    try:
        result = clear(inst, cap=cap, solver=solver_name, time_limit=time_limit, progress=_progress())
    except SolverError as e:
        _fail(f"no clearing: {e}", status=1)
    if as_json:
        click.echo(json.dumps(_solution_doc(inst, result), indent=1))
    else:
        click.echo(_solution_text(inst, result, show_all))


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
        [t.seller, t.buyer, f"{t.wh:,}", _tokens(t.payment), f"{t.payment * 1000 / t.wh / 1e6:.4f}"] for t in c.trades
    ]
    rows = [o for o in outcomes(inst, c) if o.wh]
    people = [
        [o.id, o.side, f"{o.wh:,}", _tokens(o.surplus_nano / 1000), _tokens(o.return_vs_grid), f"{100 * o.return_vs_grid / o.grid:+.1f}%" if o.grid else "-"]
        for o in rows
    ]
    energy = sum(t.wh for t in c.trades)
    gain = sum(o.return_vs_grid for o in rows)
    out = [f"slot {c.slot}: {len(c.trades)} trades, {energy / 1000:,.3f} kWh, over {result.pairs} candidate pairs"]
    if c.trades:
        out += ["", _table(["seller", "buyer", "Wh", "payment", "price/kWh"], trades, limit)]
        out += ["", _table(["participant", "side", "Wh", "surplus", "vs grid", "return"], people, limit)]
    gap = v.gap if v.gap is not None else Fraction(0)
    out += [
        "",
        f"return against the grid, all participants: {_tokens(gain)}",
        f"objective: {v.objective} (x1e-6 nats), certificate gap {float(gap):.3g} nats over {v.participants} participants",
        "timing: " + ", ".join(f"{k} {t:.3f}s" for k, t in result.timings.items()),
    ]
    return "\n".join(out)


@main.command()
@click.argument("instance", type=click.Path(dir_okay=False))
@click.argument("solution", type=click.Path(dir_okay=False))
@click.option("--cap", type=click.IntRange(1, 1024), default=16, show_default=True, help="Candidate sellers per buyer.")
@click.option("--json", "as_json", is_flag=True)
def verify(instance, solution, cap, as_json) -> None:
    """Check SOLUTION.json against INSTANCE.json exactly; exit 0 if valid, 1 if not."""
    import time

    from solver.clearing import load_clearing
    from solver.instance import InstanceError, load_instance
    from solver.verifier import verify as check

    try:
        inst = load_instance(instance)
        clearing = load_clearing(solution)
    except InstanceError as e:
        _fail(str(e))
    t0 = time.perf_counter()
    v = check(inst, clearing, cap=cap)
    took = time.perf_counter() - t0
    if as_json:
        click.echo(json.dumps({"valid": v.ok, "reason": v.reason, "objective": v.objective,
                               "gap": None if v.gap is None else float(v.gap), "seconds": round(took, 6)}))
    elif v.ok:
        click.echo(f"valid: objective {v.objective} (x1e-6 nats), gap {float(v.gap):.3g} nats, checked in {took:.3f}s")
    else:
        click.echo(f"invalid: {v.reason}")
    sys.exit(0 if v.ok else 1)



# --------------------------------------------------------------------------
# Node, wallet, bids and explorer: the chain's commands.

_datadir_option = click.option(
    "--datadir", type=click.Path(file_okay=False), default=None, envvar="TRANSX_DATADIR",
    help="The node's data directory (default ~/.transx, or $TRANSX_DATADIR).")
_password_option = click.option(
    "--password-file", type=click.Path(dir_okay=False), help="File whose first line is the keystore password "
    "(else $TRANSX_PASSWORD, else a prompt).")
_api_option = click.option("--api", help="The node's API URL (default: the node running on --datadir).")
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def _datadir(datadir: str | None) -> str:
    from transxnode.config import DEFAULT_DATADIR

    return datadir or DEFAULT_DATADIR


def _client(api: str | None, datadir: str | None):
    from transxnode.client import ApiClient, resolve_api

    return ApiClient(resolve_api(api, _datadir(datadir)))


def _guard(fn):
    """One line and a non-zero exit for every error a user can cause."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from transxnode.client import ClientError
        from transxnode.config import ConfigError
        from transxnode.genesis import GenesisError
        from transxnode.keys import AddressError
        from transxnode.keystore import KeystoreError
        from transxnode.store import StoreError
        from transxnode.wallet import InputError

        try:
            return fn(*args, **kwargs)
        except ClientError as e:
            _fail(str(e), status=1)
        except (ConfigError, GenesisError, AddressError, KeystoreError, StoreError, InputError) as e:
            _fail(str(e))
        except OSError as e:  # a path that cannot be written, a disk that is full
            _fail(f"{e.strerror or e}{': ' + str(e.filename) if e.filename else ''}")

    return wrapper


def _password(password_file: str | None, confirm: bool = False) -> str:
    from transxnode.keystore import read_password

    return read_password(password_file=password_file, prompt=sys.stdin.isatty(), confirm=confirm)


def _micro(v: int | None) -> str:
    return "-" if v is None else _tokens(v)


def _price(v: int | None) -> str:
    return "-" if v is None else f"{v / 1e6:.4f}"


def _emit(doc, as_json: bool, text) -> None:
    click.echo(json.dumps(doc, indent=1) if as_json else text(doc))


@main.command()
@_datadir_option
@click.option("--genesis", "genesis_file", type=click.Path(dir_okay=False, exists=True),
              help="Genesis file of the network to join (default: the repository's genesis.json).")
@click.option("--dev", is_flag=True, help="A private development chain: starts now, this node funded and solving.")
@click.option("--slot-seconds", type=click.IntRange(1, 86400), default=5, show_default=True,
              help="Slot length of a --dev chain.")
@click.option("--api-listen", default=None, help="HOST:PORT of the HTTP API (default 127.0.0.1:8645; port 0 picks one).")
@click.option("--p2p-listen", default=None,
              help="Multiaddress for peers (default /ip4/0.0.0.0/tcp/9645; tcp/0 picks a port).")
@click.option("--bootstrap", multiple=True, help="A peer to join, /ip4/HOST/tcp/PORT/p2p/PEER_ID (repeatable).")
@_password_option
def init(datadir, genesis_file, dev, slot_seconds, api_listen, p2p_listen, bootstrap, password_file) -> None:
    """Create a data directory: node key (encrypted), genesis, config."""
    _init(datadir, genesis_file, dev, slot_seconds, api_listen, p2p_listen, bootstrap, password_file)


@_guard
def _init(datadir, genesis_file, dev, slot_seconds, api_listen, p2p_listen, bootstrap, password_file) -> None:
    from pathlib import Path

    from transxnode import genesis as G
    from transxnode.config import DEFAULT_API, DEFAULT_P2P, check_p2p_address, config_path
    from transxnode.datadir import init_datadir

    d = Path(_datadir(datadir))
    if config_path(d).exists():
        _fail(f"{d} is already initialised (config.toml exists); choose another --datadir")
    if dev and genesis_file:
        _fail("give --dev or --genesis, not both")
    for addr in (p2p_listen, *bootstrap):
        if addr is not None:
            check_p2p_address(addr, peer=addr != p2p_listen)
    doc = None
    if not dev:
        doc = G.read_json(genesis_file or str(Path(__file__).resolve().parent / "genesis.json"), G.GenesisError)
        G.genesis_from_json(doc)  # refuse a bad file before asking for a password
    password = _password(password_file, confirm=True)
    address, g = init_datadir(d, password, doc, dev_slot_seconds=slot_seconds if dev else None,
                              api_listen=api_listen or DEFAULT_API, p2p_listen=p2p_listen or DEFAULT_P2P,
                              bootstrap=list(bootstrap))
    click.echo(f"initialised {d}")
    click.echo(f"  network   {g.chain_id} (genesis {g.hash.hex()[:16]}, {g.slot_seconds}s slots)")
    click.echo(f"  node key  {address}")
    click.echo(f"next: transx node --datadir {d}")


@main.command()
@_datadir_option
@_password_option
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def node(datadir, password_file, verbose) -> None:
    """Run the node: keep the chain, clear each slot, serve the API. Ctrl-C stops it cleanly."""
    _node(datadir, password_file, verbose)


@_guard
def _node(datadir, password_file, verbose) -> None:
    import logging

    import trio

    from transxnode.config import load_config
    from transxnode.daemon import run_node

    d = _datadir(datadir)
    load_config(d)  # a missing datadir is one line, before asking for a password
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-5s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("hypercorn.error", "hypercorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    password = _password(password_file)
    trio.run(run_node, d, password)


# --- wallet ---------------------------------------------------------------
@main.group()
def wallet() -> None:
    """Keys and money: new, list, address, balance, send."""


def _keystore(datadir):
    from pathlib import Path

    from transxnode.keystore import Keystore

    return Keystore(Path(_datadir(datadir)) / "keystore")


def _default_address(datadir) -> str:
    from transxnode.config import ConfigError, load_config

    try:
        return load_config(_datadir(datadir)).key
    except ConfigError:
        addrs = _keystore(datadir).addresses()
        if not addrs:
            _fail("no key in the keystore: run `transx wallet new` (or name an address)")
        return addrs[0]


def _unlock(datadir, address: str | None, password_file):
    address = address or _default_address(datadir)
    return _keystore(datadir).unlock(address, _password(password_file))


def _account(address: str | None, datadir, api) -> dict:
    """The node's view of ADDRESS (default: the default address), checked before asking."""
    from transxnode.keys import decode_address

    address = address or _default_address(datadir)
    decode_address(address)
    return _client(api, datadir).get(f"/api/address/{address}")


@wallet.command("new")
@_datadir_option
@_password_option
@_json_option
@_guard
def wallet_new(datadir, password_file, as_json) -> None:
    """Create a key in the keystore; prints its address."""
    address = _keystore(datadir).create(_password(password_file, confirm=True))
    _emit({"address": address}, as_json, lambda d: d["address"])


@wallet.command("list")
@_datadir_option
@_api_option
@_json_option
@_guard
def wallet_list(datadir, api, as_json) -> None:
    """The keystore's addresses, with balances when a node answers."""
    from transxnode.client import ClientError

    rows = []
    client = _client(api, datadir)
    for a in _keystore(datadir).addresses():
        try:
            acct = client.get(f"/api/address/{a}")
            rows.append({"address": a, "balance": acct["balance"], "escrowed": acct["escrowed"]})
        except ClientError:
            rows.append({"address": a, "balance": None, "escrowed": None})
    _emit(rows, as_json, lambda rs: _table(["address", "balance", "escrowed"],
                                           [[r["address"], _micro(r["balance"]), _micro(r["escrowed"])] for r in rs])
          if rs else "the keystore is empty: `transx wallet new`")


@wallet.command("address")
@_datadir_option
@_json_option
@_guard
def wallet_address(datadir, as_json) -> None:
    """The default address: the node key of --datadir (or the keystore's first key)."""
    a = _default_address(datadir)
    _emit({"address": a}, as_json, lambda d: d["address"])


@wallet.command("balance")
@click.argument("address", required=False)
@_datadir_option
@_api_option
@_json_option
@_guard
def wallet_balance(address, datadir, api, as_json) -> None:
    """Balance, escrow and nonce of ADDRESS (default: the default address)."""
    acct = _account(address, datadir, api)
    _emit(acct, as_json, lambda a: "\n".join([
        f"address   {a['address']}", f"balance   {_tokens(a['balance'])}", f"escrowed  {_tokens(a['escrowed'])}",
        f"nonce     {a['nonce']} ({a['pending_nonce'] - a['nonce']} pending)",
        f"open bids {len(a['open_bids'])}"]))


@wallet.command("send")
@click.argument("to")
@click.argument("amount")
@click.option("--from", "sender", help="Address to send from (default: the default address).")
@click.option("--fee", help="Fee in tokens (default: the network's minimum).")
@_datadir_option
@_api_option
@_password_option
@_json_option
@_guard
def wallet_send(to, amount, sender, fee, datadir, api, password_file, as_json) -> None:
    """Send AMOUNT tokens to TO."""
    from transxnode.keys import decode_address
    from transxnode.transactions import Transfer
    from transxnode.wallet import parse_tokens, send

    body = Transfer(decode_address(to), parse_tokens(amount))
    fee_micro = None if fee is None else parse_tokens(fee, "fee", allow_zero=True)
    client = _client(api, datadir)
    out = send(client, _unlock(datadir, sender, password_file), body, fee_micro)
    _emit(out, as_json, lambda d: f"sent {_tokens(body.amount)} to {to}: transaction {d['hash']} (pending)")


# --- the home agent ---------------------------------------------------------
@main.group()
def agent() -> None:
    """The home agent: forecast the day, plan bids within the price band, send them, learn."""


def _agent_options(fn):
    for opt in reversed([
        click.option("--kwp", type=click.FloatRange(0, 1000), default=5.0, show_default=True,
                     help="PV array peak power (0: no panels)."),
        click.option("--tilt", type=click.FloatRange(0, 90), default=10.0, show_default=True),
        click.option("--azimuth", type=click.FloatRange(0, 360), default=180.0, show_default=True,
                     help="Degrees from north the panels face."),
        click.option("--lat", type=click.FloatRange(-90, 90), default=3.139, show_default=True),
        click.option("--lon", type=click.FloatRange(-180, 180), default=101.687, show_default=True),
        click.option("--utc-offset", type=click.FloatRange(-12, 14), default=8.0, show_default=True,
                     help="Local time's offset from UTC, for the load profile."),
        click.option("--daily-kwh", type=click.FloatRange(0, 10_000), default=12.0, show_default=True,
                     help="What the home uses in a day."),
        click.option("--battery-kwh", type=click.FloatRange(0, 1000), default=0.0, show_default=True),
        click.option("--battery-soc", type=click.FloatRange(0, 100), default=50.0, show_default=True,
                     help="The battery's state of charge now, percent."),
        click.option("--cloudiness", type=click.FloatRange(0, 1), default=0.3, show_default=True,
                     help="Expected cloud cover, 0..1."),
        click.option("--slots", type=click.IntRange(1, 1000), default=48, show_default=True,
                     help="How many slots ahead to plan."),
        click.option("--zone", type=click.IntRange(0, 255), default=0, show_default=True),
        click.option("--from", "sender", help="Address that bids (default: the default address)."),
        _datadir_option, _api_option, _password_option,
    ]):
        fn = opt(fn)
    return fn


def _home_agent(kwp, tilt, azimuth, lat, lon, utc_offset, daily_kwh, battery_kwh, battery_soc, cloudiness):
    from agent.forecast import Site
    from agent.home import HomeAgent
    from agent.strategy import Battery

    battery = Battery(capacity_wh=int(battery_kwh * 1000), soc_wh=int(battery_kwh * 10 * battery_soc)) \
        if battery_kwh else None
    site = Site(latitude=lat, longitude=lon, kwp=kwp, tilt=tilt, azimuth=azimuth) if kwp else None
    return HomeAgent(site, daily_kwh, battery, cloudiness=cloudiness, utc_offset=utc_offset)


FEE_RESERVE = 20  # fees the agent leaves unlocked: a solver sharing the key needs them for commits and reveals


def _lockable(acct: dict, info: dict) -> int:
    """What the agent may lock in bids: the balance less the fees of what is pending and a reserve."""
    return max(0, acct["balance"] - (acct["pending_nonce"] - acct["nonce"] + FEE_RESERVE) * info["min_fee"])


def _agent_first_slot(market: dict) -> int:
    """The agent plans from one slot past the first open one: a bid sent as its slot's gate closes may
    reach the mempool yet miss the last block that could take it, and then the bids signed after it
    wait behind its nonce until they are dropped too."""
    return market["first_open_slot"] + 1


def _send_bids(client, key, bodies: list) -> tuple[list[tuple[int, str]], list[int]]:
    """Sign and send bid bodies one by one (each at the key's next nonce): (slot, hash) of those sent and
    the slots skipped because their gate closed while the others were being sent (the chain moves on
    during a long list; the rest of the plan still stands).  Progress on a terminal, skips on stderr."""
    from transxnode.client import ClientError
    from transxnode.wallet import send

    sent, skipped = [], []
    progress = _progress()
    for i, body in enumerate(bodies):
        try:
            sent.append((body.slot, send(client, key, body)["hash"]))
        except ClientError as e:
            if e.reason != "gate_closed":
                raise
            skipped.append(body.slot)
        if progress and ((i + 1) % 10 == 0 or i + 1 == len(bodies)):
            progress(f"{i + 1}/{len(bodies)} bids sent")
    if skipped:
        click.echo(f"warning: slot{'s' if len(skipped) > 1 else ''} {', '.join(map(str, skipped))} closed for bids "
                   "while sending; not sent", err=True)
    return sent, skipped


@agent.command("plan")
@_agent_options
@click.option("--send", "do_send", is_flag=True, help="Sign and send the planned bids.")
@click.option("-y", "--yes", is_flag=True, help="With --send: sign without asking.")
@_json_option
@_guard
def agent_plan(kwp, tilt, azimuth, lat, lon, utc_offset, daily_kwh, battery_kwh, battery_soc, cloudiness, slots, zone,
               sender, datadir, api, password_file, do_send, yes, as_json) -> None:
    """Forecast the next SLOTS slots and show the bids the agent would post, with the return it
    expects against net metering; --send posts them."""
    home = _home_agent(kwp, tilt, azimuth, lat, lon, utc_offset, daily_kwh, battery_kwh, battery_soc, cloudiness)
    client = _client(api, datadir)
    info, market = client.get("/api/node"), client.get("/api/market")
    address = (sender or _default_address(datadir)) if do_send else None
    funds = _lockable(client.get(f"/api/address/{address}"), info) if address else None
    plan = home.plan(_agent_first_slot(market), slots, info, market, funds=funds)
    doc = plan.to_json()

    def text(d) -> str:
        by_slot = {b["slot"]: b for b in d["bids"]}
        rows = []
        for k, (pv, load) in enumerate(zip(d["pv_wh"], d["load_wh"])):
            s = d["first_slot"] + k
            b = by_slot.get(s)
            rows.append([s, f"{pv / 1000:.2f}", f"{load / 1000:.2f}", b["side"] if b else "-",
                         f"{b['wh'] / 1000:.2f}" if b else "", _price(b["price"]) if b else ""])
        return (_table(["slot", "PV kWh", "load kWh", "bid", "kWh", "limit/kWh"], rows, 200) +
                f"\nprice band: reference {_price(d['reference_price'])}, sell at least {_price(d['sell_limit'])}, "
                f"buy at most {_price(d['buy_limit'])} per kWh\nexpected return against net metering: "
                f"{_tokens(d['expected_gain'])} if every bid clears at the reference" +
                ("\nbids cut to what the balance can lock (buy escrow, sell collateral, fees)"
                 if d["cut_to_funds"] else ""))

    if not do_send:
        _emit(doc, as_json, text)
        return
    if not as_json:
        click.echo(text(doc))
        if not yes and sys.stdin.isatty():
            click.confirm(f"sign and send these {len(plan.bids)} bids?", abort=True)
    if any(b.side == 1 for b in plan.bids):
        _warn_without_meter(client, address)
    sent, skipped = _send_bids(client, _unlock(datadir, address, password_file),
                               [b.to_bid(zone, info["gate_closure"]) for b in plan.bids])
    _emit({**doc, "sent": [h for _, h in sent], "skipped_slots": skipped}, as_json,
          lambda d: f"{len(sent)} bids sent (pending)")


@agent.command("run")
@_agent_options
@_guard
def agent_run(kwp, tilt, azimuth, lat, lon, utc_offset, daily_kwh, battery_kwh, battery_soc, cloudiness, slots, zone,
              sender, datadir, api, password_file) -> None:
    """Trade hands-free until Ctrl-C: keep bids posted SLOTS slots ahead, and after each settlement
    widen or narrow the safety margin by how far the meter landed from what was cleared."""
    import time

    home = _home_agent(kwp, tilt, azimuth, lat, lon, utc_offset, daily_kwh, battery_kwh, battery_soc, cloudiness)
    client = _client(api, datadir)
    address = sender or _default_address(datadir)
    if kwp:
        _warn_without_meter(client, address)
    key = _unlock(datadir, address, password_file)
    planned_to = -1
    sent_below = 0  # the nonce past our last bid: plan again once the chain has taken them
    learnt = set()
    try:
        while True:
            info, market = client.get("/api/node"), client.get("/api/market")
            acct = client.get(f"/api/address/{address}")
            first = max(_agent_first_slot(market), planned_to + 1)
            last = _agent_first_slot(market) + slots - 1
            # The balance tells what can be locked once our bids already sent are in blocks (or dropped:
            # nothing pending).  Other pending transactions of the key, a solver's commits, cost fees only.
            if first <= last and (acct["nonce"] >= sent_below or acct["pending_nonce"] == acct["nonce"]):
                plan = home.plan(first, last - first + 1, info, market, funds=_lockable(acct, info))
                sent, _ = _send_bids(client, key, [b.to_bid(zone, info["gate_closure"]) for b in plan.bids])
                sent_below = client.get(f"/api/address/{address}")["pending_nonce"]
                planned_to = last
                click.echo(f"{time.strftime('%H:%M:%S')}  slots {first}..{last}: {len(sent)} bids sent, expected "
                           f"{_tokens(plan.expected_gain)} against net metering (margin {home.strategy.margin:.0%})"
                           + ("; cut to what the balance can lock" if plan.cut_to_funds else ""))
            for s in acct["settlements"]:
                if s["slot"] not in learnt:
                    learnt.add(s["slot"])
                    home.strategy.learn(s["sold_wh"] or s["bought_wh"], s["shortfall_wh"] or s["unused_wh"])
                    click.echo(f"{time.strftime('%H:%M:%S')}  slot {s['slot']} settled: {s['shortfall_wh']:,} Wh short, "
                               f"{s['unused_wh']:,} Wh unused; margin now {home.strategy.margin:.0%}")
            time.sleep(max(0.5, info["slot_seconds"] / 4))
    except KeyboardInterrupt:
        click.echo("agent stopped; bids already sent stay on the chain")


# --- meters ---------------------------------------------------------------
@main.group()
def meter() -> None:
    """A home's meter: register its key to an account, send its readings for settlement."""


@meter.command("register")
@click.option("--address", help="The account the meter belongs to (default: the default address).")
@click.option("--meter", "meter_address", help="The meter's key, an address in the keystore (default: a new key).")
@_datadir_option
@_api_option
@_password_option
@_json_option
@_guard
def meter_register(address, meter_address, datadir, api, password_file, as_json) -> None:
    """Register a meter key to the account: from then on the chain settles the account's trades
    against readings that key signed (a reading signed by another key is refused)."""
    from transxnode.keys import public_key
    from transxnode.transactions import RegisterMeter
    from transxnode.wallet import send

    password = _password(password_file)
    account = address or _default_address(datadir)
    meter_address = meter_address or _keystore(datadir).create(password)
    meter_key = _keystore(datadir).unlock(meter_address, password)
    out = send(_client(api, datadir), _keystore(datadir).unlock(account, password), RegisterMeter(public_key(meter_key)))
    _emit({**out, "account": account, "meter": meter_address}, as_json,
          lambda d: f"meter {meter_address} registered to {account}: transaction {d['hash']} (pending)")


@meter.command("read")
@click.option("--slot", type=click.IntRange(0), required=True, help="The delivered slot the reading is for.")
@click.option("--imported-wh", type=click.IntRange(0, 2**32 - 1), default=0, help="Wh taken from the grid.")
@click.option("--exported-wh", type=click.IntRange(0, 2**32 - 1), default=0, help="Wh fed into the grid.")
@click.option("--address", help="The account (default: the default address).")
@_datadir_option
@_api_option
@_password_option
@_json_option
@_guard
def meter_read(slot, imported_wh, exported_wh, address, datadir, api, password_file, as_json) -> None:
    """Send the account's meter reading for SLOT, signed by the meter registered to it."""
    from transxnode.keys import address_of, decode_address, encode_address
    from transxnode.metering import sign_reading
    from transxnode.wallet import send

    if imported_wh and exported_wh:
        _fail("a reading is an import or an export for one slot, not both")
    client = _client(api, datadir)
    account = address or _default_address(datadir)
    registered = _account(account, datadir, api)["meter"]
    if registered is None:
        _fail(f"no meter is registered to {account}: `transx meter register` first")
    meter_address = encode_address(address_of(bytes.fromhex(registered)))
    if meter_address not in _keystore(datadir).addresses():
        _fail(f"the meter registered to {account} ({meter_address}) has no key in this keystore")
    password = _password(password_file)
    info = client.get("/api/node")
    reading = sign_reading(_keystore(datadir).unlock(meter_address, password), chain_id=info["chain_id"],
                           account=decode_address(account), slot=slot, imported_wh=imported_wh,
                           exported_wh=exported_wh)
    out = send(client, _keystore(datadir).unlock(account, password), reading)
    _emit(out, as_json, lambda d: f"reading for slot {slot} sent ({imported_wh:,} Wh in, {exported_wh:,} Wh out): "
          f"transaction {d['hash']} (pending)")


# --- bids -----------------------------------------------------------------
@main.group()
def bid() -> None:
    """Buy and sell energy for future slots: buy, sell, cancel, list."""


def _bid_options(fn):
    for opt in reversed([
        click.argument("quantity"),
        click.argument("price"),
        click.option("--slot", type=click.IntRange(0, 2**63 - 1), help="Delivery slot (default: the first one still open)."),
        click.option("--zone", type=click.IntRange(0, 255), default=0, show_default=True, help="Your network zone."),
        click.option("--expiry", type=click.IntRange(0, 2**63 - 1), help="Last block height that may include the bid "
                     "(default: the slot's gate closure)."),
        click.option("--from", "sender", help="Address that bids (default: the default address)."),
        click.option("--fee", help="Fee in tokens (default: the network's minimum)."),
        click.option("-y", "--yes", is_flag=True, help="Sign without asking."),
        _datadir_option, _api_option, _password_option, _json_option,
    ]):
        fn = opt(fn)
    return fn


@bid.command("buy")
@_bid_options
def bid_buy(**kw) -> None:
    """Buy QUANTITY (e.g. 5kWh) at most at PRICE tokens per kWh; the most you pay is held in escrow."""
    _bid(0, **kw)


@bid.command("sell")
@_bid_options
def bid_sell(**kw) -> None:
    """Sell QUANTITY (e.g. 5kWh) at least at PRICE tokens per kWh."""
    _bid(1, **kw)


def _warn_without_meter(client, address: str) -> None:
    """Selling without a registered meter is allowed, but every sale would settle as undelivered."""
    if client.get(f"/api/address/{address}").get("meter") is None:
        click.echo(f"warning: no meter is registered to {address}: without its readings the chain settles its "
                   "sales as undelivered, bought from the grid at retail at its cost (`transx meter register`)",
                   err=True)


@_guard
def _bid(side, quantity, price, slot, zone, expiry, sender, fee, yes, datadir, api, password_file, as_json) -> None:
    from solver.instance import MAX_PRICE
    from transxnode.transactions import Bid
    from transxnode.wallet import parse_energy, parse_tokens, quote, send

    wh = parse_energy(quantity)
    limit = parse_tokens(price, "price", allow_zero=True)
    if limit > MAX_PRICE:
        _fail(f"price {price} is above the most a bid may name ({MAX_PRICE / 1e6:,.0f} tokens per kWh)")
    client = _client(api, datadir)
    market = client.get("/api/market")
    info = client.get("/api/node")
    slot = market["first_open_slot"] if slot is None else slot
    if slot < market["first_open_slot"]:
        _fail(f"slot {slot} is closed for bids (gate closure); the first open slot is {market['first_open_slot']}")
    if slot > market["height"] + info["bid_horizon"]:
        _fail(f"slot {slot} is beyond the bidding horizon ({info['bid_horizon']} slots past height {market['height']})")
    if zone >= info["zones"]:
        _fail(f"zone {zone} does not exist (this network has zones 0..{info['zones'] - 1})")
    q = quote(side, wh, limit, market)
    address = sender or _default_address(datadir)
    if side == 1:
        _warn_without_meter(client, address)
    if not as_json:
        verb = "buy" if side == 0 else "sell"
        click.echo(f"{verb} {wh / 1000:,.3f} kWh in slot {slot} at {'most' if side == 0 else 'least'} "
                   f"{_price(limit)} per kWh (grid {'retail' if side == 0 else 'feed-in'} {_price(q.grid_price)})")
        click.echo(f"  expected: {_price(q.expected_price)} per kWh ({q.basis}), "
                   f"return against the grid {_tokens(q.expected_return)}")
        click.echo(f"  at your limit: return against the grid {_tokens(q.worst_return)}")
        click.echo(f"  locked now: {_tokens(q.locked)} " + (
            "(escrow; what does not clear comes back when the slot clears)" if side == 0 else
            "(delivery collateral: what does not clear comes back when the slot clears, the rest once "
            "the meters settle it)"))
    if not yes and sys.stdin.isatty() and not as_json:
        click.confirm("sign and send?", abort=True)
    body = Bid(side=side, slot=slot, wh=wh, price=limit, zone=zone,
               expiry=slot - info["gate_closure"] if expiry is None else expiry)
    fee_micro = None if fee is None else parse_tokens(fee, "fee", allow_zero=True)
    out = send(client, _unlock(datadir, address, password_file), body, fee_micro)
    out.update(bid=out["hash"], slot=slot, quote=q.to_json())
    _emit(out, as_json, lambda d: f"bid {d['bid']} sent (pending; it clears in slot {slot})")


@bid.command("profile")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--zone", type=click.IntRange(0, 255), default=0, show_default=True,
              help="Your network zone, for rows that name none.")
@click.option("--from", "sender", help="Address that bids (default: the default address).")
@click.option("-y", "--yes", is_flag=True, help="Sign without asking.")
@_datadir_option
@_api_option
@_password_option
@_json_option
@_guard
def bid_profile(file, zone, sender, yes, datadir, api, password_file, as_json) -> None:
    """Bid a whole day (or any run of slots) from FILE: CSV with a header `slot,side,quantity,price[,zone]`
    or JSON (a list of such objects); a slot is a number or +N (N slots after the first open one).
    Every row is checked before anything is signed."""
    from transxnode.profile import parse_profile

    text = click.open_file(file).read()
    client = _client(api, datadir)
    market, info = client.get("/api/market"), client.get("/api/node")
    bids = parse_profile(text, first_open=market["first_open_slot"], last_allowed=market["height"] +
                         info["bid_horizon"], zones=info["zones"], default_zone=zone, name=file)
    if not as_json:
        click.echo(_table(["slot", "side", "kWh", "price/kWh", "zone"],
                          [[b.slot, "buy" if b.side == 0 else "sell", f"{b.wh / 1000:,.3f}", _price(b.price), b.zone]
                           for b in bids], 60))
    if not yes and sys.stdin.isatty() and not as_json:
        click.confirm(f"sign and send these {len(bids)} bids?", abort=True)
    address = sender or _default_address(datadir)
    if any(b.side == 1 for b in bids):
        _warn_without_meter(client, address)
    sent, skipped = _send_bids(client, _unlock(datadir, address, password_file),
                               [b.to_bid(info["gate_closure"]) for b in bids])
    _emit({"bids": [{"bid": h, "slot": s} for s, h in sent], "skipped_slots": skipped}, as_json,
          lambda d: f"{len(sent)} bids sent (pending)" + (f", slots {sent[0][0]}..{max(s for s, _ in sent)}" if sent else ""))


@bid.command("cancel")
@click.argument("bid_id")
@click.option("--from", "sender", help="The bid's owner (default: the default address).")
@_datadir_option
@_api_option
@_password_option
@_json_option
@_guard
def bid_cancel(bid_id, sender, datadir, api, password_file, as_json) -> None:
    """Cancel an open bid before its slot's gate closure; its escrow comes back."""
    from transxnode.transactions import CancelBid
    from transxnode.wallet import send

    try:
        raw = bytes.fromhex(bid_id)
        assert len(raw) == 32
    except (ValueError, AssertionError):
        _fail("a bid id is 64 hex characters (the bid transaction's hash)")
    out = send(_client(api, datadir), _unlock(datadir, sender, password_file), CancelBid(raw))
    _emit(out, as_json, lambda d: f"cancel sent: transaction {d['hash']} (pending)")


@bid.command("list")
@click.argument("address", required=False)
@_datadir_option
@_api_option
@_json_option
@_guard
def bid_list(address, datadir, api, as_json) -> None:
    """Open bids of ADDRESS (default: the default address)."""
    bids = _account(address, datadir, api)["open_bids"]
    _emit(bids, as_json, lambda bs: _bids_table(bs) if bs else "no open bids")


def _settlements_table(rows, first: str) -> str:
    return _table([first, "sold Wh", "bought Wh", "out Wh", "in Wh", "reading", "short Wh", "unused Wh", "charge",
                   "credit", "unpaid"],
                  [[r[first], f"{r['sold_wh']:,}", f"{r['bought_wh']:,}", f"{r['exported_wh']:,}",
                    f"{r['imported_wh']:,}", r["reading"].split(" ")[0], f"{r['shortfall_wh']:,}",
                    f"{r['unused_wh']:,}", _tokens(r["charge"]), _tokens(r["credit"]), _tokens(r["unpaid"])]
                   for r in rows], 20)


def _bids_table(bids) -> str:
    return _table(["bid", "side", "slot", "kWh", "price/kWh", "zone", "escrow", "status"],
                  [[b["id"][:16], b["side"], b["slot"], f"{b['wh'] / 1000:,.3f}", _price(b["price"]), b["zone"],
                    _tokens(b["escrow"]), b["status"]] for b in bids])


# --- explorer ---------------------------------------------------------------
@main.group()
def explorer() -> None:
    """Read the chain: head, block, tx, address, market."""


def _block_text(b) -> str:
    import datetime

    ts = datetime.datetime.fromtimestamp(b["timestamp"] / 1000, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    lines = [f"block {b['height']}  {b['hash']}", f"  time      {ts} UTC", f"  parent    {b['parent']}",
             f"  proposer  {b['proposer']}"]
    if "txs" in b and isinstance(b["txs"], list):
        c = b["clearing"]
        lines += [f"  clearing  slot {c['slot']}: {len(c['trades'])} trades, {c['traded_wh'] / 1000:,.3f} kWh, "
                  f"{_tokens(c['value'])} paid" + ("  (void: no certified clearing)" if c["void"] else "")]
        lines += [f"  txs       {len(b['txs'])}"]
        if b["txs"]:
            lines += ["", _table(["tx", "kind", "from", "fee"],
                                 [[t["hash"][:16], t["kind"], t["from"], _tokens(t["fee"])] for t in b["txs"]], 20)]
    return "\n".join(lines)


@explorer.command("head")
@_datadir_option
@_api_option
@_json_option
@_guard
def explorer_head(datadir, api, as_json) -> None:
    """The chain head."""
    _emit(_client(api, datadir).get("/api/head"), as_json, _block_text)


@explorer.command("block")
@click.argument("ref")
@_datadir_option
@_api_option
@_json_option
@_guard
def explorer_block(ref, datadir, api, as_json) -> None:
    """A block by height or hash, with its transactions and clearing."""
    _emit(_client(api, datadir).get(f"/api/block/{ref}"), as_json, _block_text)


@explorer.command("tx")
@click.argument("tx_hash")
@_datadir_option
@_api_option
@_json_option
@_guard
def explorer_tx(tx_hash, datadir, api, as_json) -> None:
    """A transaction by hash (included or pending)."""
    t = _client(api, datadir).get(f"/api/tx/{tx_hash}")
    _emit(t, as_json, lambda t: "\n".join(f"{k:<12}{v}" for k, v in t.items()))


def _history_details(h, me: str) -> str:
    """One entry of `me`'s history for people: tokens and kWh."""
    k = h["kind"]
    if k == "transfer":
        if h["to"] == me and h["from"] != me:
            return f"{_tokens(h['amount'])} tokens from {h['from']}"
        return f"{_tokens(h['amount'])} tokens to {h['to']}"
    if k == "bid":
        return f"{h['side']} {h['wh'] / 1000:,.3f} kWh at {_price(h['price'])}/kWh in slot {h['slot']}"
    if k == "trade":
        if not h["traded_wh"]:
            return f"{h['side']} bid of {h['wh'] / 1000:,.3f} kWh in slot {h['slot']} not matched: refunded"
        return (f"{'sold' if h['side'] == 'sell' else 'bought'} {h['traded_wh'] / 1000:,.3f} kWh in slot {h['slot']}"
                f" for {_tokens(h['amount'])} tokens")
    if k == "settlement":
        return (f"slot {h['slot']} settled: short {h['shortfall_wh'] / 1000:,.3f} kWh, unused "
                f"{h['unused_wh'] / 1000:,.3f} kWh, charge {_tokens(h['charge'])}, credit {_tokens(h['credit'])}")
    if k == "session_open":
        return (f"charging {h['ev_id']} of {h['owner']}: up to {h['max_wh'] / 1000:,.3f} kWh at "
                f"{_price(h['price'])}/kWh")
    if k == "session_close":
        paid = f", {_tokens(h['amount'])} tokens paid" if "amount" in h else ""
        return f"session {h['session'][:16]} closed: {h['delivered_wh'] / 1000:,.3f} kWh delivered{paid}"
    if k == "session_expired":
        return f"session {h['session'][:16]} of {h['ev_id']} expired unclosed: nothing paid"
    if k in ("commit", "reveal"):
        return f"for block {h['target_height']}"
    if k == "meter":
        return f"reading of slot {h['slot']}: {h['exported_wh'] / 1000:,.3f} kWh out, {h['imported_wh'] / 1000:,.3f} kWh in"
    return ""


@explorer.command("address")
@click.argument("address")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True,
              help="History entries per page.")
@click.option("--before", help="Start the history below this cursor (a page's 'next') or block height.")
@click.option("--no-consensus", "no_consensus", is_flag=True, help="Leave the solver's commits and reveals out.")
@_datadir_option
@_api_option
@_json_option
@_guard
def explorer_address(address, limit, before, no_consensus, datadir, api, as_json) -> None:
    """An address: balance, escrow, open bids, settlements and a page of its history (transactions, charging
    sessions, trades, settlements), newest first."""
    from urllib.parse import urlencode

    query = {"limit": limit, **({"before": before} if before else {}), **({"consensus": 0} if no_consensus else {})}
    a = _client(api, datadir).get(f"/api/address/{address}?{urlencode(query)}")

    def text(a) -> str:
        out = [f"address   {a['address']}", f"balance   {_tokens(a['balance'])}",
               f"escrowed  {_tokens(a['escrowed'])}", f"nonce     {a['nonce']}"]
        if a["solver_deposit"]:
            out.append(f"solver    deposit {_tokens(a['solver_deposit'])}")
        out.append(f"meter     {a['meter'][:16] + '...' if a['meter'] else 'none registered'}")
        if a["open_bids"]:
            out += ["", _bids_table(a["open_bids"])]
        if a["settlements"]:
            out += ["", "delivery settlements (newest first):", _settlements_table(a["settlements"], "slot")]
        if a["history"]:
            out += ["", "history (newest first):", _table(
                ["height", "kind", "tx", "details", "fee"],
                [[h["height"], h["kind"], h["hash"][:16] if "hash" in h else "",
                  _history_details(h, a["address"]), _tokens(h["fee"]) if h.get("from") == a["address"] else ""]
                 for h in a["history"]])]
        if a["next"]:
            flags = (f" --limit {limit}" if limit != 50 else "") + (" --no-consensus" if no_consensus else "")
            out.append(f"next page: transx explorer address {a['address']} --before {a['next']}{flags}")
        return "\n".join(out)

    _emit(a, as_json, text)


@explorer.command("market")
@click.argument("slot", required=False, type=click.IntRange(0))
@_datadir_option
@_api_option
@_json_option
@_guard
def explorer_market(slot, datadir, api, as_json) -> None:
    """A slot's market (bids, trades, prices, returns against the grid); without SLOT, recent slots."""
    client = _client(api, datadir)
    if slot is None:
        m = client.get("/api/market")
        _emit(m, as_json, lambda m: f"first open slot {m['first_open_slot']}, recent average price "
              f"{_price(m['average_price'])} per kWh\n\n" + _table(
                  ["slot", "trades", "kWh", "value", "price/kWh"],
                  [[r["slot"], r["trades"], f"{r['traded_wh'] / 1000:,.3f}", _tokens(r["value"]),
                    _price(r["average_price"])] for r in reversed(m["recent"])]))
        return
    m = client.get(f"/api/market/{slot}")

    def text(m) -> str:
        out = [f"slot {m['slot']} ({m['status']}): {len(m['bids'])} bids"]
        if m["trades"]:
            out[0] += (f", {len(m['trades'])} trades, {m['traded_wh'] / 1000:,.3f} kWh at "
                       f"{_price(m['average_price'])} per kWh on average")
            out += ["", _table(["seller bid", "buyer bid", "Wh", "payment", "price/kWh"],
                               [[t["seller"][:16], t["buyer"][:16], f"{t['wh']:,}", _tokens(t["payment"]),
                                 _price(t["price"])] for t in m["trades"]], 20)]
            out += ["", _table(["bid", "owner", "side", "Wh", "amount", "vs grid"],
                               [[p["bid"][:16], p["owner"], p["side"], f"{p['wh']:,}", _tokens(p["amount"]),
                                 _tokens(p["return_vs_grid"])] for p in m["participants"] if p["wh"]], 20)]
        elif m["bids"]:
            out += ["", _bids_table(m["bids"])]
        d = m.get("delivery")
        if d and d["status"] == "settled":
            out += ["", f"delivery settled at block {d['settled_at']}:", _settlements_table(d["accounts"], "address")]
        elif d:
            out += ["", f"delivery: {d['status']}, {len(d['readings'])} readings so far; settles at block "
                        f"{d['settles_at']}"]
        return "\n".join(out)

    _emit(m, as_json, text)



@main.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False), default="devnet", show_default=True,
              help="Where the devnet lives (recreated at every start).")
@click.option("--nodes", type=click.IntRange(1, 64), default=3, show_default=True,
              help="Node processes, each a solver, connected over libp2p on 127.0.0.1.")
@click.option("--homes", type=click.IntRange(0, 5000), default=20, show_default=True,
              help="Simulated households (PV homes, homes, EV stations) bidding every slot.")
@click.option("--slot-seconds", type=click.IntRange(1, 3600), default=2, show_default=True)
@click.option("--slots", type=click.IntRange(1), help="Stop after this many slots (default: run until Ctrl-C).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the simulated households.")
@click.option("--station", is_flag=True, help="Also run a charging station with an emulated NFC reader and an EV "
              "that taps every few slots (needs transx[nfc]).")
def devnet(directory, nodes, homes, slot_seconds, slots, seed, station) -> None:
    """Start a local network that trades: nodes, simulated households, one status line per slot."""
    _devnet(directory, nodes, homes, slot_seconds, slots, seed, station)


@_guard
def _devnet(directory, nodes, homes, slot_seconds, slots, seed, station) -> None:
    from pathlib import Path

    from transxnode.devnet import Devnet, DevnetError

    say = lambda msg: click.echo(msg)  # noqa: E731
    try:
        net = Devnet(Path(directory), nodes=nodes, homes=homes, slot_seconds=slot_seconds, seed=seed, say=say,
                     station=station)
        say(f"creating {directory}/: {nodes} node{'s' * (nodes > 1)}, {homes} households, {slot_seconds}s slots")
        net.create()
    except DevnetError as e:
        _fail(str(e))
    import signal

    stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def interrupted(signum, frame):
        """Ctrl-C, SIGTERM or a closed terminal: stop everything, once.  Later signals (`timeout` and a
        process group both send one; an impatient second Ctrl-C) must not cut the stop short and orphan
        the nodes."""
        for sig in stops:
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt

    for sig in stops:
        signal.signal(sig, interrupted)
    try:
        say("starting the nodes (each imports the solver and libp2p: a few seconds)")
        net.start()
        say(f"{directory}/devnet.json lists the nodes; Ctrl-C stops everything")
        net.run(slots)
    except KeyboardInterrupt:
        say("stopping")
    except DevnetError as e:
        _fail(str(e), status=1)
    finally:
        for sig in stops:
            signal.signal(sig, signal.SIG_IGN)
        net.stop()


if __name__ == "__main__":
    main()
