/* consumer.c - a program outside the tree that uses an installed libcorral: it must find the
 * header and link through pkg-config or CMake's find_package(corral). Prints "ok" on success. */
#include <corral/corral.h>

#include <stdio.h>
#include <string.h>

int main(void) {
    corral *c;
    corral_error err;
    if (corral_open(&c, "mem://?key_prefix=shop", &err) != CORRAL_OK) {
        fprintf(stderr, "consumer: %s\n", err.msg);
        return 1;
    }
    char buf[8];
    size_t n = 0;
    int rc = corral_set(c, "a", 1, "b", 1, CORRAL_TTL_DEFAULT, NULL);
    if (rc == CORRAL_OK) rc = corral_get_into(c, "a", 1, NULL, buf, sizeof buf, &n);
    corral_close(c);
    if (rc != CORRAL_OK || n != 1 || memcmp(buf, "b", 1) != 0) {
        fprintf(stderr, "consumer: %s\n", corral_strerror(rc));
        return 1;
    }
    printf("ok %s\n", corral_version());
    return 0;
}
