"""The CLI's public plugin API: the options, helpers and output conventions every `transx` command uses.

A plugin (an object registered in the `transx.plugins` entry-point group, transxnode/plugins.py) adds
click commands to `transx`; its commands build on these names and nothing else of the CLI, so they
read and fail like the built-in ones:

- options: `datadir_option`, `password_option`, `api_option`, `json_option`; `AmountCommand` (the class of a
  command whose arguments are numbers: `-5` is read as a number, not as an unknown option);
- a node: `resolve_datadir`, `node_client` (an ApiClient for --api or the node on --datadir), `fetch_account`;
- keys: `open_keystore`, `default_address`, `ask_password`, `unlock` (a SigningKey);
- errors: `guard` (a decorator: every error a user can cause becomes one line and a non-zero exit), `fail`;
- output: `emit` (JSON with --json, else text), `table`, `tokens`, `kwh`, `format_tokens`, `format_price`,
  `progress`.

Amounts for people are tokens and kWh, formatted by `tokens`, `format_price` and `kwh` (the one
formatting of consensus/rules/units.py, which the explorer page mirrors); `--json` prints the API's
integers (micro-units, Wh, micro-units per kWh).

Names not listed here are private to the CLI and may change.
"""

from __future__ import annotations

import itertools
import json
import re
import sys

import click

from consensus.rules import units

__all__ = [
    "datadir_option", "password_option", "api_option", "json_option", "AmountCommand",
    "resolve_datadir", "node_client", "fetch_account",
    "open_keystore", "default_address", "ask_password", "unlock",
    "guard", "fail",
    "emit", "table", "tokens", "kwh", "format_tokens", "format_price", "progress",
]


def fail(message: str, status: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(status)


def tokens(micro: int) -> str:
    """Micro-units as tokens: '100.00', '1.001' (units.tokens)."""
    return units.tokens(micro)


def kwh(wh: int) -> str:
    """Wh as kWh: '3.000', '0.800', '1.234' (units.kwh)."""
    return units.kwh(wh)


def table(headers: list[str], rows: list[list], limit: int | None = None) -> str:
    shown = rows if limit is None else rows[:limit]
    cells = [headers] + [[str(c) for c in r] for r in shown]
    widths = [max(len(r[k]) for r in cells) for k in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if k else c.ljust(w) for k, (c, w) in enumerate(zip(r, widths))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if limit is not None and len(rows) > limit:
        lines.append(f"... {len(rows) - limit} more (use --all)")
    return "\n".join(lines)


def progress():
    """Stage messages on stderr for a person watching a terminal; silent otherwise."""
    if not sys.stderr.isatty():
        return None
    import time

    start = time.perf_counter()
    return lambda msg: click.echo(f"[{time.perf_counter() - start:7.2f}s] {msg}", err=True)


datadir_option = click.option(
    "--datadir", type=click.Path(file_okay=False), default=None, envvar="TRANSX_DATADIR",
    help="The node's data directory (default ~/.transx, or $TRANSX_DATADIR).")
password_option = click.option(
    "--password-file", type=click.Path(dir_okay=False), help="File whose first line is the keystore password "
    "(else $TRANSX_PASSWORD, else a prompt).")
api_option = click.option("--api", help="The node's API URL (default: the node running on --datadir).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


class AmountCommand(click.Command):
    """A command with amount, quantity or price arguments (`@group.command(cls=AmountCommand)`): a negative
    number where an argument goes (`wallet send ADDR -5`) reaches the argument, whose parser says what is
    wrong with it, instead of being taken for an unknown option.  Options and their values are read as by
    any command: the arguments are moved behind a `--` only when one of them starts with a dash."""

    _NUMBER = re.compile(r"-\.?[0-9]")

    def parse_args(self, ctx, args):
        return super().parse_args(ctx, self._numbers_as_arguments(ctx, args))

    def _numbers_as_arguments(self, ctx, args: list[str]) -> list[str]:
        takes_value = {name for p in self.get_params(ctx) if isinstance(p, click.Option) and not p.is_flag
                       and not p.count for name in p.opts + p.secondary_opts}
        options, arguments = [], []
        rest = iter(args)
        for arg in rest:
            if arg == "--":
                arguments.extend(rest)
            elif arg.startswith("-") and len(arg) > 1 and not self._NUMBER.match(arg):
                options.append(arg)
                if arg in takes_value:
                    options.extend(itertools.islice(rest, 1))  # its value, whatever it looks like (`--fee -1`)
            else:
                arguments.append(arg)
        if not any(a.startswith("-") for a in arguments):
            return args
        return options + ["--", *arguments]


def resolve_datadir(datadir: str | None, create: bool = False) -> str:
    """The data directory a command works on: the one named (--datadir, or $TRANSX_DATADIR), else ~/.transx.
    A named one must exist, unless the command creates it (`create`: `transx init`): a mistyped path is one
    line and exit 2, never another directory's keys or the default node's answers."""
    from pathlib import Path

    from transxnode.datadir.config import DEFAULT_DATADIR

    if datadir is None:
        return DEFAULT_DATADIR
    if not create and not Path(datadir).is_dir():
        ctx = click.get_current_context(silent=True)
        from_env = ctx is not None and ctx.get_parameter_source("datadir") == click.core.ParameterSource.ENVIRONMENT
        fail(f"no data directory {datadir}{' (named by $TRANSX_DATADIR)' if from_env else ''}: check the path, "
             f"or create one with `transx init --datadir {datadir}`")
    return datadir


def node_client(api: str | None, datadir: str | None):
    """A client of --api, else of the node on the data directory; the default API address only when no
    data directory was named."""
    from transxnode.client.node_api import ApiClient, resolve_api

    if api:
        return ApiClient(resolve_api(api, None))
    return ApiClient(resolve_api(None, resolve_datadir(datadir), named=datadir is not None))


def guard(fn):
    """One line and a non-zero exit for every error a user can cause."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from transxnode.client.node_api import ClientError
        from transxnode.datadir.config import ConfigError
        from consensus.rules.genesis import GenesisError
        from consensus.rules.keys import AddressError
        from transxnode.datadir.keystore import KeystoreError
        from consensus.chain.store import StoreError
        from transxnode.client.wallet import InputError

        try:
            return fn(*args, **kwargs)
        except ClientError as e:
            fail(str(e), status=1)
        except (ConfigError, GenesisError, AddressError, KeystoreError, StoreError, InputError) as e:
            fail(str(e))
        except OSError as e:  # a path that cannot be written, a disk that is full
            fail(f"{e.strerror or e}{': ' + str(e.filename) if e.filename else ''}")

    return wrapper


def ask_password(password_file: str | None, confirm: bool = False, datadir: str | None = None) -> str:
    """The password from --password-file, else $TRANSX_PASSWORD, else (given `datadir`, a data directory as
    resolve_datadir returns it) the password file its config.toml names, else a prompt on a terminal."""
    import os

    from transxnode.datadir.config import password_file_of
    from transxnode.datadir.keystore import read_password

    if password_file is None and datadir is not None and "TRANSX_PASSWORD" not in os.environ:
        password_file = password_file_of(datadir)
    return read_password(password_file=password_file, prompt=sys.stdin.isatty(), confirm=confirm)


def format_tokens(v: int | None) -> str:
    return "-" if v is None else tokens(v)


def format_price(v: int | None) -> str:
    """Micro-units per kWh as tokens per kWh (units.price), '-' for none."""
    return "-" if v is None else units.price(v)


def emit(doc, as_json: bool, text) -> None:
    click.echo(json.dumps(doc, indent=1) if as_json else text(doc))


def open_keystore(datadir):
    from pathlib import Path

    from transxnode.datadir.keystore import Keystore

    return Keystore(Path(resolve_datadir(datadir)) / "keystore")


def default_address(datadir) -> str:
    from transxnode.datadir.config import ConfigError, load_config

    try:
        return load_config(resolve_datadir(datadir)).key
    except ConfigError:
        addrs = open_keystore(datadir).addresses()
        if not addrs:
            fail("no key in the keystore: run `transx wallet new` (or name an address)")
        return addrs[0]


def unlock(datadir, address: str | None, password_file):
    address = address or default_address(datadir)
    return open_keystore(datadir).unlock(address, ask_password(password_file, datadir=resolve_datadir(datadir)))


def fetch_account(address: str | None, datadir, api, history: int = 50) -> dict:
    """The node's view of ADDRESS (default: the default address), checked before asking, with its newest
    `history` entries (1 to 500; 1 when only the account is wanted: each entry costs the node a read)."""
    from consensus.rules.keys import decode_address

    address = address or default_address(datadir)
    decode_address(address)
    return node_client(api, datadir).get(f"/api/address/{address}?limit={history}")
