#!/usr/bin/python3
"""A small echo server of the kind a user benchmarks beside ours (asyncio streams).

    scripts/examples/asyncio_echo.py PORT [HOST]

Serves TCP echo on HOST:PORT (default 127.0.0.1) until SIGTERM or SIGINT. It prints nothing,
so echobench uses the `{port}` form:

    scripts/echobench run --server asyncio='/usr/bin/python3 scripts/examples/asyncio_echo.py {port}'
"""
import asyncio
import signal
import sys


async def echo(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        # The peer shut down its sending side: everything is echoed, so close ours.
        writer.close()
        await writer.wait_closed()
    except (ConnectionError, OSError):
        writer.close()


async def main(host, port):
    server = await asyncio.start_server(echo, host, port, reuse_address=True, backlog=1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    return 0


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3) or not sys.argv[1].isdigit():
        print("usage: asyncio_echo.py PORT [HOST]", file=sys.stderr)
        sys.exit(2)
    sys.exit(asyncio.run(main(sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1",
                              int(sys.argv[1]))))
