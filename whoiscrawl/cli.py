"""The `whoiscrawl` command: thin wrappers that parse options and call the library."""

from __future__ import annotations

import typer

from whoiscrawl.dev.cli import app as dev_app

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Collect WHOIS/RDAP records for the IPv4 space, completely and politely.")
app.add_typer(dev_app, name="dev")


def _register_optional() -> None:
    # Each part registers its own commands; a part still being built does not break the rest.
    from whoiscrawl.sim.cli import app as sim_app

    app.add_typer(sim_app, name="sim")


_register_optional()
