/*
 * fuzz_config.c - the YAML configuration loader on arbitrary input: an
 * error naming the problem, or a configuration, never a crash or a leak.
 */
#include <stdint.h>
#include <stdlib.h>

#include "server/config.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    config *cfg = malloc(sizeof(*cfg));
    if (!cfg)
        return 0;
    config_defaults(cfg);
    char err[CONFIG_ERR_MAX];
    if (config_load_buffer(cfg, (const char *)data, size, "fuzz", err, sizeof(err)) == 0)
        (void)config_check(cfg, err, sizeof(err));
    free(cfg);
    return 0;
}
