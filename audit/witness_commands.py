"""``gpumeter witness …``: run a C2SP witness for someone else's audit log.

The operator of a gpumeter site does not run this for its own log: a customer, an auditor
or an independent operator does, and gives the site its vkey. The app mounts
:data:`witness_app` as ``gpumeter witness``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from audit import witness, witness_http
from audit.note import parse_vkey
from gpumeter.commandline import say

witness_app = typer.Typer(
    name="witness",
    help="Run a C2SP tlog-witness: cosign a log's checkpoints only while it stays append-only.",
    no_args_is_help=True,
)

DirOpt = Annotated[Path, typer.Option("--dir", help="The witness's folder (key and state).")]


@witness_app.command("init")
def init_command(
    name: Annotated[str, typer.Option("--name", help="The witness's key name, e.g. witness.example.eu/w1.")],
    directory: DirOpt,
) -> None:
    """Create a witness key (mode 0600) and empty state; prints the witness's vkey."""
    verifier = witness.init_witness(directory, name)
    say(f"witness key written to {directory / witness.KEY_FILE}; give the log this vkey:")
    typer.echo(verifier.vkey)


@witness_app.command("serve")
def serve_command(
    directory: DirOpt,
    port: Annotated[int, typer.Option("--port", help="TCP port (0: a free one, printed on stderr).")],
    log: Annotated[list[str], typer.Option("--log", help="A log's vkey to follow (repeat for several).")],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
) -> None:
    """Serve POST /add-checkpoint and GET /<origin hash>/checkpoint until interrupted."""
    keys = [parse_vkey(v) for v in log]
    witness_http.serve(witness.Witness(directory, keys), host=host, port=port)
