#!/usr/bin/env node
'use strict';
// A Socket.io test client (not part of the runtime image: socket.io-client is a dev
// dependency). Prints one JSON line per event and exits 0 after the first disconnect:
//
//   node tools/socket-probe.js http://127.0.0.1:3000 [websocket|polling]
//
//   {"event":"connected","transport":"websocket","version":"abc123"}
//   {"event":"server:shutdown","version":"abc123"}
//   {"event":"disconnect","reason":"transport close","will_reconnect":true}
//
// "transport close" is a clean close by the server: a real client reconnects by itself
// (to whichever release now serves). "io server disconnect" would not reconnect.
const { io } = require('socket.io-client');

const url = process.argv[2] || 'http://127.0.0.1:3000';
const transport = process.argv[3] || 'websocket';
const out = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

const socket = io(url, { path: '/socket.io', transports: [transport], reconnection: false, timeout: 5000 });
socket.on('connect', () => {
  socket.timeout(5000).emit('version', (err, reply) => {
    if (err) out({ event: 'error', message: 'no ack to version' });
    else out({ event: 'connected', transport: socket.io.engine.transport.name, version: reply.version });
  });
});
socket.on('server:shutdown', (msg) => out({ event: 'server:shutdown', version: msg && msg.version }));
socket.on('connect_error', (err) => {
  out({ event: 'connect_error', message: err.message });
  process.exit(1);
});
socket.on('disconnect', (reason) => {
  out({ event: 'disconnect', reason, will_reconnect: reason !== 'io server disconnect' && reason !== 'io client disconnect' });
  process.exit(0);
});
setTimeout(() => {
  out({ event: 'timeout' });
  process.exit(2);
}, Number(process.env.PROBE_TIMEOUT_MS || 120000)).unref();
