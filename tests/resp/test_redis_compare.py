"""test_redis_compare.py - one redis-py session run against a real Redis
and against the trellis gateway, answer by answer: expiry (SET EX, EXPIRE
with its options, TTL, PTTL, PERSIST, SETEX, GETEX, a key that expires and
is written again), hashes (HSET, HGET, HGETALL, HINCRBY, HDEL and the rest)
and walks of the key space (SCAN with MATCH, COUNT and TYPE, KEYS, DBSIZE,
EXISTS, TYPE, UNLINK). The expected answers are Redis's own.

usage: python3 test_redis_compare.py REDIS_PORT TRELLIS_PORT
(prints "N checks, M failures"; exit status 1 after failures)
"""
import sys
import time

import redis

ours = redis.Redis(host="127.0.0.1", port=int(sys.argv[2]), socket_timeout=10)
theirs = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]), socket_timeout=10)
theirs.flushall()
checks = 0
failures = 0


def answer(r, fn):
    """fn(r), or the error it raised as ('error', the text's first word)."""
    try:
        return fn(r)
    except redis.ResponseError as e:
        return ("error", str(e).split(" ")[0])


def same(what, fn, close=None):
    """Runs fn on both servers; the answers must be equal (numbers within
    `close` of each other, for times that pass between the two calls)."""
    global checks, failures
    checks += 1
    want = answer(theirs, fn)
    got = answer(ours, fn)
    ok = got == want
    if not ok and close is not None and isinstance(got, int) and isinstance(want, int):
        ok = abs(got - want) <= close
    if not ok:
        failures += 1
        print(f"FAIL: {what}: trellis {got!r}, redis {want!r}", file=sys.stderr)
    return got


# ---- expiry ----------------------------------------------------------------
same("SET EX", lambda r: r.set("s:greeting", "hello", ex=100))
same("TTL", lambda r: r.ttl("s:greeting"), close=1)
same("PTTL", lambda r: r.pttl("s:greeting"), close=1000)
same("GET", lambda r: r.get("s:greeting"))
same("SET KEEPTTL", lambda r: r.set("s:greeting", "kept", keepttl=True))
same("TTL after KEEPTTL", lambda r: r.ttl("s:greeting"), close=1)
same("SET without options", lambda r: r.set("s:greeting", "plain"))
same("TTL after a plain SET", lambda r: r.ttl("s:greeting"))
same("TTL of a missing key", lambda r: r.ttl("s:missing"))
same("EXPIRE", lambda r: r.expire("s:greeting", 50))
same("EXPIRE GT, earlier", lambda r: r.expire("s:greeting", 10, gt=True))
same("EXPIRE LT, earlier", lambda r: r.expire("s:greeting", 10, lt=True))
same("EXPIRE NX with a TTL", lambda r: r.expire("s:greeting", 30, nx=True))
same("EXPIRE XX", lambda r: r.expire("s:greeting", 70, xx=True))
same("TTL after EXPIRE XX", lambda r: r.ttl("s:greeting"), close=1)
same("PERSIST", lambda r: r.persist("s:greeting"))
same("PERSIST again", lambda r: r.persist("s:greeting"))
same("EXPIRE of a missing key", lambda r: r.expire("s:missing", 5))
same("PEXPIREAT", lambda r: r.pexpireat("s:greeting", int(time.time() * 1000) + 200000))
same("TTL after PEXPIREAT", lambda r: r.ttl("s:greeting"), close=1)
same("SETEX", lambda r: r.setex("s:session", 30, "token"))
same("TTL after SETEX", lambda r: r.ttl("s:session"), close=1)
same("PSETEX", lambda r: r.psetex("s:short", 30000, "x"))
same("GETEX PERSIST", lambda r: r.getex("s:short", persist=True))
same("TTL after GETEX PERSIST", lambda r: r.ttl("s:short"))
same("GETEX EX", lambda r: r.getex("s:short", ex=40))
same("TTL after GETEX EX", lambda r: r.ttl("s:short"), close=1)
same("SET EX 0 is refused", lambda r: r.set("s:bad", "v", ex=0))
same("SET PX", lambda r: r.set("s:soon", "gone soon", px=300))
same("PEXPIRE", lambda r: r.pexpire("s:session", 300))
time.sleep(0.6)
same("GET after the deadline", lambda r: r.get("s:soon"))
same("TTL after the deadline", lambda r: r.ttl("s:session"))
same("EXISTS after the deadline", lambda r: r.exists("s:soon", "s:session", "s:greeting"))
same("SET again after the deadline", lambda r: r.set("s:soon", "back"))
same("GET of the new value", lambda r: r.get("s:soon"))
same("TTL of the new value", lambda r: r.ttl("s:soon"))

# ---- hashes ----------------------------------------------------------------
same("HSET", lambda r: r.hset("h:user", mapping={"name": "ada", "lang": "c"}))
same("HSET of an existing field", lambda r: r.hset("h:user", "lang", "go"))
same("HGET", lambda r: r.hget("h:user", "name"))
same("HGET of a missing field", lambda r: r.hget("h:user", "zip"))
same("HGET of a missing key", lambda r: r.hget("h:nobody", "name"))
same("HGETALL", lambda r: r.hgetall("h:user"))
same("HGETALL of a missing key", lambda r: r.hgetall("h:nobody"))
same("HMGET", lambda r: r.hmget("h:user", ["lang", "zip", "name"]))
same("HKEYS", lambda r: sorted(r.hkeys("h:user")))
same("HVALS", lambda r: sorted(r.hvals("h:user")))
same("HLEN", lambda r: r.hlen("h:user"))
same("HEXISTS", lambda r: r.hexists("h:user", "lang"))
same("HSTRLEN", lambda r: r.hstrlen("h:user", "name"))
same("HSETNX of an existing field", lambda r: r.hsetnx("h:user", "name", "eve"))
same("HSETNX of a new field", lambda r: r.hsetnx("h:user", "zip", "75001"))
same("HINCRBY of a new field", lambda r: r.hincrby("h:user", "visits", 5))
same("HINCRBY again", lambda r: r.hincrby("h:user", "visits", -2))
same("HSET an integer", lambda r: r.hset("h:user", "age", "36"))
same("HINCRBY of an integer field", lambda r: r.hincrby("h:user", "age", 1))
same("HINCRBY of a word", lambda r: r.hincrby("h:user", "name", 1))
same("HGET of a counter field", lambda r: r.hget("h:user", "visits"))
same("HGETALL with counters", lambda r: r.hgetall("h:user"))
same("HDEL", lambda r: r.hdel("h:user", "lang", "nope"))
same("HINCRBY after HDEL", lambda r: r.hincrby("h:user", "lang_count", 1))
same("HSCAN", lambda r: sorted(r.hscan_iter("h:user", match="[az]*")))
same("TYPE of a hash", lambda r: r.type("h:user"))
same("HGET of a string", lambda r: r.hget("s:soon", "f"))
same("GET of a hash", lambda r: r.get("h:user"))
same("EXPIRE of a hash", lambda r: r.expire("h:temp", 1) or r.hset("h:temp", "f", "v"))
same("PEXPIRE of a hash", lambda r: r.pexpire("h:temp", 200))
time.sleep(0.4)
same("HGETALL of an expired hash", lambda r: r.hgetall("h:temp"))
same("HINCRBY of an expired hash", lambda r: r.hincrby("h:temp", "n", 1))
same("DEL of a hash", lambda r: r.delete("h:user"))
same("HLEN after DEL", lambda r: r.hlen("h:user"))

# ---- the key space ---------------------------------------------------------
same("MSET", lambda r: r.mset({f"k:{i}": i for i in range(60)}))
same("HSET for SCAN TYPE", lambda r: r.hset("k:map", "f", "v"))
same("SCAN MATCH COUNT", lambda r: sorted(r.scan_iter(match="k:1*", count=7)))
same("SCAN every key", lambda r: sorted(r.scan_iter(count=5)))
same("SCAN TYPE hash", lambda r: sorted(r.scan_iter(_type="hash")))
same("SCAN TYPE string", lambda r: sorted(r.scan_iter(match="k:*", _type="string", count=100)))
same("KEYS", lambda r: sorted(r.keys("k:5?")))
same("DBSIZE", lambda r: r.dbsize())
same("EXISTS with repeats", lambda r: r.exists("k:1", "k:1", "k:2", "k:none"))
same("TYPE", lambda r: [r.type("k:1"), r.type("k:map"), r.type("k:none")])
same("UNLINK", lambda r: r.unlink("k:1", "k:2", "k:none"))
same("DBSIZE after UNLINK", lambda r: r.dbsize())
same("keyspace figures", lambda r: r.info("keyspace").get("db0", {}).get("keys"))

ours.close()
theirs.close()
print(f"{checks} checks, {failures} failures")
sys.exit(1 if failures else 0)
