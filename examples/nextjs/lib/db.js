'use strict';
// DATABASE_URL handling shared by the server and the migrate stand-in. Prisma-only
// URL parameters are stripped before the URL reaches node-postgres; `schema` is
// honoured as the search_path, like Prisma does.
const PRISMA_ONLY_PARAMS = [
  'schema', 'connection_limit', 'pool_timeout', 'pgbouncer', 'statement_cache_size',
  'socket_timeout', 'connect_timeout',
];

class DatabaseUrlError extends Error {}

function parseDatabaseUrl(raw) {
  if (raw === undefined || raw === '') {
    throw new DatabaseUrlError('Environment variable not found: DATABASE_URL.');
  }
  let url;
  try {
    url = new URL(raw);
  } catch {
    // Never echo the value: it carries the password.
    throw new DatabaseUrlError('DATABASE_URL is not a valid URL.');
  }
  if (url.protocol !== 'postgresql:' && url.protocol !== 'postgres:') {
    throw new DatabaseUrlError('DATABASE_URL must start with the protocol `postgresql://` or `postgres://`.');
  }
  const schema = url.searchParams.get('schema') || 'public';
  for (const name of PRISMA_ONLY_PARAMS) url.searchParams.delete(name);
  const user = decodeURIComponent(url.username || '');
  return {
    connectionString: url.toString(),
    schema,
    host: url.hostname || 'localhost',
    port: url.port || '5432',
    database: decodeURIComponent(url.pathname.replace(/^\//, '')) || user,
  };
}

function quoteIdent(name) {
  return `"${String(name).replace(/"/g, '""')}"`;
}

module.exports = { parseDatabaseUrl, quoteIdent, DatabaseUrlError };
