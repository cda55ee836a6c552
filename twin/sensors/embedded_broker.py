"""Run the pure-Python amqtt MQTT broker on 127.0.0.1: ``python -m twin.sensors.embedded_broker PORT``.

Used where Mosquitto is not installed; stops cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys


async def serve(port: int) -> None:
    """Serve MQTT 3.1.1 on 127.0.0.1:``port`` until a termination signal."""
    from amqtt.broker import Broker

    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    broker = Broker(config)
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await broker.shutdown()


def main(argv: list[str] | None = None) -> int:
    """Entry point: one argument, the port."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python -m twin.sensors.embedded_broker PORT", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(serve(int(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
