// Transactions on the shards' Redis Cluster ports from Node.js clients
// (test_cluster_node.sh): node-redis's and ioredis's cluster clients run
// multi() on keys of one slot, get CROSSSLOT across slots, and a WATCHed
// key changed before EXEC aborts the transaction.
//
// Usage: node test_cluster_node.js PORT (any shard's RESP port); NODE_PATH
// holds the packages.
'use strict';
const { createCluster, createClient } = require('redis');
const IORedis = require('ioredis');
const keySlot = require('cluster-key-slot');

const port = Number(process.argv[2]);
const failures = [];
function check(cond, what) {
  if (!cond) {
    failures.push(what);
    console.log('FAIL:', what);
  }
}
async function rejects(p, text) {
  try {
    await p;
  } catch (e) {
    return !text || String(e && e.message).includes(text);
  }
  return false;
}

async function nodeRedis() {
  console.log('== node-redis: multi() on a cluster');
  const c = createCluster({ rootNodes: [{ url: `redis://127.0.0.1:${port}` }] });
  c.on('error', () => {});
  await c.connect();
  await c.del('{nr}n');
  const res = await c.multi().set('{nr}a', '1').incr('{nr}n').incr('{nr}n').get('{nr}a').exec();
  check(JSON.stringify(res) === JSON.stringify(['OK', 1, 2, '1']),
        `node-redis multi: ${JSON.stringify(res)}`);
  check(await rejects(c.multi().set('{nr}a', 'x').set('{other}b', 'y').exec()),
        'node-redis multi across slots fails');
  check((await c.get('{nr}a')) === '1', 'a failed node-redis multi wrote nothing');

  console.log('== node-redis: WATCH on the shard that owns the slot');
  const master = c.getSlotMaster(keySlot('{nr}w'));
  const url = `redis://${master.host}:${master.port}`;
  const a = createClient({ url, isolationPoolOptions: { max: 1 } });
  const b = createClient({ url });
  await a.connect();
  await b.connect();
  await a.executeIsolated(async (iso) => {
    await iso.watch('{nr}w');
    await b.set('{nr}w', 'theirs');
    const err = await iso.multi().set('{nr}w', 'mine').exec().then(() => null, (e) => e);
    check(err && err.constructor && err.constructor.name === 'WatchError',
          `node-redis: a changed WATCHed key aborts (${err && err.constructor.name})`);
  });
  check((await b.get('{nr}w')) === 'theirs', 'node-redis: the aborted transaction wrote nothing');
  await a.quit();
  await b.quit();
  await c.quit();
}

async function ioRedis() {
  console.log('== ioredis: multi() on a cluster');
  const c = new IORedis.Cluster([{ host: '127.0.0.1', port }], { lazyConnect: true });
  await c.connect();
  await c.del('{io}n');
  const res = await c.multi().set('{io}a', '1').incr('{io}n').incr('{io}n').get('{io}a').exec();
  check(JSON.stringify(res) === JSON.stringify([[null, 'OK'], [null, 1], [null, 2], [null, '1']]),
        `ioredis multi: ${JSON.stringify(res)}`);
  check(await rejects(c.multi().set('{io}a', 'x').set('{other}b', 'y').exec()),
        'ioredis multi across slots fails');
  check((await c.get('{io}a')) === '1', 'a failed ioredis multi wrote nothing');

  console.log('== ioredis: WATCH');
  const [host, p] = c.slots[keySlot('{io}w')][0].split(':');
  const w = new IORedis({ host, port: Number(p) });
  const other = new IORedis({ host, port: Number(p) });
  await w.watch('{io}w');
  await other.set('{io}w', 'theirs');
  const out = await w.multi().set('{io}w', 'mine').exec();
  check(out === null, `ioredis: a changed WATCHed key aborts (exec gave ${JSON.stringify(out)})`);
  check((await other.get('{io}w')) === 'theirs', 'ioredis: the aborted transaction wrote nothing');
  w.disconnect();
  other.disconnect();
  c.disconnect();
}

(async () => {
  try {
    await nodeRedis();
    await ioRedis();
  } catch (e) {
    failures.push(String(e && e.stack));
    console.log('FAIL:', e && e.stack);
  }
  if (failures.length) {
    console.log(`${failures.length} failure(s)`);
    process.exit(1);
  }
  console.log('all Node.js client checks passed');
  process.exit(0);
})();
