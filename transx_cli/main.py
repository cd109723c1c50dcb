"""The `transx` command group: the built-in command groups, and the commands of installed plugins."""

from __future__ import annotations

import sys

import click

from . import agent, bid, config, datadir, devnet, explorer, export, market, meter, node, wallet
from .plugin_api import fail


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
            fail("aborted", status=1)
        except click.exceptions.NoArgsIsHelpError as e:
            click.echo(e.format_message(), err=True)
            sys.exit(2)
        except click.ClickException as e:
            hint = f" (see: {e.ctx.command_path} --help)" if isinstance(e, click.UsageError) and e.ctx else ""
            fail(e.format_message() + hint, status=e.exit_code)
        sys.exit(code if isinstance(code, int) else 0)


def _plugin_commands() -> dict:
    from transxnode.plugins import load_plugins

    out = {}
    for p in load_plugins():
        for cmd in (getattr(p.obj, "commands", None) or []) if p.obj is not None else []:
            out.setdefault(cmd.name, cmd)
    return out


@click.group(cls=_Transx, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="transx", prog_name="transx", message="%(prog)s %(version)s")  # the one version: setup.cfg
def main() -> None:
    """TransX: a peer-to-peer energy market cleared by Proof-of-Solution."""


for _module in (market, node, config, datadir, wallet, agent, meter, bid, explorer, devnet, export):
    for _cmd in _module.COMMANDS:
        main.add_command(_cmd)
