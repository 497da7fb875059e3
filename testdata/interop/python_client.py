"""A Python `websockets` client through wsedge to the Node.js `ws` backend.

Run by everyday.js with Debian's /usr/bin/python3 and python3-websockets:

    python3 python_client.py ws://127.0.3.100:8080/echo

Prints one JSON line: what was negotiated and how the echoes compared.
"""

import asyncio
import json
import os
import sys

import websockets


async def main(url: str) -> dict:
    out = {"websockets": websockets.__version__}
    async with websockets.connect(url, subprotocols=["echo.v1", "echo.v2"], max_size=64 << 20) as ws:
        out["subprotocol"] = ws.subprotocol
        out["extensions"] = [type(e).__name__ for e in ws.extensions]
        ok = 0
        sizes = [1, 100, 10_000, 300_000, 1 << 20]
        for i, size in enumerate(sizes):
            text = ("python line %d of message %d\n" * (size // 20 + 1))[:size]
            msg = text if i % 2 == 0 else os.urandom(min(size, 100_000)) + text.encode()[: size - min(size, 100_000)]
            await ws.send(msg)
            if await ws.recv() == msg:
                ok += 1
        out["echoed"] = ok
        out["sent"] = len(sizes)
        pong = await ws.ping(b"py")
        await asyncio.wait_for(pong, 5)
        out["pong"] = True
        await ws.close(code=4003, reason="bye from python")
        out["close_code"] = ws.close_code
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1]))))
