// Real PostgreSQL and MariaDB servers for the app-store end-to-end tests: Debian's server
// binaries, a fresh cluster or data directory in a temporary directory, a free loopback port,
// the `ferrocast` database and user made, and packaging/sql/{postgres,mysql}.sql loaded.
//
// Statements go through the servers' own command-line clients (psql, mariadb), which come with
// the server packages, so the suite needs no database driver of its own and runs SQL exactly as
// an operator would. The test's statements connect as `ferrocast` over TCP, as the server under
// test does; the launcher's own (setup, statistics) go over the Unix socket in the temporary
// directory as the superuser, into another database, so they never show in the counts.
//
// A missing server binary fails loudly with an install hint: these tests never skip. Every wait
// is bounded, and a server still running when the process exits is killed.

import { execFile, spawn } from 'node:child_process';
import { chownSync, closeSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from './server.mjs';

/** How long a server may take to start, or to stop after being asked. */
const SERVER_WAIT_MS = 30_000;
/** How long one client run (psql, mariadb) may take. */
const CLIENT_WAIT_MS = 15_000;
/** The schema files shipped for operators, loaded unchanged. */
export const SQL_FILES = Object.freeze({
  postgres: path.join(REPO_ROOT, 'packaging', 'sql', 'postgres.sql'),
  mysql: path.join(REPO_ROOT, 'packaging', 'sql', 'mysql.sql'),
});
/** MariaDB's redo log, small so that each test's directory stays small. */
const REDO_LOG = '--innodb-log-file-size=8M';

/** Every database server still running, killed if the test process exits first. */
const running = new Map();
process.on('exit', () => {
  for (const [child, dir] of running) {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;

/** The uid and gid of `nobody`, for PostgreSQL, which refuses to run as root. */
function nobody() {
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const [name, , uid, gid] = line.split(':');
    if (name === 'nobody') return { uid: Number(uid), gid: Number(gid) };
  }
  throw new Error('no `nobody` user in /etc/passwd to run PostgreSQL as');
}

/** A loopback port nobody listens on right now (it can be taken before the server binds it). */
function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** A password unique to this run, URL-safe so that it needs no escaping in a connection URL. */
const password = () => `pw${process.pid.toString(16)}${Date.now().toString(16)}${Math.floor(Math.random() * 1e9).toString(16)}`;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** This process's environment with `changes` applied (an `undefined` value removes a variable). */
function environment(changes) {
  const env = { ...process.env, ...changes };
  for (const [name, value] of Object.entries(env)) if (value === undefined) delete env[name];
  return env;
}

/**
 * Runs `program args` to its end (killed after `timeout`), resolving with its stdout without the
 * last newline, or rejecting with its stderr.
 */
function run(program, args, { timeout = CLIENT_WAIT_MS, env = {}, ...options } = {}) {
  return new Promise((resolve, reject) => {
    execFile(
      program,
      args,
      { timeout, killSignal: 'SIGKILL', maxBuffer: 16 << 20, env: environment(env), ...options },
      (err, stdout, stderr) => {
        if (err) {
          const why = err.killed ? `killed after ${timeout} ms` : `exit ${err.code ?? err.signal}`;
          reject(new Error(`${program} ${args.join(' ')}: ${why}: ${String(stderr).trim() || err.message}`));
        } else {
          resolve(String(stdout).replace(/\n$/, ''));
        }
      },
    );
  });
}

/** The last lines of a server's log, for a failure message. */
function logTail(file) {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-40).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Panics unless `table` is a plain SQL identifier, since it is spliced into statistics queries. */
function checkIdentifier(table) {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(table)) throw new Error(`${JSON.stringify(table)} is not a plain table name`);
}

/** The full path of `program` on PATH or in /usr/sbin (Debian's home of `mariadbd`). */
function which(program) {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/bin'];
  return dirs.map((dir) => path.join(dir, program)).find((candidate) => candidate && existsSync(candidate));
}

/**
 * Spawns a server with its output appended to `log`, and resolves once `ready()` is true;
 * rejects if it exits first or is not ready within SERVER_WAIT_MS.
 */
async function spawnServer(program, args, { dir, log, ready, what, ...options }) {
  const fd = openSync(log, 'a');
  let child;
  try {
    child = spawn(program, args, { cwd: dir, stdio: ['ignore', fd, fd], ...options });
  } finally {
    closeSync(fd);
  }
  running.set(child, dir);
  let exit = null;
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      running.delete(child);
      exit = { code, signal };
      resolve(exit);
    });
    child.on('error', (err) => {
      running.delete(child);
      exit = { error: err.message };
      resolve(exit);
    });
  });
  const deadline = Date.now() + SERVER_WAIT_MS;
  for (;;) {
    if (exit) throw new Error(`${what} exited (${JSON.stringify(exit)}); its log:\n${logTail(log)}`);
    if (await ready().catch(() => false)) return { child, exited };
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      await exited;
      throw new Error(`${what} was not ready within ${SERVER_WAIT_MS} ms; its log:\n${logTail(log)}`);
    }
    await sleep(50);
  }
}

/** Asks `child` to end with `signal`, then kills it after `limit` ms; never hangs. */
async function end(server, signal, limit = 10_000) {
  if (!running.has(server.child)) return;
  server.child.kill(signal);
  const timer = setTimeout(() => server.child.kill('SIGKILL'), limit);
  await server.exited;
  clearTimeout(timer);
}

/** Debian's newest /usr/lib/postgresql/VERSION/bin that holds `initdb`. */
function postgresBinDir() {
  const root = '/usr/lib/postgresql';
  const versions = (existsSync(root) ? readdirSync(root) : [])
    .filter((v) => /^\d+$/.test(v) && existsSync(path.join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(a) - Number(b));
  if (versions.length === 0 || !which('psql')) {
    throw new Error(
      'no /usr/lib/postgresql/*/bin/initdb or no psql: the app-store tests need a real PostgreSQL ' +
        '(test.sh installs it; or run `apt-get install -y postgresql`)',
    );
  }
  return path.join(root, versions.at(-1), 'bin');
}

/** psql's environment: bounded connect and statement times, no password or service from outside. */
const PSQL_ENV = { PGCONNECT_TIMEOUT: '5', PGOPTIONS: '-c statement_timeout=10000', PGPASSWORD: undefined, PGSERVICE: undefined };

async function tryStartPostgres(bin) {
  const dir = mkdtempSync(path.join(tmpdir(), 'ferrocast-e2e-postgres-'));
  const port = await freePort();
  const pass = password();
  const log = path.join(dir, 'postgres.log');
  // As root, the cluster is made and run as `nobody`, owning the temporary directory.
  const asServer = isRoot() ? nobody() : {};
  if (isRoot()) chownSync(dir, asServer.uid, asServer.gid);
  const serverEnv = environment({ PGDATA: undefined });
  try {
    await run(
      path.join(bin, 'initdb'),
      ['-D', path.join(dir, 'data'), '-U', 'postgres', '-E', 'UTF8', '--no-locale',
        // The launcher's socket is trusted; TCP needs the role's password.
        '--auth-local=trust', '--auth-host=scram-sha-256', '--no-sync', '--no-instructions'],
      { cwd: dir, timeout: SERVER_WAIT_MS, env: { PGDATA: undefined }, ...asServer },
    );
    const server = await spawnServer(
      path.join(bin, 'postgres'),
      ['-D', path.join(dir, 'data'), '-c', 'listen_addresses=127.0.0.1', '-c', `port=${port}`,
        '-c', `unix_socket_directories=${dir}`,
        // Nothing here needs to survive a crash; skipping the flushes makes it fast.
        '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off',
        // Counts each statement as it ends, for selectCount.
        '-c', 'shared_preload_libraries=pg_stat_statements'],
      {
        dir,
        log,
        env: serverEnv,
        what: 'postgres',
        ...asServer,
        ready: () =>
          run(path.join(bin, 'pg_isready'), ['-q', '-h', '127.0.0.1', '-p', String(port), '-t', '2'], { timeout: 5_000 }).then(
            () => true,
          ),
      },
    );
    return { dir, port, pass, log, server };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * A real PostgreSQL with the role and database `ferrocast` and packaging/sql/postgres.sql
 * loaded. `sql(statement)` runs as `ferrocast` over TCP (psql -At: `|`-separated columns, one
 * row a line); `selectCount(table)` counts the SELECTs naming `table` that have finished
 * (pg_stat_statements: each execution once, simple or extended protocol).
 */
export async function startPostgres() {
  const bin = postgresBinDir();
  let started;
  let lastError;
  // A free port can be taken between probing and binding; try a few.
  for (let attempt = 0; attempt < 4 && !started; attempt++) {
    started = await tryStartPostgres(bin).catch((err) => {
      lastError = err;
      return undefined;
    });
  }
  if (!started) throw new Error(`PostgreSQL did not start: ${lastError.message}`);
  const { dir, port, pass, log, server } = started;
  const url = `postgres://ferrocast:${pass}@127.0.0.1:${port}/ferrocast`;
  const admin = (statement) =>
    run('psql', ['-X', '-At', '-v', 'ON_ERROR_STOP=1', '-U', 'postgres', '-d', 'postgres', '-h', dir, '-p', String(port), '-c', statement], {
      env: PSQL_ENV,
    });
  const sql = (statement) => run('psql', ['-X', '-At', '-v', 'ON_ERROR_STOP=1', '-d', url, '-c', statement], { env: PSQL_ENV });
  let stopped = null;
  const stop = () =>
    (stopped ??= (async () => {
      // Immediate shutdown: nothing is kept, so nothing needs to be written.
      await end(server, 'SIGQUIT');
      rmSync(dir, { recursive: true, force: true });
    })());
  try {
    await admin(`CREATE ROLE ferrocast LOGIN PASSWORD '${pass}'`);
    await admin('CREATE DATABASE ferrocast OWNER ferrocast');
    await admin('CREATE EXTENSION pg_stat_statements');
    await run('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', url, '-f', SQL_FILES.postgres], { env: PSQL_ENV });
  } catch (err) {
    await stop();
    throw new Error(`setting up PostgreSQL failed: ${err.message}\nits log:\n${logTail(log)}`);
  }
  return {
    driver: 'postgres',
    url,
    port,
    sql,
    async selectCount(table = 'apps') {
      checkIdentifier(table);
      const out = await admin(
        "SELECT coalesce(sum(s.calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid " +
          "WHERE d.datname = 'ferrocast' AND s.toplevel " +
          `AND s.query ~* '^\\s*(select|with)\\M' AND s.query ~* '\\m${table}\\M'`,
      );
      return parseCount(out, 'pg_stat_statements');
    },
    /** The server's log so far, for failure messages. */
    log: () => logTail(log),
    stop,
  };
}

/** Checks that `out` is a whole number and returns it. */
function parseCount(out, source) {
  if (!/^\d+$/.test(out.trim())) throw new Error(`${source} count ${JSON.stringify(out)}`);
  return Number(out.trim());
}

function mariadbPrograms() {
  const programs = {};
  for (const name of ['mariadbd', 'mariadb-install-db', 'mariadb']) {
    programs[name] = which(name);
    if (!programs[name]) {
      throw new Error(
        `no ${name}: the app-store tests need a real MariaDB ` +
          '(test.sh installs it; or run `apt-get install -y mariadb-server mariadb-client`)',
      );
    }
  }
  return programs;
}

async function tryStartMariaDb(programs) {
  const dir = mkdtempSync(path.join(tmpdir(), 'ferrocast-e2e-mariadb-'));
  const port = await freePort();
  const data = path.join(dir, 'data');
  const socket = path.join(dir, 'mariadb.sock');
  const log = path.join(dir, 'mariadbd.log');
  // mariadbd refuses to run as root unless told to; elsewhere it runs as whoever starts it.
  const user = isRoot() ? ['--user=root'] : [];
  const onSocket = ['--no-defaults', `--socket=${socket}`, '--protocol=SOCKET', '-uroot', '--batch', '--skip-column-names', '--connect-timeout=5'];
  try {
    // `--no-defaults` first, so that no /etc/mysql option file applies.
    await run(
      programs['mariadb-install-db'],
      ['--no-defaults', `--datadir=${data}`, '--auth-root-authentication-method=normal', '--skip-test-db', '--skip-name-resolve', REDO_LOG, ...user],
      { cwd: dir, timeout: SERVER_WAIT_MS },
    );
    const server = await spawnServer(
      programs.mariadbd,
      ['--no-defaults', `--datadir=${data}`, `--socket=${socket}`, `--pid-file=${dir}/mariadbd.pid`, `--tmpdir=${dir}`,
        `--port=${port}`, '--bind-address=127.0.0.1', '--skip-name-resolve', '--skip-log-bin',
        // Nothing here needs to survive a crash; skipping the flushes makes it fast.
        '--innodb-flush-log-at-trx-commit=0', '--innodb-doublewrite=0', '--innodb-buffer-pool-size=16M', REDO_LOG,
        // Table lock events count each statement's read of a table, for selectCount.
        '--performance-schema=ON', '--performance-schema-instrument=wait/lock/table/sql/handler=ON', ...user],
      {
        dir,
        log,
        what: 'mariadbd',
        ready: async () => {
          await new Promise((resolve, reject) => {
            const probe = net.connect(port, '127.0.0.1', () => {
              probe.destroy();
              resolve();
            });
            probe.on('error', reject);
            probe.setTimeout(2_000, () => probe.destroy(new Error('connect timeout')));
          });
          await run(programs.mariadb, [...onSocket, '-e', 'SELECT 1'], { timeout: 5_000 });
          return true;
        },
      },
    );
    return { dir, port, socket, log, server, onSocket };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * A real MariaDB with the database and user `ferrocast` and packaging/sql/mysql.sql loaded.
 * `sql(statement)` runs as `ferrocast` over TCP (batch mode: tab-separated columns, one row a
 * line); `selectCount(table)` counts the statements that have read `table` (the read table
 * locks of performance_schema.table_lock_waits_summary_by_table, one per statement and
 * reference, text or prepared; writes do not count).
 */
export async function startMariaDb() {
  const programs = mariadbPrograms();
  let started;
  let lastError;
  for (let attempt = 0; attempt < 4 && !started; attempt++) {
    started = await tryStartMariaDb(programs).catch((err) => {
      lastError = err;
      return undefined;
    });
  }
  if (!started) throw new Error(`MariaDB did not start: ${lastError.message}`);
  const { dir, port, log, server, onSocket } = started;
  const pass = password();
  const url = `mysql://ferrocast:${pass}@127.0.0.1:${port}/ferrocast`;
  const admin = (statements) => run(programs.mariadb, [...onSocket, '-e', statements]);
  const sql = (statement) =>
    run(programs.mariadb, [
      '--no-defaults', '--protocol=TCP', '-h', '127.0.0.1', '-P', String(port), '-u', 'ferrocast', `--password=${pass}`,
      '--batch', '--skip-column-names', '--connect-timeout=5', '--init-command=SET SESSION max_statement_time = 10',
      '-D', 'ferrocast', '-e', statement,
    ], { env: { MYSQL_PWD: undefined, MYSQL_HOST: undefined } });
  let stopped = null;
  const stop = () =>
    (stopped ??= (async () => {
      // Nothing is kept, so nothing needs a clean shutdown.
      await end(server, 'SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    })());
  try {
    await admin(
      `CREATE DATABASE ferrocast; ` +
        `CREATE USER 'ferrocast'@'127.0.0.1' IDENTIFIED BY '${pass}'; ` +
        `CREATE USER 'ferrocast'@'localhost' IDENTIFIED BY '${pass}'; ` +
        `GRANT ALL ON ferrocast.* TO 'ferrocast'@'127.0.0.1'; ` +
        `GRANT ALL ON ferrocast.* TO 'ferrocast'@'localhost';`,
    );
    await sql(`SOURCE ${SQL_FILES.mysql}`);
  } catch (err) {
    await stop();
    throw new Error(`setting up MariaDB failed: ${err.message}\nits log:\n${logTail(log)}`);
  }
  return {
    driver: 'mysql',
    url,
    port,
    sql,
    async selectCount(table = 'apps') {
      checkIdentifier(table);
      const out = await admin(
        'SELECT COALESCE(SUM(COUNT_READ_EXTERNAL), 0) FROM performance_schema.table_lock_waits_summary_by_table ' +
          `WHERE OBJECT_SCHEMA = 'ferrocast' AND OBJECT_NAME = '${table}'`,
      );
      return parseCount(out, 'performance_schema');
    },
    /** The server's log so far, for failure messages. */
    log: () => logTail(log),
    stop,
  };
}

/** The database for ferrocast's `[app_store] driver`: `postgres` or `mysql` (MariaDB). */
export function startDatabase(driver) {
  if (driver === 'postgres') return startPostgres();
  if (driver === 'mysql') return startMariaDb();
  throw new Error(`no database for the app store driver ${JSON.stringify(driver)}`);
}

/**
 * Quotes `value` as an SQL literal for either database: a string in single quotes (quotes
 * doubled, backslashes refused since MySQL reads them as escapes), a number, a boolean as 1/0, or
 * NULL.
 */
export function literal(value) {
  if (value === null || value === undefined) return 'NULL';
  if (typeof value === 'boolean') return value ? '1' : '0';
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (typeof value === 'string') {
    if (value.includes('\\')) throw new Error(`no backslashes in SQL literals here: ${JSON.stringify(value)}`);
    return `'${value.replaceAll("'", "''")}'`;
  }
  if (typeof value === 'object') return literal(JSON.stringify(value));
  throw new Error(`cannot write ${String(value)} as SQL`);
}

/** The column name quoted for the driver's dialect (`key` and `enabled` are reserved words). */
export function column(driver, name) {
  checkIdentifier(name);
  return driver === 'mysql' ? `\`${name}\`` : `"${name}"`;
}

/** An INSERT of one row of soketi's `apps` layout, `row` being column name to value. */
export function insertApp(driver, row, table = 'apps') {
  checkIdentifier(table);
  const names = Object.keys(row).map((name) => column(driver, name));
  const values = Object.values(row).map(literal);
  return `INSERT INTO ${table} (${names.join(', ')}) VALUES (${values.join(', ')})`;
}
