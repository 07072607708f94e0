#!/usr/bin/env python3
"""A reconnecting TCP client for the chat servers (or any line protocol), standard library only.

usage: chat_client.py [HOST:PORT]   (default: $TCP_URL, e.g. tcp://127.0.0.1:20003)

It prints every line it receives and sends every line typed on stdin. "A reliable TCP client
should handle dropped connections gracefully, usually by reconnecting" (Scalingo): when the
connection drops (the server closed it, as the chat servers do on SIGTERM during a restart, or
it was reset, or a connect was refused) it prints `reconnecting in X.Xs (attempt N)` and tries
again after an exponential backoff with full jitter: attempt N waits a random time between
0.5 s and min(30 s, 2^(N-1) s), so the first retry comes after 0.5-1 s and the clients that a
restart dropped all at once do not come back all at once. A connection that lived 10 s resets
the count. Lines typed while disconnected are sent once reconnected. On stdin EOF or Ctrl-C (or
SIGTERM) it shuts down its write side, prints what the server still sends until it closes (2 s
at most), and exits 0.
"""
import asyncio
import os
import random
import signal
import sys
import threading
import time

FIRST_CEILING = 1.0  # attempt 1 waits 0.5-1 s, attempt 2 0.5-2 s, attempt 3 0.5-4 s...
FLOOR = 0.5
CAP = 30.0
STABLE = 10.0  # a connection that lived this long resets the attempts
CONNECT_TIMEOUT = 10.0
LAST_WORDS = 2.0  # how long to wait for the server to close after our FIN


def say(line):
    print(line, flush=True)


def target():
    spec = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("TCP_URL", "")
    host, _, port = spec.removeprefix("tcp://").rpartition(":")
    if not host or not port.isdigit():
        sys.exit("usage: chat_client.py [HOST:PORT]  (default: $TCP_URL)")
    return host.strip("[]"), int(port)


def why(err):
    if isinstance(err, OSError) and err.errno and err.errno > 0:
        return os.strerror(err.errno)  # "Connection refused", "Connection reset by peer"
    return str(err) or type(err).__name__


def backoff(attempt):
    """Full jitter: uniform in [FLOOR, min(CAP, FIRST_CEILING * 2^(attempt-1))]."""
    return random.uniform(FLOOR, min(CAP, FIRST_CEILING * 2 ** (attempt - 1)))


def read_stdin(loop, typed, closed):
    """In a thread: stdin's bytes into `typed`, then None at EOF (os.read: no lock held at exit)."""
    while data := os.read(sys.stdin.fileno(), 65536):
        loop.call_soon_threadsafe(typed.put_nowait, data)
    loop.call_soon_threadsafe(typed.put_nowait, None)
    loop.call_soon_threadsafe(closed.set)


async def session(reader, writer, typed, stop):
    """Relays until the connection drops (returns why) or the user is done (returns None)."""

    async def receive():
        while line := await reader.readline():
            say(line.decode(errors="replace").rstrip("\r\n"))

    async def send():
        while (data := await typed.get()) is not None:
            writer.write(data)
            await writer.drain()

    receiving = asyncio.create_task(receive())
    sending = asyncio.create_task(send())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({receiving, sending, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if receiving.done() or (sending.done() and sending.exception()):
        sending.cancel()
        failed = receiving.exception() if receiving.done() else sending.exception()
        writer.close()
        if receiving.done() and not failed:
            return "the server closed the connection"
        return f"connection lost: {why(failed)}"
    # stdin EOF or Ctrl-C: FIN, then the server's last lines until it closes.
    sending.cancel()
    try:
        writer.write_eof()
        await asyncio.wait_for(receiving, LAST_WORDS)
    except (OSError, asyncio.TimeoutError, ValueError):
        pass
    writer.close()
    return None


async def main():
    host, port = target()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    typed = asyncio.Queue()
    stdin_closed = asyncio.Event()
    threading.Thread(target=read_stdin, args=(loop, typed, stdin_closed), daemon=True).start()

    attempt = 0
    while True:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
        except asyncio.TimeoutError:
            reason = f"could not connect to {host}:{port}: no answer within {CONNECT_TIMEOUT:.0f}s"
        except OSError as err:
            reason = f"could not connect to {host}:{port}: {why(err)}"
        else:
            connected = time.monotonic()
            say(f"connected to {host}:{port}")
            reason = await session(reader, writer, typed, stop)
            if reason is None:
                return
            if time.monotonic() - connected >= STABLE:
                attempt = 0
        attempt += 1
        delay = backoff(attempt)
        say(reason)
        say(f"reconnecting in {delay:.1f}s (attempt {attempt})")
        waits = [asyncio.create_task(event.wait()) for event in (stop, stdin_closed)]
        done, _ = await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
            task.cancel()
        if done:  # Ctrl-C, or stdin closed while disconnected: nothing more to send
            return


asyncio.run(main())
