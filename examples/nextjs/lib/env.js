'use strict';
// The app's configuration variables (the production plan's env file). Their values
// are never logged or returned; /api/info exposes only which are set and a
// fingerprint of them, so a deploy can prove WHICH environment a release runs.
const crypto = require('crypto');

const APP_VARIABLES = Object.freeze([
  'DATABASE_URL',
  'NEXTAUTH_URL',
  'NEXTAUTH_SECRET',
  'NEXT_PUBLIC_SOCKET_URL',
  'NEXT_PUBLIC_SOCKET_NAMESPACE',
  'FILE_UPLOAD_DIR',
  'MAX_FILE_SIZE',
  'SMTP_HOST',
  'SMTP_PORT',
  'SMTP_USER',
  'SMTP_PASSWORD',
  'SENTRY_DSN',
  'SENTRY_ENVIRONMENT',
]);

// A variable counts as set when it is present in the environment, even if empty.
function presentVariables(env = process.env) {
  return APP_VARIABLES.filter((name) => env[name] !== undefined).sort();
}

// First 16 hex digits of sha256 over the sorted "NAME=value\n" lines of the set
// app variables. Python equivalent:
//   sha256("".join(f"{k}={env[k]}\n" for k in sorted(present))).hexdigest()[:16]
function envFingerprint(env = process.env) {
  const text = presentVariables(env).map((name) => `${name}=${env[name]}\n`).join('');
  return crypto.createHash('sha256').update(text, 'utf8').digest('hex').slice(0, 16);
}

function intFromEnv(name, fallback, env = process.env) {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new Error(`${name} must be a non-negative integer`);
  }
  return value;
}

module.exports = { APP_VARIABLES, presentVariables, envFingerprint, intFromEnv };
