#!/usr/bin/env node
'use strict';
// A stand-in for `npx prisma migrate deploy` (Prisma's schema engine is a binary
// downloaded on first use, which cannot happen here). It keeps exactly Prisma's
// bookkeeping in `_prisma_migrations`, so tools that inspect migration state read
// the same table a real Prisma app writes:
//
// - applies prisma/migrations/*/migration.sql in directory-name order, each in a
//   transaction; checksum = sha256 hex of the file;
// - skips migrations already finished; refuses to run (P3009) while a migration is
//   recorded as failed (finished_at and rolled_back_at both NULL);
// - records a failure's error in `logs` and exits 1 (P3018);
// - holds Prisma's advisory lock (pg_advisory_lock(72707369)) for the whole run.
//
// Usage: node scripts/migrate.js     (DATABASE_URL from the environment)
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const { Client } = require('pg');

const { parseDatabaseUrl, quoteIdent, DatabaseUrlError } = require('../lib/db');

const APP_ROOT = path.resolve(__dirname, '..');
const SCHEMA_PATH = 'prisma/schema.prisma';
const MIGRATIONS_REL = 'prisma/migrations';
const MIGRATIONS_DIR = path.join(APP_ROOT, MIGRATIONS_REL);
const ADVISORY_LOCK_KEY = 72707369; // the key Prisma's schema engine uses
const LOCK_TIMEOUT_MS = 10000;
const RESOLVE_DOCS = 'https://pris.ly/d/migrate-resolve';

const CREATE_TABLE = `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
)`;

class MigrateError extends Error {
  constructor(code, message) {
    super(message);
    this.prismaCode = code;
  }
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function utc(ts) {
  return ts instanceof Date ? `${ts.toISOString().replace('T', ' ').replace('Z', '')} UTC` : String(ts);
}

function localMigrations() {
  let dirs;
  try {
    dirs = fs.readdirSync(MIGRATIONS_DIR, { withFileTypes: true });
  } catch {
    throw new MigrateError('P3015', `Could not find the migrations directory at ${MIGRATIONS_REL}.`);
  }
  return dirs
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .map((name) => {
      const file = path.join(MIGRATIONS_DIR, name, 'migration.sql');
      let bytes;
      try {
        bytes = fs.readFileSync(file);
      } catch {
        throw new MigrateError('P3015', `Could not find the migration file at ${MIGRATIONS_REL}/${name}/migration.sql. Please delete the directory or restore the migration file.`);
      }
      return {
        name,
        sql: bytes.toString('utf8'),
        checksum: crypto.createHash('sha256').update(bytes).digest('hex'),
      };
    });
}

function describeDbError(err) {
  const lines = [];
  if (err.code) lines.push(`Database error code: ${err.code}`, '');
  lines.push('Database error:', `ERROR: ${err.message}`);
  if (err.detail) lines.push(`DETAIL: ${err.detail}`);
  if (err.hint) lines.push(`HINT: ${err.hint}`);
  if (err.position) lines.push(`POSITION: ${err.position}`);
  return lines.join('\n');
}

function connectionError(err, db) {
  const where = `\`${db.host}\`:\`${db.port}\``;
  if (err.code === '28P01' || err.code === '28000') {
    return new MigrateError('P1000', `Authentication failed against database server at ${where}, the provided database credentials are not valid.\n\nPlease make sure to provide valid database credentials for the database server at ${where}.`);
  }
  if (err.code === '3D000') {
    return new MigrateError('P1003', `Database \`${db.database}\` does not exist on the database server at ${where}.`);
  }
  return new MigrateError('P1001', `Can't reach database server at ${where}\n\nPlease make sure your database server is running at ${where}.`);
}

async function acquireLock(client, db) {
  if (process.env.PRISMA_SCHEMA_DISABLE_ADVISORY_LOCK) return false;
  await client.query(`SET lock_timeout = ${LOCK_TIMEOUT_MS}`);
  try {
    await client.query('SELECT pg_advisory_lock($1)', [ADVISORY_LOCK_KEY]);
  } catch (err) {
    if (err.code === '55P03') {
      throw new MigrateError('P1002', `The database server at \`${db.host}\`:\`${db.port}\` was reached but timed out.\n\nContext: Timed out trying to acquire a postgres advisory lock (SELECT pg_advisory_lock(${ADVISORY_LOCK_KEY})). Timeout: ${LOCK_TIMEOUT_MS}ms. See https://pris.ly/d/migrate-advisory-locking for details.`);
    }
    throw err;
  } finally {
    await client.query('RESET lock_timeout').catch(() => {});
  }
  return true;
}

async function applyOne(client, migration) {
  const id = crypto.randomUUID();
  await client.query(
    `INSERT INTO "_prisma_migrations" ("id", "checksum", "migration_name", "started_at", "applied_steps_count")
     VALUES ($1, $2, $3, now(), 0)`,
    [id, migration.checksum, migration.name],
  );
  try {
    await client.query('BEGIN');
    await client.query(migration.sql); // simple query protocol: the whole script at once
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    const detail = describeDbError(err);
    await client.query('UPDATE "_prisma_migrations" SET "logs" = $1 WHERE "id" = $2',
      [`${detail}\n\n   0: migration ${migration.name}`, id]);
    throw new MigrateError('P3018', `A migration failed to apply. New migrations cannot be applied before the error is recovered from. Read more about how to resolve migration issues in a production database: ${RESOLVE_DOCS}\n\nMigration name: ${migration.name}\n\n${detail}`);
  }
  await client.query(
    `UPDATE "_prisma_migrations"
        SET "finished_at" = now(), "applied_steps_count" = "applied_steps_count" + 1
      WHERE "id" = $1`,
    [id],
  );
}

async function deploy(client, db) {
  if (db.schema !== 'public') {
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(db.schema)}`);
  }
  await client.query(`SET search_path TO ${quoteIdent(db.schema)}`);
  await client.query(CREATE_TABLE);

  const migrations = localMigrations();
  const { rows } = await client.query(
    'SELECT "id", "checksum", "migration_name", "finished_at", "rolled_back_at", "started_at" FROM "_prisma_migrations" ORDER BY "started_at" ASC',
  );

  const failed = rows.filter((r) => r.finished_at === null && r.rolled_back_at === null);
  if (failed.length) {
    const list = failed.map((r) => `The \`${r.migration_name}\` migration started at ${utc(r.started_at)} failed`).join('\n');
    throw new MigrateError('P3009', `migrate found failed migrations in the target database, new migrations will not be applied. Read more about how to resolve migration issues in a production database: ${RESOLVE_DOCS}\n${list}`);
  }

  const applied = new Map();
  for (const r of rows) {
    if (r.finished_at !== null && r.rolled_back_at === null) applied.set(r.migration_name, r);
  }
  const localNames = new Set(migrations.map((m) => m.name));
  const modified = migrations.filter((m) => applied.has(m.name) && applied.get(m.name).checksum !== m.checksum);
  if (modified.length) {
    console.warn(`WARNING The following migrations have been modified since they were applied:\n${modified.map((m) => `  ${m.name}`).join('\n')}\n`);
  }
  const missing = [...applied.keys()].filter((name) => !localNames.has(name));
  if (missing.length) {
    console.warn(`WARNING The following migrations are applied to the database but missing from the local migrations directory:\n${missing.map((n) => `  ${n}`).join('\n')}\n`);
  }

  console.log(`${plural(migrations.length, 'migration')} found in ${MIGRATIONS_REL}`);
  console.log('');
  const pending = migrations.filter((m) => !applied.has(m.name));
  if (!pending.length) {
    console.log('No pending migrations to apply.');
    return;
  }
  for (const migration of pending) {
    console.log(`Applying migration \`${migration.name}\``);
    await applyOne(client, migration);
  }
  console.log('');
  console.log('The following migration(s) have been applied:');
  console.log('');
  console.log('migrations/');
  for (const m of pending) console.log(`  └─ ${m.name}/\n    └─ migration.sql`);
  console.log('');
  console.log('All migrations have been successfully applied.');
}

async function main() {
  let db;
  try {
    db = parseDatabaseUrl(process.env.DATABASE_URL);
  } catch (err) {
    if (err instanceof DatabaseUrlError) throw new MigrateError('P1012', err.message);
    throw err;
  }
  console.log(`Prisma schema loaded from ${SCHEMA_PATH}`);
  console.log(`Datasource "db": PostgreSQL database "${db.database}", schema "${db.schema}" at "${db.host}:${db.port}"`);
  console.log('');

  const client = new Client({ connectionString: db.connectionString, connectionTimeoutMillis: 10000 });
  client.on('error', () => {}); // surfaced by the failing query instead
  try {
    await client.connect();
  } catch (err) {
    throw connectionError(err, db);
  }
  try {
    const locked = await acquireLock(client, db);
    try {
      await deploy(client, db);
    } finally {
      if (locked) await client.query('SELECT pg_advisory_unlock($1)', [ADVISORY_LOCK_KEY]).catch(() => {});
    }
  } finally {
    await client.end().catch(() => {});
  }
}

main().then(
  () => { process.exitCode = 0; },
  (err) => {
    if (err instanceof MigrateError) {
      console.error(`Error: ${err.prismaCode}\n\n${err.message}`);
    } else if (err && err.code) {
      console.error(`Error: ${describeDbError(err)}`);
    } else {
      console.error(`Error: ${err && err.message ? err.message : err}`);
    }
    process.exitCode = 1;
  },
);
