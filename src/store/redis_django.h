/*
 * redis_django.h - Django's cache wire format on Redis, for the Redis store's
 * `serializer=django`: what Django's RedisCache (4.0+) and django-redis write and read.
 *
 * Django stores an int as its decimal digits (so INCR works) and pickles everything else;
 * reading, it tries int() first, then pickle.loads. corral values are bytes, so:
 * - write: a canonical decimal integer ("-?(0|[1-9][0-9]*)", at most 20 bytes) goes as is (Django
 *   reads an int); valid UTF-8 goes as a pickled str (Django reads text as text); anything else
 *   as pickled bytes. Pickles are protocol 4 without framing (pickle.loads reads them). A
 *   writer may ask for pickled bytes whatever the value holds (corral_call.is_binary).
 * - read: a value that begins with the PROTO opcode (0x80) is a pickle and must hold one str or
 *   bytes (the str's UTF-8 or the bytes are the value); any other pickle (a float, a dict, a
 *   bool, ...) is CORRAL_EFORMAT, never garbage. Other values (digits, or what other clients
 *   wrote) are read as they are.
 *
 * Written here rather than with a library: Debian has no C pickle library, and the subset is a
 * dozen opcodes (Python's Lib/pickletools.py documents each).
 *
 * Threads: pure functions.
 */
#ifndef CORRAL_STORE_REDIS_DJANGO_H
#define CORRAL_STORE_REDIS_DJANGO_H

#include "../common.h"

/* Bytes the encoding of `val` takes (at most len + 12). */
size_t corral__django_encoded_len(const void *val, size_t len);

/* Writes the encoding of `val` into `out` (corral__django_encoded_len bytes). */
void corral__django_encode(const void *val, size_t len, unsigned char *out);

/* As the two above, and with `as_bytes` the value is always pickled bytes, whatever it holds
 * (a caller's way to make Django read bytes where it would read text or an int). */
size_t corral__django_encoded_len_as(const void *val, size_t len, bool as_bytes);
void corral__django_encode_as(const void *val, size_t len, bool as_bytes, unsigned char *out);

/* Decodes a stored value: CORRAL_OK with `*data`/`*data_len` the value's bytes (a slice of
 * `in`, which must outlive its use), or CORRAL_EFORMAT for a pickle that is not exactly one str
 * or bytes. */
int corral__django_decode(const void *in, size_t len, const unsigned char **data, size_t *data_len);

#endif /* CORRAL_STORE_REDIS_DJANGO_H */
