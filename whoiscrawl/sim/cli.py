"""`whoiscrawl sim`: serve, truth and score (placeholder until the simulator lands)."""

import typer

app = typer.Typer(help="The registry simulator.")
