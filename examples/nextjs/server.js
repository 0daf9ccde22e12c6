'use strict';
// The Next.js sample app's custom server: one HTTP server on PORT (3000) serving
//   - Socket.io at /socket.io/ (event `version` acks with APP_VERSION),
//   - the ops routes: /api/health (200 only when `SELECT 1` works), /api/info,
//     /api/version, POST /api/upload, GET /uploads/<name>,
//   - everything else through Next.js (pages, /_next/static/... hashed assets).
// Every response carries `X-App-Version`. SIGTERM drains: see README.md.
//
// Nothing here logs or returns the value of a configuration variable.
const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const path = require('path');
const next = require('next');
const { Pool } = require('pg');
const { Server: SocketServer } = require('socket.io');

const { envFingerprint, intFromEnv, presentVariables } = require('./lib/env');
const { parseDatabaseUrl } = require('./lib/db');

const VERSION = process.env.APP_VERSION || 'dev';
const RELEASE = process.env.APP_RELEASE || null;
const HEALTH_TIMEOUT_MS = 2000;
// Hard limit of the drain after SIGTERM; keep it below the stop timeout the deploy gives
// `docker stop` (deploy.stop_timeout; 10 s for a plain `docker stop`), so the process
// always exits 0 by itself.
const SHUTDOWN_TIMEOUT_MS = 8000;
const DEFAULT_MAX_FILE_SIZE = 10485760;
const NEXT_VERSION = require('next/package.json').version;

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
const dev = process.env.NODE_ENV === 'development';

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

function sendJson(res, status, obj, extraHeaders = {}) {
  const payload = Buffer.from(`${JSON.stringify(obj)}\n`);
  const headers = {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': payload.length,
    'Cache-Control': 'no-store',
    ...extraHeaders,
  };
  if (shuttingDown) headers.Connection = 'close';
  res.writeHead(status, headers);
  res.end(res.req.method === 'HEAD' ? undefined : payload);
}

function methodNotAllowed(res, allow) {
  sendJson(res, 405, { error: 'method not allowed' }, { Allow: allow.join(', ') });
}

// Upload names: one path component, no traversal, no hidden files (temp files are hidden).
function validUploadName(name) {
  return typeof name === 'string' && name.length > 0 && name.length <= 255
    && !name.includes('/') && !name.includes('\\') && !name.includes('..')
    && !name.startsWith('.') && !/[\u0000-\u001f\u007f]/.test(name);
}

// -- ops routes -----------------------------------------------------------------------
async function health(req, res) {
  if (shuttingDown) {
    // A balancer that still asks gets told to go elsewhere.
    sendJson(res, 503, { status: 'shutting-down', version: VERSION });
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
    app: 'nextjs',
    next: NEXT_VERSION,
    node: process.versions.node,
    env_fingerprint: envFingerprint(),
    env_present: presentVariables(),
    max_file_size: maxFileSize,
  });
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
  const stat = await fs.promises.stat(file).catch(() => null);
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

// POST /api/upload?name=F with the raw file as the body (or the name in X-File-Name).
// Streamed to a hidden temp file, renamed into place when complete; over MAX_FILE_SIZE
// it stops reading and answers 413.
async function upload(req, res, url) {
  const name = url.searchParams.get('name') || req.headers['x-file-name'];
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
      abandon(() => tooLarge(res));
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
        sendJson(res, 201, { name, size, url: `/uploads/${encodeURIComponent(name)}` });
      }
    });
  });
}

// Returns true when the request was an ops route; false hands it to Next.js.
async function opsRoute(req, res, url) {
  const p = url.pathname;
  const read = req.method === 'GET' || req.method === 'HEAD';
  if (p === '/api/health') {
    if (!read) methodNotAllowed(res, ['GET', 'HEAD']);
    else await health(req, res);
  } else if (p === '/api/info') {
    if (!read) methodNotAllowed(res, ['GET', 'HEAD']);
    else info(req, res);
  } else if (p === '/api/version') {
    if (!read) methodNotAllowed(res, ['GET', 'HEAD']);
    else sendJson(res, 200, { version: VERSION, release: RELEASE });
  } else if (p === '/api/upload') {
    if (req.method !== 'POST') methodNotAllowed(res, ['POST']);
    else await upload(req, res, url);
  } else if (p.startsWith('/uploads/')) {
    if (!read) methodNotAllowed(res, ['GET', 'HEAD']);
    else await download(req, res, p.slice('/uploads/'.length));
  } else {
    return false;
  }
  return true;
}

// -- server ---------------------------------------------------------------------------
async function main() {
  const app = next({ dev, dir: __dirname, hostname: '0.0.0.0', port });
  const handle = app.getRequestHandler();
  await app.prepare();

  const server = http.createServer((req, res) => {
    res.setHeader('X-App-Version', VERSION);
    // While draining, answer what is in flight and close each connection after it.
    if (shuttingDown) {
      res.setHeader('Connection', 'close');
      res.on('finish', () => server.closeIdleConnections());
    }
    const url = new URL(req.url, 'http://app.invalid');
    opsRoute(req, res, url)
      .then((handled) => (handled ? undefined : handle(req, res)))
      .catch((err) => {
        console.error(`request failed: ${req.method} ${url.pathname}: ${err.code || err.name}`);
        if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
        else res.destroy();
      });
  });
  server.keepAliveTimeout = 5000;

  // Socket.io takes /socket.io/ (polling and WebSocket upgrade) before the handler above.
  const io = new SocketServer(server, { path: '/socket.io', serveClient: false });
  io.engine.on('initial_headers', (headers) => { headers['X-App-Version'] = VERSION; });
  io.engine.on('headers', (headers) => { headers['X-App-Version'] = VERSION; });
  io.on('connection', (socket) => {
    socket.on('version', (...args) => {
      const ack = args[args.length - 1];
      if (typeof ack === 'function') ack({ version: VERSION, release: RELEASE });
    });
  });

  server.on('clientError', (err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });

  let exiting = false;
  const exit = (how) => {
    if (exiting) return;
    exiting = true;
    const done = () => {
      console.log(`shutdown complete (${how})`);
      process.exit(0);
    };
    (pool ? pool.end().catch(() => {}) : Promise.resolve()).finally(done);
  };

  function shutdown(signal) {
    if (shuttingDown) return;
    shuttingDown = true;
    console.log(`${signal} received: no new connections; closing realtime clients; draining in-flight requests (up to ${SHUTDOWN_TIMEOUT_MS / 1000} s)`);
    // Stop listening; the callback runs once every connection has ended.
    server.close(() => exit('drained'));
    // NOTE: close the transports, not the Socket.io sockets: a client whose transport
    // closes ("transport close") reconnects by itself -- through the proxy, to the
    // release that now serves -- while socket.disconnect() would tell it to stay away.
    io.emit('server:shutdown', { version: VERSION });
    io.engine.close();
    server.closeIdleConnections();
    const timer = setTimeout(() => {
      console.log('drain timeout: closing remaining connections');
      server.closeAllConnections();
      exit('timeout');
    }, SHUTDOWN_TIMEOUT_MS);
    timer.unref();
  }
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));

  await new Promise((resolve) => server.listen(port, '0.0.0.0', resolve));
  const parts = [`version ${VERSION}`, `next ${NEXT_VERSION}`];
  if (!pool) parts.push(`database not configured: ${dbConfigProblem}`);
  console.log(`listening on 0.0.0.0:${port} (${parts.join(', ')})`);
}

main().catch((err) => {
  console.error(`startup failed: ${err && err.message ? err.message : err}`);
  process.exit(1);
});
