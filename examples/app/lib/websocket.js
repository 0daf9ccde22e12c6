'use strict';
// A minimal RFC 6455 server side: the Upgrade handshake and an echo of text/binary
// messages, with ping/pong, fragmentation and the close handshake. It stands in for
// Socket.io's transport so a deploy (and nginx's Upgrade proxying) can be tested.
const crypto = require('crypto');

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const MAX_MESSAGE = 1024 * 1024;
const OP = { CONT: 0x0, TEXT: 0x1, BINARY: 0x2, CLOSE: 0x8, PING: 0x9, PONG: 0xa };

function acceptKey(key) {
  return crypto.createHash('sha1').update(key + GUID).digest('base64');
}

function encodeFrame(opcode, payload) {
  const len = payload.length;
  let header;
  if (len < 126) {
    header = Buffer.from([0x80 | opcode, len]);
  } else if (len < 0x10000) {
    header = Buffer.alloc(4);
    header[0] = 0x80 | opcode;
    header[1] = 126;
    header.writeUInt16BE(len, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = 0x80 | opcode;
    header[1] = 127;
    header.writeBigUInt64BE(BigInt(len), 2);
  }
  return Buffer.concat([header, payload]);
}

function closePayload(code, reason = '') {
  const buf = Buffer.alloc(2 + Buffer.byteLength(reason));
  buf.writeUInt16BE(code, 0);
  buf.write(reason, 2);
  return buf;
}

class EchoConnection {
  constructor(socket, head, onClose) {
    this.socket = socket;
    this.buffer = head && head.length ? Buffer.from(head) : Buffer.alloc(0);
    this.fragments = null;
    this.fragmentOpcode = 0;
    this.fragmentSize = 0;
    this.closing = false;
    this.closed = false;
    this.onClose = onClose;
    this.decoder = new TextDecoder('utf-8', { fatal: true });
    socket.setNoDelay(true);
    socket.setTimeout(0);
    socket.on('data', (chunk) => {
      this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
      this.parse();
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.finish());
    if (this.buffer.length) setImmediate(() => this.parse());
  }

  finish() {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.closeTimer);
    this.onClose(this);
  }

  send(opcode, payload) {
    if (this.socket.writable) this.socket.write(encodeFrame(opcode, payload));
  }

  // Start (or answer) the close handshake; the peer's close frame ends the socket.
  close(code, reason) {
    if (this.closing) return;
    this.closing = true;
    this.send(OP.CLOSE, closePayload(code, reason));
    this.closeTimer = setTimeout(() => this.socket.destroy(), 2000);
    this.closeTimer.unref();
  }

  fail(code, reason) {
    this.close(code, reason);
    this.socket.end();
  }

  parse() {
    while (!this.closed && this.buffer.length >= 2) {
      const b0 = this.buffer[0];
      const b1 = this.buffer[1];
      const fin = (b0 & 0x80) !== 0;
      const opcode = b0 & 0x0f;
      const masked = (b1 & 0x80) !== 0;
      let len = b1 & 0x7f;
      let offset = 2;
      if (b0 & 0x70) return this.fail(1002, 'reserved bits set');
      if (!masked) return this.fail(1002, 'client frames must be masked');
      if (len === 126) {
        if (this.buffer.length < 4) return;
        len = this.buffer.readUInt16BE(2);
        offset = 4;
      } else if (len === 127) {
        if (this.buffer.length < 10) return;
        const big = this.buffer.readBigUInt64BE(2);
        if (big > BigInt(MAX_MESSAGE)) return this.fail(1009, 'message too big');
        len = Number(big);
        offset = 10;
      }
      if (len > MAX_MESSAGE) return this.fail(1009, 'message too big');
      if (this.buffer.length < offset + 4 + len) return;
      const mask = this.buffer.subarray(offset, offset + 4);
      const payload = Buffer.from(this.buffer.subarray(offset + 4, offset + 4 + len));
      for (let i = 0; i < payload.length; i += 1) payload[i] ^= mask[i & 3];
      this.buffer = this.buffer.subarray(offset + 4 + len);
      this.frame(fin, opcode, payload);
    }
  }

  frame(fin, opcode, payload) {
    if (opcode >= 0x8) {
      if (!fin || payload.length > 125) return this.fail(1002, 'bad control frame');
      if (opcode === OP.CLOSE) {
        if (!this.closing) {
          this.closing = true;
          // Echo the peer's status code (if any) back, then end the TCP connection.
          this.send(OP.CLOSE, payload.length >= 2 ? payload.subarray(0, 2) : Buffer.alloc(0));
        }
        this.socket.end();
        return undefined;
      }
      if (opcode === OP.PING) this.send(OP.PONG, payload);
      return undefined; // PONG: nothing to do
    }
    if (opcode === OP.CONT) {
      if (!this.fragments) return this.fail(1002, 'unexpected continuation frame');
    } else if (opcode === OP.TEXT || opcode === OP.BINARY) {
      if (this.fragments) return this.fail(1002, 'expected continuation frame');
      this.fragments = [];
      this.fragmentOpcode = opcode;
      this.fragmentSize = 0;
    } else {
      return this.fail(1002, 'unknown opcode');
    }
    this.fragmentSize += payload.length;
    if (this.fragmentSize > MAX_MESSAGE) return this.fail(1009, 'message too big');
    this.fragments.push(payload);
    if (!fin) return undefined;
    const message = Buffer.concat(this.fragments);
    const messageOpcode = this.fragmentOpcode;
    this.fragments = null;
    if (messageOpcode === OP.TEXT) {
      try {
        this.decoder.decode(message);
      } catch {
        return this.fail(1007, 'invalid utf-8');
      }
    }
    if (!this.closing) this.send(messageOpcode, message);
    return undefined;
  }
}

function rejectUpgrade(socket, status, text, extraHeaders = {}) {
  const body = JSON.stringify({ error: text });
  const lines = [
    `HTTP/1.1 ${status}`,
    'Content-Type: application/json; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Connection: close',
    ...Object.entries(extraHeaders).map(([k, v]) => `${k}: ${v}`),
  ];
  socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`);
}

// Validates the handshake and answers 101; returns an EchoConnection or null.
function acceptUpgrade(req, socket, head, headers, onClose) {
  const upgrade = String(req.headers.upgrade || '').toLowerCase();
  const connection = String(req.headers.connection || '').toLowerCase();
  const key = req.headers['sec-websocket-key'];
  if (req.method !== 'GET' || upgrade !== 'websocket' || !connection.split(/\s*,\s*/).includes('upgrade')) {
    rejectUpgrade(socket, '400 Bad Request', 'WebSocket upgrade required', headers);
    return null;
  }
  if (typeof key !== 'string' || Buffer.from(key, 'base64').length !== 16) {
    rejectUpgrade(socket, '400 Bad Request', 'missing or invalid Sec-WebSocket-Key', headers);
    return null;
  }
  if (req.headers['sec-websocket-version'] !== '13') {
    rejectUpgrade(socket, '426 Upgrade Required', 'unsupported WebSocket version',
      { ...headers, 'Sec-WebSocket-Version': '13' });
    return null;
  }
  const lines = [
    'HTTP/1.1 101 Switching Protocols',
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Accept: ${acceptKey(key)}`,
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  ];
  socket.write(`${lines.join('\r\n')}\r\n\r\n`);
  return new EchoConnection(socket, head, onClose);
}

module.exports = { acceptKey, acceptUpgrade, rejectUpgrade, encodeFrame, OP };
