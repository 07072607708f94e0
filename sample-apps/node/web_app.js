#!/usr/bin/env node
// A graceful web app for procgate's `web` type (Node 20, `http` module, no npm packages).
//
// HTTP/1.1 with keep-alive on $HOST:$PORT (HOST defaults to 127.0.0.1): `GET /` answers
// `hello from $DYNO`, `GET /slow` the same after 1 s, anything else 404. SIGTERM (or SIGINT) is
// handled before listening. On SIGTERM it prints `SIGTERM received: finishing N requests in
// flight, closing idle connections`, closes its listener (new connections are refused at once)
// and its idle keep-alive connections (`server.close()`, `closeIdleConnections()` and the
// connections that never sent a request: a FIN each), lets the requests in flight finish and answer with `Connection: close`, then prints
// `bye` and exits 0, within 4 s at most. (Writes to a pipe are synchronous on Linux, so each log
// line is out before the next statement runs.)
'use strict';
const http = require('http');

const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT);
const dyno = process.env.DYNO || 'web';
let inFlight = 0;
let stopping = false;
const fresh = new Set(); // connections that have not sent a request yet: not "idle" to Node

function log(line) {
  process.stdout.write(`${line}\n`);
}

function reply(res, status, body) {
  // Once stopping, every answer closes its connection: no keep-alive past the shutdown.
  if (stopping) res.setHeader('Connection', 'close');
  res.writeHead(status, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

const server = http.createServer((req, res) => {
  fresh.delete(req.socket);
  inFlight++;
  res.on('close', () => inFlight--);
  const path = new URL(req.url, 'http://x').pathname;
  if (req.method === 'GET' && path === '/') {
    reply(res, 200, `hello from ${dyno}\n`);
  } else if (req.method === 'GET' && path === '/slow') {
    setTimeout(() => reply(res, 200, `hello from ${dyno}\n`), 1000);
  } else {
    reply(res, 404, 'not found\n');
  }
});

server.on('connection', (socket) => {
  fresh.add(socket);
  socket.on('close', () => fresh.delete(socket));
});

// Handle SIGTERM before listening: a platform may stop the app as soon as it is up.
function stop() {
  if (stopping) return;
  stopping = true;
  log(`SIGTERM received: finishing ${inFlight} requests in flight, closing idle connections`);
  // Stops accepting now; the callback runs once every connection is closed.
  server.close(() => {
    log('bye');
    process.exit(0);
  });
  server.closeIdleConnections();
  for (const socket of fresh) socket.destroy(); // nothing sent, nothing unread: a FIN
  setTimeout(() => {
    log('some connections did not close within 4s; dropping them');
    server.closeAllConnections();
    log('bye');
    process.exit(0);
  }, 4000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

server.listen(port, host, () => log(`${dyno} serving HTTP on ${host}:${port}`));
