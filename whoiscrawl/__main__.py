"""`python -m whoiscrawl`: the same as the `whoiscrawl` command."""

from whoiscrawl.cli import app

app(prog_name="whoiscrawl")
