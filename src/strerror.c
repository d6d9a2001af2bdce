/*
 * strerror.c - the messages of corral's return codes, and the library's version string.
 *
 * A file of its own so that what only needs a message (the HTTP engine, the stores) does not
 * link the handle (corral.c).
 */
#include "corral/corral.h"

#define STR2(x) #x
#define STR(x)  STR2(x)

const char *corral_strerror(int rc) {
    switch (rc) {
    case CORRAL_OK: return "success";
    case CORRAL_MISS: return "key not found";
    case CORRAL_EXISTS: return "key already exists";
    case CORRAL_EINVAL: return "invalid argument";
    case CORRAL_ENOMEM: return "out of memory";
    case CORRAL_EBADKEY: return "invalid key (over 250 bytes, or a control or space byte)";
    case CORRAL_ETOOBIG: return "value too large for the store";
    case CORRAL_ENOTINT: return "value is not a decimal integer";
    case CORRAL_ERANGE: return "integer overflow";
    case CORRAL_ENOSPC: return "buffer too small";
    case CORRAL_EBADURL: return "malformed URL or option";
    case CORRAL_ESTORE: return "store failure";
    case CORRAL_ENOTSUP: return "operation not supported by the store";
    case CORRAL_ETIMEDOUT: return "timed out";
    case CORRAL_EFORMAT: return "stored value in a format corral cannot read";
    default: return "unknown error code";
    }
}

const char *corral_version(void) {
    return STR(CORRAL_VERSION_MAJOR) "." STR(CORRAL_VERSION_MINOR) "." STR(CORRAL_VERSION_PATCH);
}

const char *corral_store_reason_name(corral_store_reason r) {
    switch (r) {
    case CORRAL_REASON_NONE: return "none";
    case CORRAL_REASON_REFUSED: return "refused";
    case CORRAL_REASON_TIMEOUT: return "timeout";
    case CORRAL_REASON_IO: return "io";
    case CORRAL_REASON_AUTH: return "auth";
    case CORRAL_REASON_BAD_DB: return "bad_db";
    case CORRAL_REASON_OOM: return "oom";
    case CORRAL_REASON_READONLY: return "readonly";
    case CORRAL_REASON_UNAVAILABLE: return "unavailable";
    case CORRAL_REASON_REPLY: return "reply";
    case CORRAL_REASON_POOL: return "pool";
    case CORRAL_REASON_NOMEM: return "nomem";
    }
    return "unknown";
}
