// node-postgres's pool through pgwarden's proxy: each connection sets its TimeZone and
// application_name at startup, changes the TimeZone, runs RESET ALL (or DISCARD ALL) and
// reads both back; prints what it saw as JSON (test_drivers.py checks it).
'use strict';
const { Pool } = require('pg');

const [port, password] = process.argv.slice(2);

async function main() {
  const pool = new Pool({
    host: '127.0.0.1', port: Number(port), user: 'postgres', password,
    database: 'postgres', max: 4, application_name: 'nodeapp',
    options: '-c TimeZone=Asia/Tokyo',
  });
  const seen = [];
  async function use(round) {
    const c = await pool.connect();
    try {
      await c.query("SET TimeZone TO 'Europe/Oslo'");
      await c.query(round % 2 === 0 ? 'RESET ALL' : 'DISCARD ALL');
      const tz = (await c.query('SHOW TimeZone')).rows[0].TimeZone;
      const app = (await c.query('SHOW application_name')).rows[0].application_name;
      seen.push([tz, app]);
    } finally {
      c.release();
    }
  }
  for (let round = 0; round < 5; round++)
    await Promise.all([0, 1, 2, 3].map(() => use(round)));
  await pool.end();
  process.stdout.write(JSON.stringify(seen) + '\n');
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack ? e.stack : e) + '\n');
  process.exit(1);
});
