"""The demo: the example seat-selection site with gatekeeper in front, in one process."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

import uvicorn

from examples.seat_selection.app import create_app as create_site
from gatekeeper.app import create_app
from gatekeeper.config import load_config

CONFIG = Path(__file__).with_name("demo.yaml")


async def serve(port: int, origin_port: int, capacity: int | None) -> None:
    """Run the site on `origin_port` and the gate on `port` until interrupted."""
    overrides: dict[str, object] = {
        "waitingroom.gate.origin": f"http://127.0.0.1:{origin_port}",
        "waitingroom.server.port": port,
    }
    if capacity is not None:
        overrides["waitingroom.processing.capacity"] = capacity
    settings = load_config(CONFIG, overrides=overrides)
    site = uvicorn.Server(
        uvicorn.Config(create_site(), host="127.0.0.1", port=origin_port, log_level="warning")
    )
    gate = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            server_header=False,
            date_header=False,
        )
    )
    print(
        f"\n  Seats — Example Arena is behind gatekeeper at http://localhost:{port}/\n"
        f"  Capacity {settings.processing.capacity}: open it in {settings.processing.capacity + 1}"
        " separate browser windows (private windows or different browsers)\n"
        "  and the last one waits in line until someone completes checkout.\n"
        f"  The site itself runs at http://127.0.0.1:{origin_port}/ . Ctrl-C stops both.\n",
        flush=True,
    )
    await asyncio.gather(site.serve(), gate.serve())


def main() -> None:
    """`python -m examples.demo [--port 8080] [--origin-port 9000] [--capacity N]`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--origin-port", type=int, default=9000)
    parser.add_argument("--capacity", type=int)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(serve(args.port, args.origin_port, args.capacity))


if __name__ == "__main__":
    main()
