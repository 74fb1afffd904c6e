/*
 * status.c - names and messages of the trellis status codes.
 */
#include "trellis/trellis_status.h"

const char *trellis_strerror(int code)
{
    switch (code) {
#define TRELLIS_STATUS_MSG(name, value, msg)                                                       \
    case value:                                                                                    \
        return msg;
        TRELLIS_STATUS_MAP(TRELLIS_STATUS_MSG)
#undef TRELLIS_STATUS_MSG
    default:
        return "unknown status";
    }
}

const char *trellis_status_name(int code)
{
    switch (code) {
#define TRELLIS_STATUS_NAME(name, value, msg)                                                      \
    case value:                                                                                    \
        return #name;
        TRELLIS_STATUS_MAP(TRELLIS_STATUS_NAME)
#undef TRELLIS_STATUS_NAME
    default:
        return "UNKNOWN";
    }
}
