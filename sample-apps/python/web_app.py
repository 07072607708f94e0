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
On SIGTERM it stops accepting, finishes the requests in flight and exits 0.
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


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
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
        if url.path == "/slow":
            time.sleep(int(parse_qs(url.query).get("ms", ["1000"])[0]) / 1000)
        if url.path == "/break":
            broken.set()
        self.reply(200, f"hello from {DYNO} {os.getpid()}\n")

    def upgrade(self):
        self.send_response(101)
        self.send_header("Upgrade", "echo")
        self.send_header("Connection", "Upgrade")
        self.end_headers()
        self.wfile.flush()
        for line in self.rfile:
            answer = f"{DYNO} {os.getpid()}\n".encode() if line.strip() == b"whoami" else line
            self.wfile.write(answer)
            self.wfile.flush()
        self.close_connection = True


def main():
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"{DYNO} serving HTTP on 127.0.0.1:{os.environ['PORT']}", flush=True)
    server.serve_forever()
    server.server_close()
    print("stopped", flush=True)


main()
