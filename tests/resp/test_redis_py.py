"""test_redis_py.py - Debian's python3-redis against the trellis gateway:
strings, sets, counters, pipelines, binary values, concurrent counters,
and a transaction that is refused without writing anything.

usage: python3 test_redis_py.py PORT   (prints "N checks, M failures")
"""
import sys
import threading

import redis

port = int(sys.argv[1])
checks = 0
failures = 0


def check(what, got, want):
    global checks, failures
    checks += 1
    if got != want:
        failures += 1
        print(f"FAIL: {what}: got {got!r}, want {want!r}", file=sys.stderr)


def raises(what, fn, text):
    global checks, failures
    checks += 1
    try:
        fn()
    except redis.ResponseError as e:
        if text not in str(e):
            failures += 1
            print(f"FAIL: {what}: error {e!s} lacks {text!r}", file=sys.stderr)
        return
    failures += 1
    print(f"FAIL: {what}: no error", file=sys.stderr)


r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10, client_name="py-test")
check("ping", r.ping(), True)
check("client name", r.client_getname(), "py-test")
check("info", r.info("server")["redis_mode"], "standalone")

# Strings
check("set", r.set("py:s", "value"), True)
check("get", r.get("py:s"), b"value")
check("get missing", r.get("py:missing"), None)
blob = bytes(range(256)) * 4 + b"\r\n\x00end"
check("set binary", r.set("py:bin", blob), True)
check("get binary", r.get("py:bin"), blob)
big = b"x" * (512 * 1024)
check("set 512 KiB", r.set("py:big", big), True)
check("get 512 KiB", r.get("py:big"), big)
check("mset", r.mset({"py:a": "1", "py:b": "2"}), True)
check("mget", r.mget("py:a", "py:missing", "py:b"), [b"1", None, b"2"])
check("exists", r.exists("py:a", "py:b", "py:missing"), 2)
check("delete", r.delete("py:a", "py:missing"), 1)
check("type string", r.type("py:s"), b"string")
check("type none", r.type("py:a"), b"none")

# Sets
check("sadd", r.sadd("py:set", "a", "b", "c"), 3)
check("sadd again", r.sadd("py:set", "c", "d"), 1)
check("smembers", r.smembers("py:set"), {b"a", b"b", b"c", b"d"})
check("sismember", r.sismember("py:set", "b"), True)
check("sismember no", r.sismember("py:set", "z"), False)
check("scard", r.scard("py:set"), 4)
check("srem", r.srem("py:set", "a", "z"), 1)
check("smembers after srem", r.smembers("py:set"), {b"b", b"c", b"d"})
check("type set", r.type("py:set"), b"set")
raises("sadd on a string", lambda: r.sadd("py:s", "x"), "WRONGTYPE")
raises("get on a set", lambda: r.get("py:set"), "WRONGTYPE")

# Counters
check("incr", r.incr("py:n"), 1)
check("incrby", r.incrby("py:n", 41), 42)
check("decr", r.decr("py:n"), 41)
check("decrby", r.decrby("py:n", 50), -9)
check("get counter", r.get("py:n"), b"-9")
check("type counter", r.type("py:n"), b"counter")
raises("incr on a string", lambda: r.incr("py:s"), "WRONGTYPE")
raises("incrby not a number", lambda: r.execute_command("INCRBY", "py:n", "x"), "not an integer")

# Pipelines (without MULTI): replies in order.
p = r.pipeline(transaction=False)
for i in range(500):
    p.set(f"py:p:{i}", i)
for i in range(500):
    p.incr("py:pn")
for i in range(500):
    p.get(f"py:p:{i}")
p.sadd("py:pset", *[str(i) for i in range(100)])
p.scard("py:pset")
p.get("py:pset")  # WRONGTYPE, returned in place
res = p.execute(raise_on_error=False)
check("pipeline length", len(res), 1503)
check("pipeline sets", res[:500], [True] * 500)
check("pipeline incr order", res[500:1000], list(range(1, 501)))
check("pipeline gets", res[1000:1500], [str(i).encode() for i in range(500)])
check("pipeline sadd", res[1500], 100)
check("pipeline scard", res[1501], 100)
check("pipeline error in place", isinstance(res[1502], redis.ResponseError), True)

# A transaction is refused and nothing of it is written.
def transaction():
    with r.pipeline(transaction=True) as t:
        t.set("py:tx", "written")
        t.incr("py:txn")
        t.execute()
raises("MULTI", transaction, "")
check("nothing of the transaction ran", (r.get("py:tx"), r.exists("py:txn")), (None, 0))

# Concurrent increments of one counter from several connections: each
# INCR returns a value of its own.
seen = []
lock = threading.Lock()


def worker():
    c = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
    mine = [c.incr("py:shared") for _ in range(200)]
    with lock:
        seen.extend(mine)


threads = [threading.Thread(target=worker) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
check("concurrent incr: distinct values", sorted(seen), list(range(1, 801)))
check("concurrent incr: total", r.get("py:shared"), b"800")

print(f"{checks} checks, {failures} failures")
sys.exit(1 if failures else 0)
