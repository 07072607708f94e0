#!/usr/bin/env node
// An HTTP/2 service for procgate's `tcp` type: cleartext HTTP/2 with prior knowledge (h2c), the
// protocol of gRPC, which goes through a TCP gateway (Scalingo sends gRPC and HTTP/2 to its TCP
// gateway, not to its HTTP router). Node 20, no npm packages.
//
// GET /  -> `hello over HTTP/2 from $DYNO` and which stream of its connection this is, so a
//           client sending several requests sees them multiplexed on one connection.
// On SIGTERM (or SIGINT) it stops accepting, sends GOAWAY on every open connection, lets the
// streams in flight finish, and exits 0 once the last connection is closed.
// Try: curl --http2-prior-knowledge http://127.0.0.1:20003/
'use strict';
const http2 = require('node:http2');

const port = Number(process.env.PORT);
const dyno = process.env.DYNO || 'h2';
const streams = new Map(); // open session -> streams it has carried

const server = http2.createServer();

server.on('session', (session) => {
  streams.set(session, 0);
  session.on('close', () => streams.delete(session));
});

server.on('stream', (stream, headers) => {
  const count = streams.get(stream.session) + 1;
  streams.set(stream.session, count);
  // A client that goes away mid-stream is its own business, not a crash of the server.
  stream.on('error', (err) => console.log(`stream error: ${err.message}`));
  if (headers[':method'] !== 'GET' || headers[':path'] !== '/') {
    stream.respond({ ':status': 404, 'content-type': 'text/plain' });
    stream.end('not found\n');
    return;
  }
  stream.respond({ ':status': 200, 'content-type': 'text/plain' });
  stream.end(`hello over HTTP/2 from ${dyno}\nstream ${count} on this connection\n`);
});

// Bytes that are not HTTP/2 (an HTTP/1.1 client without --http2-prior-knowledge): say why.
server.on('sessionError', (err) => console.log(`not HTTP/2: ${err.message}`));

function stop(signal) {
  console.log(`${signal} received: GOAWAY to ${streams.size} connections`);
  server.close(() => {
    console.log('bye');
    process.exit(0);
  });
  for (const session of streams.keys()) {
    session.close(); // GOAWAY: no new streams; the open ones finish, then the connection closes
  }
}

// Handle SIGTERM before listening: a platform may stop the app as soon as it is up.
process.once('SIGTERM', stop);
process.once('SIGINT', stop);

server.listen(port, '127.0.0.1', () => console.log(`${dyno} listening on 127.0.0.1:${port} (h2c)`));
