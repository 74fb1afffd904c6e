/*
 * fuzz_router.c - the router's request path: decode -> validate -> merge
 * into the membership lattice / answer ring, lookup, stats and command
 * requests -> encode the reply. State carries over between inputs.
 */
#include <stdint.h>
#include <stdlib.h>

#include <nng/nng.h>

#include "server/config.h"
#include "fuzz.h"
#include "base/log.h"
#include "routing/route.h"

static router *fz_router;
static config fz_cfg;

static void on_reply(void *arg, nng_msg *m)
{
    (void)arg;
    nng_msg_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fz_router) {
        log_set_level(LOG_LVL_OFF);
        config_defaults(&fz_cfg);
        fz_cfg.limits.max_message_bytes = 1 << 20;
        if (router_open_detached(&fz_cfg, on_reply, NULL, &fz_router) != 0)
            abort();
    }
    nng_msg *m;
    if (nng_msg_alloc(&m, 0) != 0)
        return 0;
    nng_msg_header_append_u32(m, 0x80000001u);
    nng_msg_append(m, data, size);
    router_feed(fz_router, m);
    return 0;
}
