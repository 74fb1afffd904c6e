"""Transactions on the shards' Redis Cluster ports (test_cluster_tx.sh).

python3-redis against one trellis shard: the default pipeline() (MULTI/EXEC)
and transaction() of a plain client on the shard that owns a slot, WATCH,
CROSSSLOT and MOVED inside MULTI, errors of commands inside EXEC, atomicity
under concurrent transactions; and RedisCluster's pipeline across slots.

Usage: test_cluster_tx.py PORT (any shard's RESP port)
"""
import sys
import threading

import redis
from redis.cluster import RedisCluster

PORT = int(sys.argv[1])
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)


def raises(fn, exc, text=None):
    try:
        fn()
    except exc as e:
        return text is None or text in str(e)
    except Exception as e:  # the wrong error
        print("  raised", type(e).__name__, e, flush=True)
        return False
    return False


rc = RedisCluster(host="127.0.0.1", port=PORT, socket_timeout=10)


def owner(key):
    node = rc.get_node_from_key(key)
    return node.host, node.port


def plain(key):
    host, port = owner(key)
    return redis.Redis(host=host, port=port, socket_timeout=10)


# A key of another slot on the same shard as "{tx}", and one on another shard.
T = "{tx}"
home = owner(T + "a")
same_shard = other_shard = None
for i in range(100000):
    k = "k%d" % i
    if rc.keyslot(k) == rc.keyslot(T):
        continue
    if owner(k) == home:
        same_shard = same_shard or k
    else:
        other_shard = other_shard or k
    if same_shard and other_shard:
        break
check(same_shard and other_shard, "keys of other slots found")

r = plain(T + "a")
r2 = plain(T + "a")
r.delete(T + "a", T + "n", T + "s", T + "w", T + "c", T + "str")

print("== pipeline(): MULTI/EXEC on one slot", flush=True)
p = r.pipeline()  # transaction=True: MULTI ... EXEC
p.set(T + "a", "1").incr(T + "n").incr(T + "n").incrby(T + "n", 5).decr(T + "n")
p.sadd(T + "s", "x", "y").sadd(T + "s", "y", "z").smembers(T + "s")
p.get(T + "a").exists(T + "a", T + "n", T + "nope").ping()
res = p.execute()
want = [True, 1, 2, 7, 6, 2, 1, {b"x", b"y", b"z"}, b"1", 2, True]
check(res == want, "pipeline results %r, expected %r" % (res, want))
check(r.get(T + "n") == b"6", "counter after the transaction: %r" % r.get(T + "n"))

print("== empty transaction, DISCARD, errors of the MULTI protocol", flush=True)
check(r.pipeline().execute() == [], "an empty pipeline")
conn = r.connection_pool.get_connection("MULTI")
try:

    def cmd(*args):
        conn.send_command(*args)
        try:
            return conn.read_response()
        except redis.ResponseError as e:
            return "ERR:" + str(e)

    check(cmd("MULTI") == b"OK", "MULTI")
    check(cmd("EXEC") == [], "MULTI then EXEC: an empty array")
    check(cmd("EXEC").startswith("ERR:EXEC without MULTI"), "EXEC without MULTI")
    check(cmd("DISCARD").startswith("ERR:DISCARD without MULTI"), "DISCARD without MULTI")
    check(cmd("MULTI") == b"OK", "MULTI")
    check(cmd("MULTI").startswith("ERR:MULTI calls can not be nested"), "nested MULTI")
    check(cmd("WATCH", T + "a").startswith("ERR:WATCH inside MULTI"), "WATCH inside MULTI")
    check(cmd("SET", T + "a", "discarded") == b"QUEUED", "SET queued")
    check(cmd("DISCARD") == b"OK", "DISCARD")
    check(r.get(T + "a") == b"1", "a discarded SET did not run")
    check(cmd("MULTI") == b"OK", "MULTI")
    check(cmd("SET", T + "a", "aborted") == b"QUEUED", "SET queued")
    check(cmd("NOSUCHCOMMAND").startswith("ERR:unknown command"), "unknown command queued")
    check(cmd("GET").startswith("ERR:wrong number of arguments"), "arity inside MULTI")
    check(cmd("EXEC").startswith("ERR:Transaction discarded"), "EXECABORT")
    check(r.get(T + "a") == b"1", "an aborted transaction ran nothing")
finally:
    r.connection_pool.release(conn)

print("== errors inside EXEC are replies in their place", flush=True)
p = r.pipeline()
p.set(T + "str", "foo").incr(T + "str").get(T + "str").incrby(T + "n", 1)
res = p.execute(raise_on_error=False)
check(res[0] is True and isinstance(res[1], redis.ResponseError) and res[2] == b"foo"
      and res[3] == 7, "results with an error inside: %r" % res)

print("== CROSSSLOT and MOVED inside MULTI", flush=True)
p = r.pipeline()
p.set(T + "a", "cross").set(same_shard, "cross")
check(raises(p.execute, redis.ResponseError, "CROSSSLOT"), "two slots in one transaction")
check(r.get(T + "a") == b"1" and r.get(same_shard) is None, "a CROSSSLOT transaction ran nothing")
p = r.pipeline()
p.set(T + "a", "moved").set(other_shard, "moved")
check(raises(p.execute, redis.ResponseError), "a key of another shard inside MULTI")
check(r.get(T + "a") == b"1", "a transaction with a MOVED command ran nothing")
p = r.pipeline()
p.mset({T + "a": "x", same_shard: "y"})
check(raises(p.execute, redis.ResponseError, "CROSSSLOT"), "MSET across slots inside MULTI")

print("== WATCH", flush=True)
with r.pipeline() as p:
    p.watch(T + "w")
    check(p.get(T + "w") is None, "watched key missing")
    p.multi()
    p.set(T + "w", "mine")
    check(p.execute() == [True], "WATCH of an unchanged key: the transaction runs")
with r.pipeline() as p:
    p.watch(T + "w")
    r2.set(T + "w", "theirs")  # another client changes it before EXEC
    p.multi()
    p.set(T + "w", "mine again")
    check(raises(p.execute, redis.WatchError), "WATCH of a changed key aborts")
check(r.get(T + "w") == b"theirs", "the aborted transaction did not write")
with r.pipeline() as p:
    p.watch(T + "w")
    r2.expire(T + "w", 100)  # a deadline is a change too
    p.multi()
    p.get(T + "w")
    check(raises(p.execute, redis.WatchError), "WATCH sees an EXPIRE")
with r.pipeline() as p:
    p.watch(T + "w", T + "gone")
    p.unwatch()
    r2.set(T + "w", "after unwatch")
    p.multi()
    p.get(T + "w")
    check(p.execute() == [b"after unwatch"], "UNWATCH forgets the keys")
with r.pipeline() as p:  # a watched key that another client creates
    p.watch(T + "new")
    r2.incr(T + "new")
    p.multi()
    p.incr(T + "new")
    check(raises(p.execute, redis.WatchError), "WATCH of a key created meanwhile")
check(raises(lambda: r.execute_command("WATCH", T + "a", same_shard), redis.ResponseError,
             "CROSSSLOT"), "WATCH of keys of two slots")
check(raises(lambda: r.execute_command("WATCH", other_shard), redis.ResponseError, "MOVED"),
      "WATCH of a key of another shard")

print("== transaction(): optimistic retry", flush=True)
r.set(T + "c", 10)
calls = [0]


def bump(pipe):
    calls[0] += 1
    v = int(pipe.get(T + "c"))
    if calls[0] == 1:
        r2.set(T + "c", 100)  # spoils the first attempt
    pipe.multi()
    pipe.set(T + "c", v + 1)


r.transaction(bump, T + "c")
check(calls[0] == 2 and r.get(T + "c") == b"101",
      "transaction(): %d calls, value %r" % (calls[0], r.get(T + "c")))

print("== atomicity: concurrent transactions never interleave", flush=True)
bad = []


def worker():
    c = plain(T + "a")
    for _ in range(150):
        p = c.pipeline()
        a, b = p.incr(T + "x").incr(T + "y").execute()
        if a != b:
            bad.append((a, b))


r.delete(T + "x", T + "y")
ths = [threading.Thread(target=worker) for _ in range(6)]
for t in ths:
    t.start()
for t in ths:
    t.join()
check(not bad, "interleaved transactions: %r" % bad[:5])
check(r.get(T + "x") == b"900" and r.get(T + "y") == b"900",
      "counters after the transactions: %r %r" % (r.get(T + "x"), r.get(T + "y")))

print("== RedisCluster: pipeline across slots", flush=True)
pc = rc.pipeline()
for i in range(300):
    pc.set("pipe:%d" % i, i)
check(all(pc.execute()), "RedisCluster pipeline of 300 SETs")
pc = rc.pipeline()
for i in range(300):
    pc.get("pipe:%d" % i)
got = pc.execute()
check(got == [str(i).encode() for i in range(300)], "RedisCluster pipeline read back")

if failures:
    print("%d failure(s)" % len(failures))
    sys.exit(1)
print("all transaction checks passed")
