/*
 * tframe.c - the tests' blocking data-plane client (tframe.h).
 */
#include "tframe.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct tframe {
    int fd;
    uint64_t next_id;
    uint8_t *buf; /* received, not yet returned */
    size_t len, cap;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int tframe_connect(const char *host, int port, tframe **out)
{
    *out = NULL;
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    struct addrinfo hints = {0}, *ai;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, ps, &hints, &ai) != 0)
        return TRELLIS_UNAVAILABLE;
    int fd = -1;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0)
        return TRELLIS_UNAVAILABLE;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct timeval tv = {TFRAME_TIMEOUT_MS / 1000, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    tframe *t = calloc(1, sizeof(*t));
    t->fd = fd;
    t->next_id = 1;
    *out = t;
    return TRELLIS_OK;
}

int tframe_connect_url(const char *url, tframe **out)
{
    *out = NULL;
    if (strncmp(url, "tcp://", 6) != 0)
        return TRELLIS_INVALID;
    const char *h = url + 6, *colon = strrchr(h, ':');
    if (!colon)
        return TRELLIS_INVALID;
    char host[256];
    size_t hl = (size_t)(colon - h);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl == 0 || hl >= sizeof(host))
        return TRELLIS_INVALID;
    memcpy(host, h, hl);
    host[hl] = '\0';
    int port = atoi(colon + 1);
    return port > 0 ? tframe_connect(host, port, out) : TRELLIS_INVALID;
}

int tframe_connect_node(const ring *r, int node, uint32_t shard, tframe **out)
{
    char host[256];
    int port;
    const ring_node *rn = ring_node_at(r, (size_t)node);
    if (ring_shard_data_addr(rn, shard, host, sizeof(host), &port, NULL) != TRELLIS_OK)
        return TRELLIS_INVALID;
    return tframe_connect(host, port, out);
}

int tframe_connect_key(const ring *r, int tier, size_t nth, const void *key, size_t klen,
                       tframe **out)
{
    int idx[RING_MAX_REPLICAS];
    size_t n = ring_replicas(r, RING_CURRENT, tier, key, klen, idx, RING_MAX_REPLICAS);
    if (nth >= n)
        return TRELLIS_NOT_FOUND;
    const ring_node *rn = ring_node_at(r, (size_t)idx[nth]);
    return tframe_connect_node(r, idx[nth], ring_local_shard(key, klen, rn->shards), out);
}

void tframe_close(tframe *t)
{
    if (!t)
        return;
    close(t->fd);
    free(t->buf);
    free(t);
}

int tframe_send_raw(tframe *t, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = send(t->fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return TRELLIS_UNAVAILABLE;
        b += w;
        n -= (size_t)w;
    }
    return TRELLIS_OK;
}

int tframe_hello(tframe *t, uint64_t id, const char *token)
{
    size_t tl = token ? strlen(token) : 0;
    uint8_t buf[FRAME_HEADER_SIZE + 512];
    frame_header h = {.kind = FRAME_HELLO, .length = (uint32_t)tl, .id = id};
    frame_header_encode(&h, buf);
    memcpy(buf + FRAME_HEADER_SIZE, token, tl);
    return tframe_send_raw(t, buf, FRAME_HEADER_SIZE + tl);
}

int tframe_request(tframe *t, uint64_t id, uint64_t epoch, unsigned flags, const tframe_op *ops,
                   size_t n)
{
    size_t body = 0;
    for (size_t i = 0; i < n; i++)
        body += frame_op_size(ops[i].klen, ops[i].vlen);
    uint8_t *buf = malloc(FRAME_HEADER_SIZE + body), *p = buf + FRAME_HEADER_SIZE;
    frame_header h = {.kind = FRAME_REQUEST,
                      .length = (uint32_t)body,
                      .id = id,
                      .epoch = epoch,
                      .count = (uint32_t)n,
                      .flags = (uint16_t)flags};
    frame_header_encode(&h, buf);
    for (size_t i = 0; i < n; i++) {
        p = frame_put_op_header(p, ops[i].op, ops[i].type, ops[i].klen, ops[i].vlen);
        memcpy(p, ops[i].key, ops[i].klen);
        p += ops[i].klen;
        if (ops[i].vlen)
            memcpy(p, ops[i].value, ops[i].vlen);
        p += ops[i].vlen;
    }
    int rc = tframe_send_raw(t, buf, FRAME_HEADER_SIZE + body);
    free(buf);
    return rc;
}

/* Reads until at least `want` bytes are buffered, or the deadline. */
static int fill(tframe *t, size_t want, uint64_t deadline)
{
    while (t->len < want) {
        if (t->cap < want) {
            size_t cap = want > 65536 ? want : 65536;
            t->buf = realloc(t->buf, cap);
            t->cap = cap;
        }
        uint64_t now = now_ms();
        if (now >= deadline)
            return TRELLIS_TIMEOUT;
        struct pollfd pf = {t->fd, POLLIN, 0};
        int pr = poll(&pf, 1, (int)(deadline - now));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            return TRELLIS_TIMEOUT;
        ssize_t r = recv(t->fd, t->buf + t->len, t->cap - t->len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return TRELLIS_UNAVAILABLE;
        t->len += (size_t)r;
    }
    return TRELLIS_OK;
}

/* Reads what the socket holds now, without waiting. */
static int fill_now(tframe *t)
{
    for (;;) {
        if (t->cap - t->len < 16384) {
            size_t cap = t->cap ? t->cap * 2 : 65536;
            t->buf = realloc(t->buf, cap);
            t->cap = cap;
        }
        ssize_t r = recv(t->fd, t->buf + t->len, t->cap - t->len, MSG_DONTWAIT);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return TRELLIS_OK;
        if (r <= 0)
            return TRELLIS_UNAVAILABLE;
        t->len += (size_t)r;
    }
}

static int take_frame(tframe *t, tframe_reply *out);

int tframe_recv(tframe *t, int timeout_ms, tframe_reply *out)
{
    memset(out, 0, sizeof(*out));
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    int rc = fill(t, FRAME_HEADER_SIZE, deadline);
    if (rc != TRELLIS_OK)
        return rc;
    frame_limits lim = {1u << 30, 1u << 20};
    if (frame_header_decode(t->buf, &lim, &out->h) != TRELLIS_OK)
        return TRELLIS_MALFORMED;
    size_t total = FRAME_HEADER_SIZE + out->h.length;
    if ((rc = fill(t, total, deadline)) != TRELLIS_OK)
        return rc;
    return take_frame(t, out);
}

int tframe_try_recv(tframe *t, tframe_reply *out)
{
    memset(out, 0, sizeof(*out));
    int rc = fill_now(t);
    frame_limits lim = {1u << 30, 1u << 20};
    if (t->len >= FRAME_HEADER_SIZE) {
        if (frame_header_decode(t->buf, &lim, &out->h) != TRELLIS_OK)
            return TRELLIS_MALFORMED;
        if (t->len >= FRAME_HEADER_SIZE + (size_t)out->h.length)
            return take_frame(t, out);
    }
    return rc == TRELLIS_OK ? TRELLIS_TIMEOUT : rc;
}

int tframe_fd(const tframe *t)
{
    return t->fd;
}

/* Takes the frame whose header out->h holds off the buffer. */
static int take_frame(tframe *t, tframe_reply *out)
{
    size_t total = FRAME_HEADER_SIZE + out->h.length;
    out->body = malloc(out->h.length ? out->h.length : 1);
    memcpy(out->body, t->buf + FRAME_HEADER_SIZE, out->h.length);
    memmove(t->buf, t->buf + total, t->len - total);
    t->len -= total;
    if (out->h.kind == FRAME_REPLY && out->h.status == TRELLIS_OK) {
        if (frame_check_reply(&out->h, out->body) != TRELLIS_OK) {
            tframe_reply_free(out);
            return TRELLIS_MALFORMED;
        }
        out->res = calloc(out->h.count ? out->h.count : 1, sizeof(*out->res));
        frame_iter it;
        frame_iter_init(&it, &out->h, out->body);
        while (out->nres < out->h.count && frame_next_result(&it, &out->res[out->nres]) == 1)
            out->nres++;
    }
    return TRELLIS_OK;
}

void tframe_reply_free(tframe_reply *r)
{
    free(r->body);
    free(r->res);
    memset(r, 0, sizeof(*r));
}

int tframe_call(tframe *t, const tframe_op *ops, size_t n, unsigned flags, tframe_reply *out)
{
    uint64_t id = t->next_id++;
    int rc = tframe_request(t, id, 0, flags, ops, n);
    if (rc != TRELLIS_OK)
        return rc;
    uint64_t deadline = now_ms() + TFRAME_TIMEOUT_MS;
    for (;;) {
        uint64_t now = now_ms();
        rc = tframe_recv(t, now < deadline ? (int)(deadline - now) : 0, out);
        if (rc != TRELLIS_OK)
            return rc;
        if (out->h.kind == FRAME_REPLY && out->h.id == id)
            return TRELLIS_OK;
        tframe_reply_free(out);
    }
}

int tframe_closed(tframe *t, int timeout_ms)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        t->len = 0;
        int rc = fill(t, 1, deadline);
        if (rc == TRELLIS_UNAVAILABLE)
            return 1;
        if (rc == TRELLIS_TIMEOUT)
            return 0;
    }
}
