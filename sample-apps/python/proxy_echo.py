#!/usr/bin/env python3
"""A TCP app that reads the PROXY protocol header procgate writes ($PROXY_PROTOCOL=v1 or v2)
and greets each client with its real address: `hello $DYNO, you are IP:PORT`, then echoes lines.
Graceful on SIGTERM like echo_server.py. Standard library only."""
import asyncio
import ipaddress
import os
import signal
import struct

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


async def client_address(reader):
    """The source address of the PROXY header at the start of the stream."""
    if os.environ.get("PROXY_PROTOCOL") == "v2":
        head = await reader.readexactly(16)
        assert head[:12] == V2_SIGNATURE, "not a PROXY v2 header"
        body = await reader.readexactly(struct.unpack("!H", head[14:16])[0])
        if head[12] & 0x0F == 0:  # LOCAL: procgate's own health check
            return "local"
        if head[13] >> 4 == 1:  # TCP over IPv4
            return f"{ipaddress.IPv4Address(body[0:4])}:{struct.unpack('!H', body[8:10])[0]}"
        return f"[{ipaddress.IPv6Address(body[0:16])}]:{struct.unpack('!H', body[32:34])[0]}"
    words = (await reader.readline()).decode().split()  # PROXY TCP4 SRC DST SPORT DPORT
    return f"{words[2]}:{words[4]}" if words[1] != "UNKNOWN" else "local"


async def main():
    dyno = os.environ.get("DYNO", "proxy")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    clients = {}  # writer -> its handler task

    async def serve(reader, writer):
        clients[writer] = asyncio.current_task()
        try:
            writer.write(f"hello {dyno}, you are {await client_address(reader)}\n".encode())
            while line := await reader.readline():
                writer.write(line)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, IndexError):
            pass
        finally:
            clients.pop(writer, None)
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", int(os.environ["PORT"]))
    print(f"{dyno} reading PROXY {os.environ.get('PROXY_PROTOCOL', 'v1')} headers on {os.environ['PORT']}", flush=True)
    await stop.wait()
    print(f"SIGTERM received: closing {len(clients)} clients", flush=True)
    server.close()
    handlers = list(clients.values())
    for writer in list(clients):
        writer.write(b"bye\n")
        writer.close()
    await asyncio.wait_for(asyncio.gather(*handlers, return_exceptions=True), timeout=10)


asyncio.run(main())
