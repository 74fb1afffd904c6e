"""test_malformed.py - malformed RESP against the gateway: bad and huge
lengths, truncated frames, random bytes fed in random pieces. Each input
gets an error reply or a closed connection (a truncated frame may also just
wait for the rest); the gateway keeps answering and its memory stays
bounded.

usage: python3 test_malformed.py PORT PID SEED [cluster]
(prints "N checks, M failures"). With "cluster", PORT is a shard's Redis
Cluster port and PID its node's: the keys written are ones it serves.
"""
import os
import random
import socket
import sys
import time

port, pid, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
cluster = len(sys.argv) > 4 and sys.argv[4] == "cluster"
rng = random.Random(seed)
checks = 0
failures = 0


def fail(msg):
    global failures
    failures += 1
    print(f"FAIL: {msg}", file=sys.stderr)


def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def exchange(data, wait=2.0, chunks=None):
    """Sends data (in the given pieces), returns (reply bytes, how it ended)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    out = b""
    try:
        for piece in chunks or [data]:
            s.sendall(piece)
        s.settimeout(wait)
        while True:
            b = s.recv(65536)
            if not b:
                return out, "closed"
            out += b
    except socket.timeout:
        return out, "open"
    except (ConnectionResetError, BrokenPipeError):
        return out, "reset"
    finally:
        s.close()


def alive():
    out, _ = exchange(b"*1\r\n$4\r\nPING\r\n", wait=0.5)
    return out.startswith(b"+PONG\r\n")


def expect_error_and_close(name, data, text):
    global checks
    checks += 1
    out, how = exchange(data)
    if not out.startswith(b"-ERR Protocol error") or text.encode() not in out or how == "open":
        fail(f"{name}: got {out[:120]!r} ({how})")
    if not alive():
        fail(f"{name}: the gateway stopped answering")


# The key the byte-by-byte check writes: on a shard's port one it serves
# (another answers -MOVED).
split = b"split"
for i in range(2000 if cluster else 0):
    k = b"split%d" % i
    out, _ = exchange(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(k), k), wait=0.5)
    if not out.startswith(b"-MOVED"):
        split = k
        break

rss0 = rss_kib()

expect_error_and_close("bulk length over the limit", b"*2\r\n$3\r\nGET\r\n$999999999\r\n",
                       "invalid bulk length")
expect_error_and_close("huge bulk length", b"*1\r\n$9223372036854775807\r\n", "invalid bulk")
expect_error_and_close("bulk length overflow", b"*1\r\n$99999999999999999999\r\n", "bulk")
expect_error_and_close("negative bulk length", b"*1\r\n$-5\r\n", "invalid bulk length")
expect_error_and_close("array length over the limit", b"*1048577\r\n", "invalid multibulk length")
expect_error_and_close("huge array length", b"*9223372036854775807\r\n", "multibulk length")
expect_error_and_close("not a number", b"*x\r\n", "invalid multibulk length")
expect_error_and_close("leading zero", b"*01\r\n", "invalid multibulk length")
expect_error_and_close("no dollar", b"*1\r\n:5\r\n", "expected '$'")
expect_error_and_close("no CRLF after data", b"*1\r\n$4\r\nPINGxx", "CRLF")
expect_error_and_close("LF without CR", b"*1\n$4\r\nPING\r\n", "")
expect_error_and_close("endless header", b"*" + b"1" * 100, "count string")
expect_error_and_close("endless inline line", b"GET " + b"a" * 70000, "too big inline request")
expect_error_and_close("unbalanced quotes", b'SET "a b\r\n', "unbalanced quotes")
expect_error_and_close("closing quote then text", b'SET "a"b c\r\n', "unbalanced quotes")
expect_error_and_close("command over limits.max_message_bytes",
                       b"*11\r\n$4\r\nMSET\r\n" + (b"$1\r\nk\r\n$1000000\r\n" + b"v" * 1000000
                                                     + b"\r\n") * 5, "command longer than")

# Replies before the error still arrive, in order.
checks += 1
out, how = exchange(b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n*1\r\n$-3\r\n")
if not out.startswith(b"+PONG\r\n$2\r\nhi\r\n-ERR Protocol error") or how == "open":
    fail(f"replies before a protocol error: {out!r} ({how})")

# Empty arrays and empty lines are skipped, as Redis does.
checks += 1
out, how = exchange(b"*0\r\n\r\n*-1\r\n*1\r\n$4\r\nPING\r\n", wait=0.5)
if out != b"+PONG\r\n":
    fail(f"empty arrays and lines: {out!r}")

# A command split at every byte still parses.
checks += 1
cmd = (b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$11\r\nhello world\r\n*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n"
       % (len(split), split, len(split), split))
out, how = exchange(cmd, wait=1.0, chunks=[cmd[i:i + 1] for i in range(len(cmd))])
if out != b"+OK\r\n$11\r\nhello world\r\n":
    fail(f"byte by byte: {out!r}")

# Truncated frames wait for the rest; closing them costs nothing.
for frame in [b"*2\r\n$3\r\nGET\r\n$10\r\nabc", b"*3\r\n", b"*1\r\n$4", b"GET k"]:
    checks += 1
    out, how = exchange(frame, wait=0.3)
    if out and not out.startswith(b"-"):
        fail(f"truncated {frame!r}: {out!r}")

# Announced but never sent: many connections each announce a large value
# and send part of it; memory stays within what the limits allow.
socks = []
for i in range(64):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$1048576\r\n" + b"z" * 200000)
    socks.append(s)
time.sleep(0.5)
checks += 1
peak = rss_kib()
if peak - rss0 > 64 * 1100 + 200 * 1024:
    fail(f"64 partial 1 MiB values: RSS grew from {rss0} to {peak} KiB")
for s in socks:
    s.close()

# Random bytes in random pieces, and random mutations of valid commands.
valid = [b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n", b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
         b"*3\r\n$4\r\nSADD\r\n$1\r\ns\r\n$1\r\nm\r\n", b"PING\r\n", b"INCR c\r\n"]
for i in range(300):
    if i % 2:
        data = bytearray(rng.choice(valid) * rng.randint(1, 5))
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = bytes(data)
    else:
        data = rng.randbytes(rng.randint(1, 4096))
    pieces, at = [], 0
    while at < len(data):
        n = rng.randint(1, 512)
        pieces.append(data[at:at + n])
        at += n
    checks += 1
    try:
        out, how = exchange(data, wait=0.05, chunks=pieces)
    except OSError as e:
        fail(f"random input {i}: {e}")
        continue
    if out and out[:1] not in b"+-:$*_%~":
        fail(f"random input {i}: reply {out[:60]!r}")
    if i % 50 == 0 and not alive():
        fail(f"random input {i}: the gateway stopped answering")

checks += 1
if not alive():
    fail("the gateway stopped answering")
rss1 = rss_kib()
print(f"RSS of pid {pid}: {rss0} KiB before, {peak} KiB at the peak, {rss1} KiB after")
if rss1 - rss0 > 128 * 1024:
    fail(f"RSS grew from {rss0} to {rss1} KiB")
print(f"{checks} checks, {failures} failures")
sys.exit(1 if failures else 0)
