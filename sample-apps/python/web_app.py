#!/usr/bin/env python3
"""A graceful web app for procgate's `web` type (HTTP/1.1, keep-alive), standard library only.

GET /            -> `hello from $DYNO $PID`
GET /headers     -> the request's headers, one per line
GET /slow?ms=N   -> answers after N milliseconds
GET /break       -> every later request answers 500 (to see the health check restart the app)
GET /stall       -> sends its headers and part of the body, then nothing for 5 s
GET /drop        -> closes the connection without an answer
GET /cut         -> sends its headers and part of the body, then closes the connection
Upgrade: echo    -> 101, then a line protocol on the raw connection: `whoami` gets
                    `$DYNO $PID`, anything else is echoed (like a WebSocket echo, kept simple)
On SIGTERM it prints `SIGTERM received: finishing N requests in flight, closing idle connections`,
stops accepting, closes the idle keep-alive connections (a FIN each), lets the requests in flight
finish and answer (with `Connection: close`), then prints `stopped` and exits 0.
"""
import os
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

DYNO = os.environ.get("DYNO", "web")
broken = threading.Event()
stopping = threading.Event()
# Open connections, and those with a request being answered; the others wait for a request.
# (Handler threads are daemon threads, which server_close() does not wait for: main() waits.)
state = threading.Condition()
connections = set()
busy = set()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        with state:
            connections.add(self.connection)

    def finish(self):
        with state:
            connections.discard(self.connection)
        super().finish()

    def parse_request(self):  # the request line is in: busy until answered
        with state:
            busy.add(self.connection)
        return super().parse_request()

    def handle_one_request(self):
        try:
            super().handle_one_request()
        finally:
            with state:
                busy.discard(self.connection)
                state.notify_all()
        if stopping.is_set():
            self.close_connection = True

    def reply(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        if stopping.is_set():
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        if self.headers.get("Upgrade", "").lower() == "echo":
            return self.upgrade()
        if broken.is_set():
            return self.reply(500, "broken\n")
        if url.path == "/headers":
            return self.reply(200, "".join(f"{k}: {v}\n" for k, v in self.headers.items()))
        if url.path in ("/drop", "/cut"):
            if url.path == "/cut":
                self.send_response(200)
                self.send_header("Content-Length", "100")
                self.end_headers()
                self.wfile.write(b"partial...")
                self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        if url.path == "/stall":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"partial...")
            self.wfile.flush()
            time.sleep(5)
            return
        if url.path == "/big":  # a large body, for clients that read it slowly or not at all
            size = int(parse_qs(url.query).get("mb", ["16"])[0]) * 1_000_000
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            chunk = b"x" * 65536
            try:
                for start in range(0, size, len(chunk)):
                    self.wfile.write(chunk[: size - start])
            except OSError:  # the router closed it: a client that stopped reading
                self.close_connection = True
            return
        if url.path == "/slow":
            time.sleep(int(parse_qs(url.query).get("ms", ["1000"])[0]) / 1000)
        if url.path == "/break":
            broken.set()
        self.reply(200, f"hello from {DYNO} {os.getpid()}\n")

    def do_POST(self):
        if urlparse(self.path).path != "/echo":
            return self.reply(404, "not found\n")
        try:
            body = self.read_body()
        except (ValueError, OSError):  # a body cut short or malformed on the way
            self.close_connection = True
            return
        self.reply(200, body.decode(errors="replace"))

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                self.rfile.readline()  # the end (no trailers)
                return body
            body += self.rfile.read(size)
            self.rfile.readline()

    def upgrade(self):
        self.send_response(101)
        self.send_header("Upgrade", "echo")
        self.send_header("Connection", "Upgrade")
        self.end_headers()
        self.wfile.flush()
        with state:  # a raw connection now: closed at shutdown like an idle one
            busy.discard(self.connection)
        for line in self.rfile:
            answer = f"{DYNO} {os.getpid()}\n".encode() if line.strip() == b"whoami" else line
            self.wfile.write(answer)
            self.wfile.flush()
        self.close_connection = True


def main():
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    server.daemon_threads = True

    def on_sigterm(*_):
        stopping.set()
        print(f"SIGTERM received: finishing {len(busy)} requests in flight, closing idle connections", flush=True)
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, on_sigterm)
    print(f"{DYNO} serving HTTP on 127.0.0.1:{os.environ['PORT']}", flush=True)
    server.serve_forever(poll_interval=0.1)
    server.server_close()  # the listener: new connections are refused from now on
    with state:
        idle = connections - busy
    for connection in idle:  # a FIN, and its handler thread wakes up and closes it
        try:
            connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    with state:  # the busy ones close themselves once answered (close_connection)
        state.wait_for(lambda: not busy, timeout=4)
    print("stopped", flush=True)


main()
