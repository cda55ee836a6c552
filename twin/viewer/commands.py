"""`twin serve`: the local read-only server of the tilesets, the scenes and the viewer page."""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

from twin.app.pack import add_pack_args
from twin.errors import ConfigError, DataError

DEFAULT_PORT = 8765
# the viewer page, shipped with the code as package data
STATIC = Path(str(resources.files("twin.viewer") / "static"))


def _root(text: str) -> tuple[str, Path]:
    name, eq, folder = text.partition("=")
    if not eq or not name or not folder:
        raise argparse.ArgumentTypeError(
            f"--root {text!r}: expected NAME=DIR, e.g. tiles=out/tiles"
        )
    return name, Path(folder).expanduser()


def _roots(args: argparse.Namespace) -> tuple[dict[str, Path], list[str]]:
    """The folders to serve (name -> folder) and a note per default one that is not there.

    Without --root: `tiles` = <build-dir>/<pack name>/tiles and `scenes` = <build-dir>/scenes.
    Any --root replaces those two (no pack is read then). `viewer` is the bundled page unless a
    --root names it. A --root folder must exist; a missing default one is left out and noted.
    """
    given = dict(args.root or [])
    for name, folder in given.items():
        if not folder.is_dir():
            raise ConfigError(f"--root {name}={folder}: not a folder")
    candidates: dict[str, Path] = {}
    if not given:
        from twin.app.pack import resolve_pack

        candidates["tiles"] = args.build_dir / resolve_pack(args.pack).name / "tiles"
        candidates["scenes"] = args.build_dir / "scenes"
    candidates.setdefault("viewer", STATIC)
    candidates.update(given)
    roots = {name: folder for name, folder in candidates.items() if folder.is_dir()}
    missing = [f"{n}: {f} not there, not served" for n, f in candidates.items() if n not in roots]
    if not roots:
        raise DataError(
            "twin serve: nothing to serve (" + "; ".join(missing) + "); run `twin data build` "
            "or pass --root NAME=DIR"
        )
    return roots, missing


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve until interrupted (SIGINT or SIGTERM end it as an interrupt: exit 130 or 143)."""
    from twin.runs import signals_interrupt
    from twin.viewer.server import FileServer

    roots, missing = _roots(args)
    server = FileServer(
        roots,
        args.bind,
        args.port,
        max_connections=args.max_connections,
        verbose=args.verbose,
    )
    try:
        served = ", ".join(f"{n}={p}" for n, p in roots.items())
        notes = "".join(f"; {m}" for m in missing)
        print(f"twin serve: {server.url} (roots: {served}{notes})", flush=True)
        with signals_interrupt():
            server.serve_forever()
    finally:
        server.server_close()
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `twin serve` to the main parser."""
    p = subparsers.add_parser(
        "serve",
        help="the web viewer and its local server",
        description="Serve the tilesets, the scenes and the viewer page read-only over HTTP at "
        "/<root>/<path> (/ opens the viewer). Quiet unless --verbose; Ctrl-C ends it.",
    )
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free)"
    )
    p.add_argument(
        "--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine)"
    )
    p.add_argument(
        "--root",
        type=_root,
        action="append",
        metavar="NAME=DIR",
        help="serve DIR at /NAME/ (repeatable); replaces the default roots tiles "
        "(<build-dir>/<pack>/tiles) and scenes (<build-dir>/scenes); viewer stays the bundled page "
        "unless named",
    )
    p.add_argument(
        "--max-connections", type=int, default=64, help="connections served at once (default 64)"
    )
    p.add_argument("--verbose", action="store_true", help="one line per request on stderr")
    add_pack_args(p)
    p.set_defaults(func=cmd_serve)
