/*
 * test_nng_close.c - closing sockets while their peers keep sending, over
 * tcp:// and tls+tcp://, must never wedge the process.
 *
 * nng 1.5.2 as Debian ships it has a close race (deploy/nng/ holds the
 * project's fix, docs/operations.md says why nng is built from source): when
 * a message header arrives while a pipe closes, the transport starts the body
 * read on its already closed receive aio, nni_aio_begin refuses it without
 * completing anything, and the protocol's receive on that pipe never
 * finishes. The pipe's teardown on nng's single reaper thread then waits for
 * it for ever, every later teardown in the process queues behind it, and
 * nng_close never returns.
 *
 * Here several push sockets listen and send without pause; a pull socket
 * dials them all, keeps receives outstanding on every pipe, and is closed
 * while messages flow, over and over, for a bounded time per transport. A
 * watchdog thread ends the process with a failure when one step (a dial, the
 * first messages, a close) has not finished within STEP_DEADLINE_MS, so a
 * wedged close fails the test instead of hanging the suite. Built against
 * Debian's libnng1 this fails within its first few closes, over either
 * transport; with the project's nng it passes.
 *
 * A plain executable (its own main): the hang it looks for cannot be
 * recovered from inside the process, only reported.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>
#include <nng/supplemental/tls/tls.h>

#include "tproc.h"

#define SENDERS          4     /* push sockets, so one close tears down 4 pipes */
#define RECEIVES         8     /* receives kept outstanding on the pull socket */
#define MSG_BYTES        48    /* small, so that headers arrive often */
#define MSGS_BEFORE      16    /* messages received before a close */
#define MIN_ROUNDS       10    /* closes per transport at least */
#define MAX_ROUNDS       600   /* closes per transport at most, */
#define ROUND_BUDGET_MS  4000  /* or as many as fit in this time */
#define STEP_DEADLINE_MS 10000 /* a close takes milliseconds; 10 s is a hang */

/* What the main thread is doing, for the watchdog. */
static _Atomic uint64_t step_since_ms; /* 0 while idle */
static _Atomic(const char *) step_name;
static _Atomic int step_round;
static _Atomic(const char *) step_transport = "";

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void step_begin(const char *name)
{
    atomic_store(&step_name, name);
    atomic_store(&step_since_ms, now_ms());
}

static void step_end(void)
{
    atomic_store(&step_since_ms, 0);
}

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

/* Ends the process when a step outlives its deadline: a wedged nng_close
 * cannot be undone, and exit() would wait on nng's threads, hence _exit. */
static void *watchdog(void *arg)
{
    (void)arg;
    for (;;) {
        uint64_t since = atomic_load(&step_since_ms);
        if (since != 0 && now_ms() - since > STEP_DEADLINE_MS) {
            const char *name = atomic_load(&step_name);
            fprintf(stderr, "FAIL: %s: '%s' has not finished after %d ms in round %d%s\n",
                    atomic_load(&step_transport), name, STEP_DEADLINE_MS, atomic_load(&step_round),
                    strncmp(name, "nng_close", 9) == 0
                        ? ": the close is wedged (a receive on a closed pipe never finished)"
                        : "");
            fflush(stderr);
            _exit(1);
        }
        usleep(50 * 1000);
    }
    return NULL;
}

typedef struct sender {
    nng_socket sock;
    char url[128];
    pthread_t thread;
    atomic_int stop;
} sender;

/* Sends MSG_BYTES messages as fast as the pipe takes them until stopped. A
 * send times out while no receiver is connected. */
static void *sender_main(void *arg)
{
    sender *s = arg;
    char buf[MSG_BYTES];
    memset(buf, 'x', sizeof(buf));
    while (!atomic_load(&s->stop)) {
        int rv = nng_send(s->sock, buf, sizeof(buf), 0);
        if (rv != 0 && rv != NNG_ETIMEDOUT) {
            break;
        }
    }
    return NULL;
}

/* The receiving side of one round: RECEIVES aios that re-arm themselves
 * until the socket is about to close. No receive is started once the close
 * began: nng 1.5.2's pull socket would queue it after its close flushed the
 * queue, and never finish it (a separate defect from the one tested here). */
typedef struct receiver {
    nng_socket sock;
    nng_aio *aio[RECEIVES];
    atomic_int got;
    pthread_mutex_t mtx;
    int closing; /* under mtx */
} receiver;

typedef struct rx_slot {
    receiver *r;
    int i;
} rx_slot;

static rx_slot slots[RECEIVES];

static void receiver_cb(void *arg)
{
    rx_slot *slot = arg;
    receiver *r = slot->r;
    nng_aio *aio = r->aio[slot->i];
    if (nng_aio_result(aio) != 0) {
        return; /* the socket closed */
    }
    nng_msg_free(nng_aio_get_msg(aio));
    atomic_fetch_add(&r->got, 1);
    pthread_mutex_lock(&r->mtx);
    if (!r->closing) {
        nng_recv_aio(r->sock, aio);
    }
    pthread_mutex_unlock(&r->mtx);
}

/* TLS configurations for the transport, or NULL for tcp. */
typedef struct transport {
    const char *name;
    const char *scheme;
    nng_tls_config *server;
    nng_tls_config *client;
} transport;

static void check(int rv, const char *what)
{
    if (rv != 0) {
        fail("%s: %s: %s", atomic_load(&step_transport), what, nng_strerror(rv));
    }
}

static void senders_start(const transport *t, sender *s)
{
    for (int i = 0; i < SENDERS; i++) {
        nng_listener l;
        char url[64];
        int port = 0;
        snprintf(url, sizeof(url), "%s://127.0.0.1:0", t->scheme);
        check(nng_push0_open(&s[i].sock), "nng_push0_open");
        check(nng_socket_set_ms(s[i].sock, NNG_OPT_SENDTIMEO, 50), "NNG_OPT_SENDTIMEO");
        check(nng_listener_create(&l, s[i].sock, url), "nng_listener_create");
        if (t->server != NULL) {
            check(nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, t->server), "NNG_OPT_TLS_CONFIG");
        }
        check(nng_listener_start(l, 0), "nng_listener_start");
        check(nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port), "NNG_OPT_TCP_BOUND_PORT");
        snprintf(s[i].url, sizeof(s[i].url), "%s://127.0.0.1:%d", t->scheme, port);
        atomic_store(&s[i].stop, 0);
        if (pthread_create(&s[i].thread, NULL, sender_main, &s[i]) != 0) {
            fail("pthread_create");
        }
    }
}

static void senders_stop(sender *s)
{
    for (int i = 0; i < SENDERS; i++) {
        atomic_store(&s[i].stop, 1);
    }
    for (int i = 0; i < SENDERS; i++) {
        pthread_join(s[i].thread, NULL);
        step_begin("nng_close of a sender");
        nng_close(s[i].sock);
        step_end();
    }
}

/* One round: dial every sender, receive until messages flow on the pipes,
 * close the socket while they keep arriving. */
static void round_once(const transport *t, const sender *s)
{
    receiver r = {.mtx = PTHREAD_MUTEX_INITIALIZER};
    check(nng_pull0_open(&r.sock), "nng_pull0_open");
    step_begin("nng_dialer_start");
    for (int i = 0; i < SENDERS; i++) {
        nng_dialer d;
        check(nng_dialer_create(&d, r.sock, s[i].url), "nng_dialer_create");
        if (t->client != NULL) {
            check(nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, t->client), "NNG_OPT_TLS_CONFIG");
        }
        check(nng_dialer_start(d, 0), "nng_dialer_start");
    }
    for (int i = 0; i < RECEIVES; i++) {
        slots[i] = (rx_slot){&r, i};
        check(nng_aio_alloc(&r.aio[i], receiver_cb, &slots[i]), "nng_aio_alloc");
        nng_recv_aio(r.sock, r.aio[i]);
    }
    step_begin("receiving the first messages");
    while (atomic_load(&r.got) < MSGS_BEFORE) {
        usleep(200);
    }
    pthread_mutex_lock(&r.mtx);
    r.closing = 1;
    pthread_mutex_unlock(&r.mtx);
    step_begin("nng_close while the peers send");
    nng_close(r.sock);
    for (int i = 0; i < RECEIVES; i++) {
        nng_aio_free(r.aio[i]);
    }
    step_end();
    pthread_mutex_destroy(&r.mtx);
}

static void run_transport(const transport *t)
{
    sender s[SENDERS];
    atomic_store(&step_transport, t->name);
    senders_start(t, s);
    uint64_t start = now_ms();
    int rounds = 0;
    while (rounds < MIN_ROUNDS || (rounds < MAX_ROUNDS && now_ms() - start < ROUND_BUDGET_MS)) {
        atomic_store(&step_round, rounds);
        round_once(t, s);
        rounds++;
    }
    senders_stop(s);
    printf("%s: %d sockets closed while %d peers sent, each close returned (%llu ms)\n", t->name,
           rounds, SENDERS, (unsigned long long)(now_ms() - start));
}

/* Reads a whole file into a NUL-terminated buffer (free it). */
static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fail("cannot open %s", path);
    }
    char *buf = malloc(65536);
    size_t n = buf != NULL ? fread(buf, 1, 65535, f) : 0;
    fclose(f);
    if (n == 0) {
        fail("cannot read %s", path);
    }
    buf[n] = '\0';
    return buf;
}

/* A TLS server configuration with a fresh self-signed RSA certificate for
 * 127.0.0.1, made by the openssl command in dir (the files are removed). */
static nng_tls_config *server_tls(const char *dir)
{
    char cert[4200], key[4200], log[4200];
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    snprintf(log, sizeof(log), "%s/openssl.log", dir);
    char *argv[] = {"/usr/bin/openssl", "req",   "-x509", "-newkey", "rsa:2048",
                    "-nodes",           "-days", "2",     "-subj",   "/CN=127.0.0.1",
                    "-keyout",          key,     "-out",  cert,      NULL};
    tproc *p = NULL;
    if (tproc_spawn(argv, log, &p) != 0) {
        fail("cannot run /usr/bin/openssl (Debian: openssl)");
    }
    step_begin("openssl req");
    while (tproc_running(p)) {
        usleep(10 * 1000);
    }
    step_end();
    int st = tproc_status(p);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        tproc_dump_log(p, "openssl", 20);
        fail("openssl req failed");
    }
    tproc_free(p);
    char *cert_pem = read_file(cert);
    char *key_pem = read_file(key);
    nng_tls_config *cfg;
    check(nng_tls_config_alloc(&cfg, NNG_TLS_MODE_SERVER), "nng_tls_config_alloc");
    check(nng_tls_config_own_cert(cfg, cert_pem, key_pem, NULL), "nng_tls_config_own_cert");
    free(cert_pem);
    free(key_pem);
    unlink(cert);
    unlink(key);
    unlink(log);
    return cfg;
}

/* usage: test_nng_close [tcp|tls]  (both when no argument is given) */
int main(int argc, char **argv)
{
    pthread_t wd;
    char dir[] = "/tmp/trellis-nng-close-XXXXXX";

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (pthread_create(&wd, NULL, watchdog, NULL) != 0 || pthread_detach(wd) != 0) {
        fail("watchdog thread");
    }
    printf("nng %s, TLS engine %s\n", nng_version(), nng_tls_engine_name());

    int want_tcp = argc < 2 || strcmp(argv[1], "tcp") == 0;
    int want_tls = argc < 2 || strcmp(argv[1], "tls") == 0;
    if (!want_tcp && !want_tls) {
        fail("usage: %s [tcp|tls]", argv[0]);
    }
    if (want_tcp) {
        transport tcp = {.name = "tcp", .scheme = "tcp"};
        run_transport(&tcp);
    }
    if (!want_tls) {
        goto done;
    }

    if (mkdtemp(dir) == NULL) {
        fail("mkdtemp");
    }
    transport tls = {.name = "tls+tcp", .scheme = "tls+tcp"};
    atomic_store(&step_transport, tls.name);
    tls.server = server_tls(dir);
    rmdir(dir);
    check(nng_tls_config_alloc(&tls.client, NNG_TLS_MODE_CLIENT), "nng_tls_config_alloc");
    check(nng_tls_config_auth_mode(tls.client, NNG_TLS_AUTH_MODE_NONE), "auth mode");
    run_transport(&tls);
    nng_tls_config_free(tls.server);
    nng_tls_config_free(tls.client);

done:
    step_begin("nng_fini");
    nng_fini();
    step_end();
    printf("1 passed, 0 failed\n");
    return 0;
}
