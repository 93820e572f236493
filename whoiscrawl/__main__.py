"""`python -m whoiscrawl`: the same as the `whoiscrawl` command."""

from whoiscrawl.cli import app

if __name__ == "__main__":  # not in a process the parser spawns
    app(prog_name="whoiscrawl")
