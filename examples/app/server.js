'use strict';
// The sample app's server: a stand-in shaped like the real Next.js + Prisma +
// Socket.io app (same port, env variables, health route, WebSocket path, uploads,
// migrations), built only from Node's standard library and Debian's `pg`.
//
// Nothing here logs or returns the value of a configuration variable.
const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const path = require('path');
const { Pool } = require('pg');

const { envFingerprint, intFromEnv, presentVariables } = require('./lib/env');
const { parseDatabaseUrl } = require('./lib/db');
const { acceptUpgrade, rejectUpgrade } = require('./lib/websocket');

const VERSION = process.env.APP_VERSION || 'dev';
const RELEASE = process.env.APP_RELEASE || null;
const HEALTH_TIMEOUT_MS = 2000;
const SHUTDOWN_TIMEOUT_MS = 10000;
const DEFAULT_MAX_FILE_SIZE = 10485760;

function readVariant() {
  try {
    return fs.readFileSync(path.join(__dirname, 'VARIANT'), 'utf8').trim() || null;
  } catch {
    return null;
  }
}

let port;
let maxFileSize;
try {
  port = intFromEnv('PORT', 3000);
  maxFileSize = intFromEnv('MAX_FILE_SIZE', DEFAULT_MAX_FILE_SIZE);
} catch (err) {
  console.error(`configuration error: ${err.message}`);
  process.exit(1);
}
const uploadDir = process.env.FILE_UPLOAD_DIR || '/var/app/uploads';
const variant = readVariant();
const homeTemplate = fs.readFileSync(path.join(__dirname, 'views', 'home.html'), 'utf8');

// -- database -------------------------------------------------------------------------
let pool = null;
let dbConfigProblem = null;
try {
  const db = parseDatabaseUrl(process.env.DATABASE_URL);
  pool = new Pool({
    connectionString: db.connectionString,
    max: 5,
    connectionTimeoutMillis: HEALTH_TIMEOUT_MS,
    idleTimeoutMillis: 10000,
    query_timeout: HEALTH_TIMEOUT_MS,
  });
  // An idle client whose server went away must not crash the process.
  pool.on('error', (err) => console.error(`database: idle connection lost (${safeCode(err) || 'unknown'})`));
} catch (err) {
  dbConfigProblem = err.message; // parseDatabaseUrl never includes the URL itself
}

function safeCode(err) {
  const code = err && err.code;
  return typeof code === 'string' && /^[A-Za-z0-9_]{1,40}$/.test(code) ? code : undefined;
}

function checkDatabase() {
  if (!pool) return Promise.resolve({ ok: false, reason: dbConfigProblem });
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ ok: false, reason: 'database check timed out' }), HEALTH_TIMEOUT_MS);
    pool.query('SELECT 1').then(
      () => { clearTimeout(timer); resolve({ ok: true }); },
      (err) => {
        clearTimeout(timer);
        const code = safeCode(err);
        resolve({ ok: false, reason: 'database unreachable', ...(code ? { code } : {}) });
      },
    );
  });
}

// -- helpers --------------------------------------------------------------------------
let shuttingDown = false;

function send(res, status, body, contentType, extraHeaders = {}) {
  const payload = Buffer.isBuffer(body) ? body : Buffer.from(body);
  const headers = { 'Content-Type': contentType, 'Content-Length': payload.length, ...extraHeaders };
  if (shuttingDown) headers.Connection = 'close';
  res.writeHead(status, headers);
  res.end(res.req.method === 'HEAD' ? undefined : payload);
}

function sendJson(res, status, obj, extraHeaders = {}) {
  send(res, status, `${JSON.stringify(obj)}\n`, 'application/json; charset=utf-8',
    { 'Cache-Control': 'no-store', ...extraHeaders });
}

function methodNotAllowed(res, allow) {
  sendJson(res, 405, { error: 'method not allowed' }, { Allow: allow.join(', ') });
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  })[c]);
}

// Upload names: one path component, no traversal, no hidden files (temp files are hidden).
function validUploadName(name) {
  return typeof name === 'string' && name.length > 0 && name.length <= 255
    && !name.includes('/') && !name.includes('\\') && !name.includes('..')
    && !name.startsWith('.') && !/[\u0000-\u001f\u007f]/.test(name);
}

// -- routes ---------------------------------------------------------------------------
function home(req, res) {
  const html = homeTemplate
    .replace(/\{\{version\}\}/g, escapeHtml(VERSION))
    .replace(/\{\{release\}\}/g, escapeHtml(RELEASE || '-'));
  send(res, 200, html, 'text/html; charset=utf-8');
}

async function health(req, res) {
  if (variant === 'broken-health') {
    sendJson(res, 500, { status: 'error', reason: 'broken-health variant', version: VERSION });
    return;
  }
  const result = await checkDatabase();
  if (result.ok) {
    sendJson(res, 200, { status: 'ok', version: VERSION });
  } else {
    const { ok, ...detail } = result;
    sendJson(res, 503, { status: 'error', version: VERSION, ...detail });
  }
}

function info(req, res) {
  sendJson(res, 200, {
    version: VERSION,
    release: RELEASE,
    variant,
    env_fingerprint: envFingerprint(),
    env_present: presentVariables(),
    max_file_size: maxFileSize,
  });
}

async function listUploads(req, res) {
  let entries = [];
  try {
    entries = await fs.promises.readdir(uploadDir, { withFileTypes: true });
  } catch (err) {
    if (err.code !== 'ENOENT') throw err;
  }
  const files = entries.filter((e) => e.isFile() && !e.name.startsWith('.')).map((e) => e.name).sort();
  sendJson(res, 200, { files });
}

async function download(req, res, rawName) {
  let name;
  try {
    name = decodeURIComponent(rawName);
  } catch {
    name = null;
  }
  if (!validUploadName(name)) {
    sendJson(res, 400, { error: 'invalid file name' });
    return;
  }
  const file = path.join(uploadDir, name);
  let stat;
  try {
    stat = await fs.promises.stat(file);
  } catch {
    stat = null;
  }
  if (!stat || !stat.isFile()) {
    sendJson(res, 404, { error: 'not found' });
    return;
  }
  res.writeHead(200, {
    'Content-Type': 'application/octet-stream',
    'Content-Length': stat.size,
    'Content-Disposition': `attachment; filename="${name.replace(/["\\]/g, '_')}"`,
    ...(shuttingDown ? { Connection: 'close' } : {}),
  });
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  const stream = fs.createReadStream(file);
  stream.on('error', () => res.destroy());
  stream.pipe(res);
}

function tooLarge(res) {
  // Connection: close -- the rest of the body is not read into the app.
  sendJson(res, 413, { error: 'file too large', max_file_size: maxFileSize }, { Connection: 'close' });
}

async function upload(req, res, url) {
  const name = url.searchParams.get('name');
  if (!validUploadName(name)) {
    sendJson(res, 400, { error: 'invalid file name' }, { Connection: 'close' });
    return;
  }
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > maxFileSize) {
    tooLarge(res);
    return;
  }
  await fs.promises.mkdir(uploadDir, { recursive: true });
  const tmp = path.join(uploadDir, `.${name}.${crypto.randomBytes(6).toString('hex')}.part`);
  const out = fs.createWriteStream(tmp, { flags: 'wx', mode: 0o640 });
  let size = 0;
  let done = false;

  const abandon = (respond) => {
    if (done) return;
    done = true;
    req.off('data', onData);
    out.destroy();
    fs.unlink(tmp, () => {});
    if (respond && !res.headersSent) respond();
  };
  const onData = (chunk) => {
    size += chunk.length;
    if (size > maxFileSize) {
      abandon(() => tooLarge(res)); // stop as soon as the limit is crossed
      return;
    }
    if (!out.write(chunk)) {
      req.pause();
      out.once('drain', () => { if (!done) req.resume(); });
    }
  };
  req.on('data', onData);
  req.on('end', () => { if (!done) out.end(); });
  req.on('close', () => { if (!req.complete) abandon(null); });
  out.on('error', () => abandon(() => sendJson(res, 500, { error: 'could not store the file' }, { Connection: 'close' })));
  out.on('finish', () => {
    if (done) return;
    done = true;
    fs.rename(tmp, path.join(uploadDir, name), (err) => {
      if (err) {
        fs.unlink(tmp, () => {});
        sendJson(res, 500, { error: 'could not store the file' });
      } else {
        sendJson(res, 201, { name, size });
      }
    });
  });
}

async function route(req, res) {
  const url = new URL(req.url, 'http://app.invalid');
  const p = url.pathname;
  const m = req.method;
  const read = m === 'GET' || m === 'HEAD';

  if (p === '/socket.io' || p.startsWith('/socket.io/')) {
    sendJson(res, 400, { error: 'WebSocket upgrade required' });
  } else if (p === '/') {
    if (!read) return methodNotAllowed(res, ['GET', 'HEAD']);
    home(req, res);
  } else if (p === '/api/version') {
    if (!read) return methodNotAllowed(res, ['GET', 'HEAD']);
    sendJson(res, 200, { version: VERSION, release: RELEASE });
  } else if (p === '/api/health') {
    if (!read) return methodNotAllowed(res, ['GET', 'HEAD']);
    await health(req, res);
  } else if (p === '/api/info') {
    if (!read) return methodNotAllowed(res, ['GET', 'HEAD']);
    info(req, res);
  } else if (p === '/api/uploads' || p === '/api/uploads/') {
    if (m === 'POST') await upload(req, res, url);
    else if (read) await listUploads(req, res);
    else methodNotAllowed(res, ['GET', 'HEAD', 'POST']);
  } else if (p.startsWith('/api/uploads/')) {
    if (!read) return methodNotAllowed(res, ['GET', 'HEAD']);
    await download(req, res, p.slice('/api/uploads/'.length));
  } else {
    sendJson(res, 404, { error: 'not found' });
  }
  return undefined;
}

// -- server ---------------------------------------------------------------------------
const sockets = new Set(); // open WebSocket connections
const server = http.createServer((req, res) => {
  res.setHeader('X-App-Version', VERSION);
  if (shuttingDown) res.on('finish', () => server.closeIdleConnections());
  route(req, res).catch((err) => {
    console.error(`request failed: ${req.method} ${req.url.split('?')[0]}: ${err.code || err.name}`);
    if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
    else res.destroy();
  });
});
server.keepAliveTimeout = 5000;

server.on('upgrade', (req, socket, head) => {
  const headers = { 'X-App-Version': VERSION };
  const p = new URL(req.url, 'http://app.invalid').pathname;
  if (shuttingDown) {
    rejectUpgrade(socket, '503 Service Unavailable', 'shutting down', headers);
  } else if (p !== '/socket.io' && !p.startsWith('/socket.io/')) {
    rejectUpgrade(socket, '404 Not Found', 'not found', headers);
  } else {
    const conn = acceptUpgrade(req, socket, head, headers, (c) => sockets.delete(c));
    if (conn) sockets.add(conn);
  }
});

server.on('clientError', (err, socket) => {
  if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
  else socket.destroy();
});

async function closePool() {
  if (!pool) return;
  try {
    await pool.end();
  } catch {
    // already closed
  }
}

function shutdown(signal) {
  if (shuttingDown) return;
  shuttingDown = true;
  console.log(`${signal} received: no new connections; draining in-flight requests (up to ${SHUTDOWN_TIMEOUT_MS / 1000} s)`);
  const exit = (how) => {
    closePool().finally(() => {
      console.log(`shutdown complete (${how})`);
      process.exit(0);
    });
  };
  server.close(() => exit('drained'));
  server.closeIdleConnections();
  for (const conn of sockets) conn.close(1001, 'server shutting down');
  const timer = setTimeout(() => {
    console.log('drain timeout: closing remaining connections');
    server.closeAllConnections();
    for (const conn of sockets) conn.socket.destroy();
    exit('timeout');
  }, SHUTDOWN_TIMEOUT_MS);
  timer.unref();
}

process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

server.listen(port, '0.0.0.0', () => {
  const parts = [`version ${VERSION}`];
  if (variant) parts.push(`variant ${variant}`);
  if (!pool) parts.push(`database not configured: ${dbConfigProblem}`);
  console.log(`listening on 0.0.0.0:${port} (${parts.join(', ')})`);
});
