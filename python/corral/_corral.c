/*
 * _corral.c - corral._corral, the CPython extension over libcorral: the module, the Cache type
 * and its plain cache operations. See _corral.h for how calls cross the GIL and how exceptions
 * of user code travel through corral's return codes.
 *
 * Keys are str (sent as UTF-8) or bytes; values are bytes (any object with the buffer protocol
 * is accepted for writing). TTLs are seconds (float allowed): omitted means the handle's
 * default (the URL's `timeout`), None never expires, 0 or less expires at once (a set stores
 * nothing and removes the old value, as Django's timeout=0).
 *
 * Threads: a Cache may be used from any number of Python threads; the GIL is released around
 * every corral call. close() refuses (corral.Error EINVAL) while another thread is in a call.
 */
#include "_corral.h"

#include <string.h>

PyObject *corral_py_error;

/* ---- Helpers ---- */

PyObject *corral_py_raise(int rc) {
    PyObject *e = PyObject_CallFunction(corral_py_error, "is", rc, corral_strerror(rc));
    if (!e) return NULL;
    PyObject *code = PyLong_FromLong(rc), *reason = PyUnicode_FromString(corral_strerror(rc));
    if (code && reason && PyObject_SetAttrString(e, "code", code) == 0 &&
        PyObject_SetAttrString(e, "reason", reason) == 0)
        PyErr_SetObject(corral_py_error, e);
    Py_XDECREF(code);
    Py_XDECREF(reason);
    Py_DECREF(e);
    return NULL;
}

int corral_py_keep_exception(CacheObject *self) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb && value) PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    unsigned seq = self->next_seq;
    self->next_seq = (self->next_seq + 1) % EXC_SEQ_MAX;
    unsigned slot = seq % EXC_RING;
    Py_XSETREF(self->ring[slot].exc, value);
    self->ring[slot].seq = seq;
    return EXC_BASE - (int)seq;
}

PyObject *corral_py_raise_kept(CacheObject *self, int rc) {
    unsigned seq = (unsigned)(EXC_BASE - rc);
    unsigned slot = seq % EXC_RING;
    PyObject *exc = self->ring[slot].exc;
    if (!exc || self->ring[slot].seq != seq) {
        PyErr_SetString(corral_py_error,
                        "a producer or callback raised (exception no longer kept)");
        return NULL;
    }
    Py_INCREF(exc);
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
    return NULL;
}

int corral_py_key(PyObject *obj, const char **p, Py_ssize_t *n) {
    if (PyUnicode_Check(obj)) {
        *p = PyUnicode_AsUTF8AndSize(obj, n);
        return *p ? 0 : -1;
    }
    if (PyBytes_Check(obj)) {
        *p = PyBytes_AS_STRING(obj);
        *n = PyBytes_GET_SIZE(obj);
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "a key is str or bytes, not %.80s", Py_TYPE(obj)->tp_name);
    return -1;
}

int corral_py_call_args(call_args *a, PyObject *version, PyObject *ns, PyObject *tags) {
    memset(a, 0, sizeof *a);
    a->call = (corral_call)CORRAL_CALL_INIT;
    if (version && version != Py_None) {
        long long v = PyLong_AsLongLong(version);
        if (v == -1 && PyErr_Occurred()) return -1;
        a->call.version = v;
    }
    if (ns && ns != Py_None) {
        if (!PyUnicode_Check(ns)) {
            PyErr_SetString(PyExc_TypeError, "ns is a str");
            return -1;
        }
        if (!(a->call.ns = PyUnicode_AsUTF8(ns))) return -1;
    }
    if (tags && tags != Py_None) {
        if (PyUnicode_Check(tags)) {
            PyErr_SetString(PyExc_TypeError, "tags is an iterable of str, not a str");
            return -1;
        }
        a->tags_fast = PySequence_Fast(tags, "tags is an iterable of str");
        if (!a->tags_fast) return -1;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(a->tags_fast);
        if (n > 32) {
            PyErr_SetString(PyExc_ValueError, "at most 32 tags");
            goto fail;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *t = PySequence_Fast_GET_ITEM(a->tags_fast, i);
            if (!PyUnicode_Check(t)) {
                PyErr_SetString(PyExc_TypeError, "a tag is a str");
                goto fail;
            }
            if (!(a->tags[i] = PyUnicode_AsUTF8(t))) goto fail;
        }
        a->call.tags = a->tags;
        a->call.n_tags = (size_t)n;
    }
    return 0;
fail:
    Py_CLEAR(a->tags_fast);
    return -1;
}

void corral_py_call_args_done(call_args *a) {
    Py_CLEAR(a->tags_fast);
}

int corral_py_ttl(PyObject *obj, int64_t *ttl_ms) {
    if (!obj) {
        *ttl_ms = CORRAL_TTL_DEFAULT;
        return 0;
    }
    if (obj == Py_None) {
        *ttl_ms = CORRAL_TTL_FOREVER;
        return 0;
    }
    double s = PyFloat_AsDouble(obj);
    if (s == -1.0 && PyErr_Occurred()) return -1;
    if (!(s > 0)) { /* 0, negative or NaN: expire now */
        *ttl_ms = 0;
        return 0;
    }
    double ms = s * 1000.0 + 0.5;
    *ttl_ms = ms >= 9.2e18 ? CORRAL_TTL_FOREVER : (int64_t)ms;
    if (*ttl_ms == 0) *ttl_ms = 1; /* a positive TTL under 1 ms still stores */
    return 0;
}

corral *corral_py_begin(CacheObject *self) {
    if (!self->c) {
        PyErr_SetString(corral_py_error, "the cache is closed");
        return NULL;
    }
    self->active++;
    return self->c;
}

void corral_py_end(CacheObject *self) {
    self->active--;
}

/* A copy of a value as bytes; drops the reference. */
static PyObject *value_bytes(corral_value *v) {
    PyObject *b = PyBytes_FromStringAndSize(corral_value_data(v), (Py_ssize_t)corral_value_len(v));
    corral_value_unref(v);
    return b;
}

/* ---- The key function hook ---- */

static int py_key_fn(void *ctx, const char *prefix, size_t prefix_len, int64_t version,
                     const void *key, size_t key_len, char *out, size_t cap, size_t *out_len) {
    CacheObject *self = ctx;
    PyGILState_STATE g = PyGILState_Ensure();
    int rc = CORRAL_ENOSPC;
    PyObject *r =
        PyObject_CallFunction(self->key_function, "s#s#L", (const char *)key, (Py_ssize_t)key_len,
                              prefix, (Py_ssize_t)prefix_len, (long long)version);
    Py_ssize_t n;
    const char *s = r && PyUnicode_Check(r) ? PyUnicode_AsUTF8AndSize(r, &n) : NULL;
    if (s && (size_t)n < cap) {
        memcpy(out, s, (size_t)n);
        *out_len = (size_t)n;
        rc = CORRAL_OK;
    } else if (PyErr_Occurred()) {
        PyErr_WriteUnraisable(self->key_function);
    }
    Py_XDECREF(r);
    PyGILState_Release(g);
    return rc;
}

/* ---- The Cache type ---- */

static int cache_init(CacheObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = { "url", "key_function", "max_background_keys", NULL };
    const char *url = NULL;
    PyObject *key_function = NULL;
    Py_ssize_t max_bg = 65536;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|zO$n", names, &url, &key_function, &max_bg))
        return -1;
    if (max_bg < 0) {
        PyErr_SetString(PyExc_ValueError, "max_background_keys is 0 or more");
        return -1;
    }
    if (self->c) {
        PyErr_SetString(corral_py_error, "Cache.__init__ called twice");
        return -1;
    }
    corral_options o;
    corral_options_init(&o);
    size_t cap = (url ? strlen(url) : 0) + 1;
    char *buf = PyMem_Malloc(cap);
    if (!buf) {
        PyErr_NoMemory();
        return -1;
    }
    corral_error err = { 0, "" };
    int rc = url && *url ? corral_options_parse_url(&o, url, buf, cap, &err) : CORRAL_OK;
    if (rc == CORRAL_OK && key_function && key_function != Py_None) {
        Py_INCREF(key_function);
        self->key_function = key_function;
        o.key_fn = py_key_fn;
        o.key_fn_ctx = self;
    }
    corral *c = NULL;
    if (rc == CORRAL_OK) {
        Py_BEGIN_ALLOW_THREADS rc = corral_open_opts(&c, &o, &err);
        Py_END_ALLOW_THREADS
    }
    PyMem_Free(buf);
    if (rc < 0) {
        PyObject *e = PyObject_CallFunction(corral_py_error, "is", rc, err.msg);
        if (e) {
            PyObject *code = PyLong_FromLong(rc), *reason = PyUnicode_FromString(err.msg);
            if (code && reason && PyObject_SetAttrString(e, "code", code) == 0 &&
                PyObject_SetAttrString(e, "reason", reason) == 0)
                PyErr_SetObject(corral_py_error, e);
            Py_XDECREF(code);
            Py_XDECREF(reason);
            Py_DECREF(e);
        }
        return -1;
    }
    self->c = c;
    self->max_bg = (size_t)max_bg;
    return 0;
}

static PyObject *cache_close(CacheObject *self, PyObject *unused) {
    (void)unused;
    if (self->active > 0) return corral_py_raise(CORRAL_EINVAL);
    corral *c = self->c;
    self->c = NULL;
    if (c) {
        Py_BEGIN_ALLOW_THREADS corral_close(c);
        Py_END_ALLOW_THREADS
    }
    Py_RETURN_NONE;
}

/* ---- Closing at exit the Caches that refresh in the background ----
 *
 * A refresh worker runs a Python producer with the GIL it takes. Once the interpreter is
 * finalizing, a thread that takes the GIL is ended on the spot, in the middle of corral's
 * refresh. So the Caches with background refreshes are closed by an atexit function, while
 * threads still run: corral_close lets the workers finish their queue. The list is under the
 * GIL; a Cache leaves it at dealloc. */

static CacheObject *bg_exit_list;

void corral_py_bg_listed(CacheObject *self) {
    if (self->bg_listed) return;
    self->bg_exit_next = bg_exit_list;
    bg_exit_list = self;
    self->bg_listed = true;
}

static void bg_unlist(CacheObject *self) {
    for (CacheObject **p = &bg_exit_list; *p; p = &(*p)->bg_exit_next)
        if (*p == self) {
            *p = self->bg_exit_next;
            break;
        }
    self->bg_listed = false;
}

static PyObject *cache_close(CacheObject *self, PyObject *unused);

/* The atexit function: closes each listed Cache that no thread is inside. */
static PyObject *mod_close_background(PyObject *mod, PyObject *unused) {
    (void)mod;
    (void)unused;
    CacheObject *self;
    while ((self = bg_exit_list)) { /* closing releases the GIL: take each off the list first */
        bg_unlist(self);
        Py_INCREF(self);
        PyObject *r = self->active == 0 ? cache_close(self, NULL) : NULL;
        if (!r) PyErr_Clear();
        Py_XDECREF(r);
        Py_DECREF(self);
    }
    Py_RETURN_NONE;
}

static void cache_dealloc(CacheObject *self) {
    /* No call is in progress (the object is unreachable), but a refresh worker may be waiting
     * for the GIL to run a producer: closing lets it. */
    if (self->c) {
        corral *c = self->c;
        Py_BEGIN_ALLOW_THREADS corral_close(c);
        Py_END_ALLOW_THREADS
    }
    self->c = NULL;
    if (self->bg_listed) bg_unlist(self);
    corral_py_bg_free(self);
    corral_py_rules_free(self);
    for (int i = 0; i < EXC_RING; i++)
        Py_CLEAR(self->ring[i].exc);
    Py_CLEAR(self->key_function);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Parses the (key, version, ns) every keyed method takes, plus its own arguments. */
#define KEY_KW "key", "version", "ns"

static PyObject *cache_get(CacheObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = { KEY_KW, NULL };
    PyObject *key, *version = NULL, *ns = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|$OO", names, &key, &version, &ns)) return NULL;
    const char *k;
    Py_ssize_t kn;
    call_args a;
    if (corral_py_key(key, &k, &kn) < 0 || corral_py_call_args(&a, version, ns, NULL) < 0)
        return NULL;
    corral *c = corral_py_begin(self);
    if (!c) return NULL;
    corral_value *v;
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = corral_get(c, k, (size_t)kn, &a.call, &v);
    Py_END_ALLOW_THREADS corral_py_end(self);
    if (rc == CORRAL_OK) return value_bytes(v);
    if (rc == CORRAL_MISS) Py_RETURN_NONE;
    return corral_py_raise(rc);
}

static PyObject *cache_has(CacheObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = { KEY_KW, NULL };
    PyObject *key, *version = NULL, *ns = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|$OO", names, &key, &version, &ns)) return NULL;
    const char *k;
    Py_ssize_t kn;
    call_args a;
    if (corral_py_key(key, &k, &kn) < 0 || corral_py_call_args(&a, version, ns, NULL) < 0)
        return NULL;
    corral *c = corral_py_begin(self);
    if (!c) return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = corral_has(c, k, (size_t)kn, &a.call);
    Py_END_ALLOW_THREADS corral_py_end(self);
    if (rc < 0) return corral_py_raise(rc);
    return PyBool_FromLong(rc == CORRAL_OK);
}

/* set and add: (key, value, ttl=default, *, version, ns, tags, binary) */
static PyObject *write_one(CacheObject *self, PyObject *args, PyObject *kw, bool add) {
    static char *names[] = { "key", "value", "ttl", "version", "ns", "tags", "binary", NULL };
    PyObject *key, *ttl = NULL, *version = NULL, *ns = NULL, *tags = NULL;
    Py_buffer val;
    int binary = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Oy*|O$OOOp", names, &key, &val, &ttl, &version, &ns,
                                     &tags, &binary))
        return NULL;
    PyObject *res = NULL;
    const char *k;
    Py_ssize_t kn;
    int64_t ttl_ms;
    call_args a;
    if (corral_py_key(key, &k, &kn) < 0 || corral_py_ttl(ttl, &ttl_ms) < 0 ||
        corral_py_call_args(&a, version, ns, tags) < 0)
        goto out;
    a.call.is_binary = binary;
    corral *c = corral_py_begin(self);
    if (c) {
        int rc;
        Py_BEGIN_ALLOW_THREADS rc =
            add ? corral_add(c, k, (size_t)kn, val.buf, (size_t)val.len, ttl_ms, &a.call)
                : corral_set(c, k, (size_t)kn, val.buf, (size_t)val.len, ttl_ms, &a.call);
        Py_END_ALLOW_THREADS corral_py_end(self);
        if (rc < 0)
            corral_py_raise(rc);
        else
            res = add ? PyBool_FromLong(rc == CORRAL_OK) : (Py_INCREF(Py_None), Py_None);
    }
    corral_py_call_args_done(&a);
out:
    PyBuffer_Release(&val);
    return res;
}

static PyObject *cache_set(CacheObject *self, PyObject *args, PyObject *kw) {
    return write_one(self, args, kw, false);
}

static PyObject *cache_add(CacheObject *self, PyObject *args, PyObject *kw) {
    return write_one(self, args, kw, true);
}

static PyObject *cache_delete(CacheObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = { KEY_KW, NULL };
    PyObject *key, *version = NULL, *ns = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|$OO", names, &key, &version, &ns)) return NULL;
    const char *k;
    Py_ssize_t kn;
    call_args a;
    if (corral_py_key(key, &k, &kn) < 0 || corral_py_call_args(&a, version, ns, NULL) < 0)
        return NULL;
    corral *c = corral_py_begin(self);
    if (!c) return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = corral_delete(c, k, (size_t)kn, &a.call);
    Py_END_ALLOW_THREADS corral_py_end(self);
    if (rc < 0) return corral_py_raise(rc);
    return PyBool_FromLong(rc == CORRAL_OK);
}

static PyObject *cache_touch(CacheObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = { "key", "ttl", "version", "ns", NULL };
    PyObject *key, *ttl = NULL, *version = NULL, *ns = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O$OO", names, &key, &ttl, &version, &ns))
        return NULL;
    const char *k;
    Py_ssize_t kn;
    int64_t ttl_ms;
    call_args a;
    if (corral_py_key(key, &k, &kn) < 0 || corral_py_ttl(ttl, &ttl_ms) < 0 ||
        corral_py_call_args(&a, version, ns, NULL) < 0)
        return NULL;
    corral *c = corral_py_begin(self);
    if (!c) return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = corral_touch(c, k, (size_t)kn, ttl_ms, &a.call);
    Py_END_ALLOW_THREADS corral_py_end(self);
    if (rc < 0) return corral_py_raise(rc);
    return PyBool_FromLong(rc == CORRAL_OK);
}

/* incr and incr_version: the same arguments and answers around a different call. */
typedef int (*incr_fn)(corral *c, const void *key, size_t key_len, int64_t delta,
                       const corral_call *call, int64_t *out);

static PyObject *incr_with(CacheObject *self, PyObject *args, PyObject *kw, incr_fn fn) {
    static char *names[] = { "key", "delta", "version", "ns", NULL };
    PyObject *key, *version = NULL, *ns = NULL;
    long long delta = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|L$OO", names, &key, &delta, &version, &ns))
        return NULL;
    const char *k;
    Py_ssize_t kn;
    call_args a;
    if (corral_py_key(key, &k, &kn) < 0 || corral_py_call_args(&a, version, ns, NULL) < 0)
        return NULL;
    corral *c = corral_py_begin(self);
    if (!c) return NULL;
    int rc;
    int64_t out = 0;
    Py_BEGIN_ALLOW_THREADS rc = fn(c, k, (size_t)kn, delta, &a.call, &out);
    Py_END_ALLOW_THREADS corral_py_end(self);
    if (rc == CORRAL_MISS) {
        PyErr_SetObject(PyExc_KeyError, key);
        return NULL;
    }
    if (rc < 0) return corral_py_raise(rc);
    return PyLong_FromLongLong(out);
}

/* incr(key, delta=1): the new value; KeyError when absent, corral.Error ENOTINT / ERANGE. */
static PyObject *cache_incr(CacheObject *self, PyObject *args, PyObject *kw) {
    return incr_with(self, args, kw, corral_incr);
}

/* incr_version(key, delta=1, version=None): the new version; KeyError when absent. */
static PyObject *cache_incr_version(CacheObject *self, PyObject *args, PyObject *kw) {
    return incr_with(self, args, kw, corral_incr_version);
}

/* Converts a sequence of keys to corral_bufs in `*bufs` (PyMem; free it). */
static PyObject *keys_bufs(PyObject *keys, corral_buf **bufs, Py_ssize_t *n) {
    PyObject *fast = PySequence_Fast(keys, "keys is an iterable");
    if (!fast) return NULL;
    *n = PySequence_Fast_GET_SIZE(fast);
    *bufs = PyMem_Calloc(*n ? (size_t)*n : 1, sizeof **bufs);
    if (!*bufs) {
        Py_DECREF(fast);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < *n; i++) {
        const char *p;
        Py_ssize_t len;
        if (corral_py_key(PySequence_Fast_GET_ITEM(fast, i), &p, &len) < 0) {
            PyMem_Free(*bufs);
            Py_DECREF(fast);
            return NULL;
        }
        (*bufs)[i] = (corral_buf){ p, (size_t)len };
    }
    return fast;
}

/* get_many(keys): a dict of the keys found to their values. */
static PyObject *cache_get_many(CacheObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = { "keys", "version", "ns", NULL };
    PyObject *keys, *version = NULL, *ns = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|$OO", names, &keys, &version, &ns)) return NULL;
    call_args a;
    corral_buf *bufs;
    Py_ssize_t n;
    if (corral_py_call_args(&a, version, ns, NULL) < 0) return NULL;
    PyObject *fast = keys_bufs(keys, &bufs, &n);
    if (!fast) return NULL;
    PyObject *res = NULL;
    corral_value **vals = PyMem_Calloc(n ? (size_t)n : 1, sizeof *vals);
    corral *c = vals ? corral_py_begin(self) : NULL;
    if (!vals) PyErr_NoMemory();
    if (c) {
        int rc;
        Py_BEGIN_ALLOW_THREADS rc = corral_get_many(c, bufs, (size_t)n, &a.call, vals, NULL);
        Py_END_ALLOW_THREADS corral_py_end(self);
        if (rc < 0) {
            corral_py_raise(rc);
        } else if ((res = PyDict_New())) {
            for (Py_ssize_t i = 0; i < n; i++) {
                if (!vals[i]) continue;
                PyObject *b = value_bytes(vals[i]);
                vals[i] = NULL;
                if (!b || PyDict_SetItem(res, PySequence_Fast_GET_ITEM(fast, i), b) < 0) {
                    Py_XDECREF(b);
                    Py_CLEAR(res);
                    break;
                }
                Py_DECREF(b);
            }
        }
        for (Py_ssize_t i = 0; i < n; i++)
            corral_value_unref(vals[i]);
    }
    PyMem_Free(vals);
    PyMem_Free(bufs);
    Py_DECREF(fast);
    return res;
}

/* set_many(mapping, ttl=default): every pair with one TTL. */
static PyObject *cache_set_many(CacheObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = { "mapping", "ttl", "version", "ns", "tags", NULL };
    PyObject *mapping, *ttl = NULL, *version = NULL, *ns = NULL, *tags = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O$OOO", names, &mapping, &ttl, &version, &ns,
                                     &tags))
        return NULL;
    int64_t ttl_ms;
    call_args a;
    if (corral_py_ttl(ttl, &ttl_ms) < 0) return NULL;
    PyObject *items = PyMapping_Items(mapping);
    if (!items) return NULL;
    if (corral_py_call_args(&a, version, ns, tags) < 0) {
        Py_DECREF(items);
        return NULL;
    }
    PyObject *res = NULL;
    Py_ssize_t n = PyList_GET_SIZE(items);
    corral_buf *ks = PyMem_Calloc(n ? (size_t)n : 1, sizeof *ks);
    corral_buf *vs = PyMem_Calloc(n ? (size_t)n : 1, sizeof *vs);
    if (!ks || !vs) {
        PyErr_NoMemory();
        goto out;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *kv = PyList_GET_ITEM(items, i);
        const char *p;
        Py_ssize_t len;
        if (corral_py_key(PyTuple_GET_ITEM(kv, 0), &p, &len) < 0) goto out;
        ks[i] = (corral_buf){ p, (size_t)len };
        PyObject *v = PyTuple_GET_ITEM(kv, 1);
        if (!PyBytes_Check(v)) {
            PyErr_SetString(PyExc_TypeError, "set_many: values are bytes");
            goto out;
        }
        vs[i] = (corral_buf){ PyBytes_AS_STRING(v), (size_t)PyBytes_GET_SIZE(v) };
    }
    corral *c = corral_py_begin(self);
    if (!c) goto out;
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = corral_set_many(c, ks, vs, (size_t)n, ttl_ms, &a.call);
    Py_END_ALLOW_THREADS corral_py_end(self);
    if (rc < 0)
        corral_py_raise(rc);
    else
        res = (Py_INCREF(Py_None), Py_None);
out:
    PyMem_Free(ks);
    PyMem_Free(vs);
    corral_py_call_args_done(&a);
    Py_DECREF(items);
    return res;
}

/* delete_many(keys): how many were there. */
static PyObject *cache_delete_many(CacheObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = { "keys", "version", "ns", NULL };
    PyObject *keys, *version = NULL, *ns = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|$OO", names, &keys, &version, &ns)) return NULL;
    call_args a;
    corral_buf *bufs;
    Py_ssize_t n;
    if (corral_py_call_args(&a, version, ns, NULL) < 0) return NULL;
    PyObject *fast = keys_bufs(keys, &bufs, &n);
    if (!fast) return NULL;
    PyObject *res = NULL;
    corral *c = corral_py_begin(self);
    if (c) {
        int rc;
        size_t deleted = 0;
        Py_BEGIN_ALLOW_THREADS rc = corral_delete_many(c, bufs, (size_t)n, &a.call, &deleted);
        Py_END_ALLOW_THREADS corral_py_end(self);
        res = rc < 0 ? corral_py_raise(rc) : PyLong_FromSize_t(deleted);
    }
    PyMem_Free(bufs);
    Py_DECREF(fast);
    return res;
}

/* clear(prefix_only=False): corral_clear (FLUSHDB on Redis), or corral_clear_prefix. */
static PyObject *cache_clear(CacheObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = { "prefix_only", NULL };
    int prefix_only = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|$p", names, &prefix_only)) return NULL;
    corral *c = corral_py_begin(self);
    if (!c) return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = prefix_only ? corral_clear_prefix(c) : corral_clear(c);
    Py_END_ALLOW_THREADS corral_py_end(self);
    if (rc < 0) return corral_py_raise(rc);
    Py_RETURN_NONE;
}

/* tag_bust(tag) and ns_bump(ns). */
static PyObject *bust(CacheObject *self, PyObject *arg, bool tag) {
    const char *s = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    if (!s) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "a str");
        return NULL;
    }
    corral *c = corral_py_begin(self);
    if (!c) return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = tag ? corral_tag_bust(c, s) : corral_ns_bump(c, s);
    Py_END_ALLOW_THREADS corral_py_end(self);
    if (rc < 0) return corral_py_raise(rc);
    Py_RETURN_NONE;
}

static PyObject *cache_tag_bust(CacheObject *self, PyObject *arg) {
    return bust(self, arg, true);
}

static PyObject *cache_ns_bump(CacheObject *self, PyObject *arg) {
    return bust(self, arg, false);
}

/* make_key(key, version=None, ns=None): the physical key, as str. */
static PyObject *cache_make_key(CacheObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = { KEY_KW, NULL };
    PyObject *key, *version = NULL, *ns = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|$OO", names, &key, &version, &ns)) return NULL;
    const char *k;
    Py_ssize_t kn;
    call_args a;
    if (corral_py_key(key, &k, &kn) < 0 || corral_py_call_args(&a, version, ns, NULL) < 0)
        return NULL;
    corral *c = corral_py_begin(self);
    if (!c) return NULL;
    char out[4200];
    size_t len = 0;
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = corral_make_key(c, k, (size_t)kn, &a.call, out, sizeof out, &len);
    Py_END_ALLOW_THREADS corral_py_end(self);
    if (rc < 0) return corral_py_raise(rc);
    return PyUnicode_DecodeUTF8(out, (Py_ssize_t)len, "surrogateescape");
}

static PyObject *cache_enter(CacheObject *self, PyObject *unused) {
    (void)unused;
    Py_INCREF(self);
    return (PyObject *)self;
}

static PyObject *cache_exit(CacheObject *self, PyObject *args) {
    (void)args;
    return cache_close(self, NULL);
}

#define KW(name, fn, doc) \
    { name, (PyCFunction)(void (*)(void))fn, METH_VARARGS | METH_KEYWORDS, doc }

static PyMethodDef cache_methods[] = {
    KW("get", cache_get, "get(key, *, version=None, ns=None) -> bytes or None"),
    KW("has", cache_has, "has(key, *, version=None, ns=None) -> bool"),
    KW("set", cache_set, "set(key, value, ttl=default, *, version, ns, tags, binary)"),
    KW("add", cache_add, "add(key, value, ttl=default, ...) -> True when stored"),
    KW("delete", cache_delete, "delete(key, *, version=None, ns=None) -> True when removed"),
    KW("touch", cache_touch, "touch(key, ttl=default, ...) -> True when present"),
    KW("incr", cache_incr, "incr(key, delta=1, ...) -> new value; KeyError when absent"),
    KW("incr_version", cache_incr_version, "incr_version(key, delta=1, *, version) -> version"),
    KW("get_many", cache_get_many, "get_many(keys, ...) -> {key: bytes} of the hits"),
    KW("set_many", cache_set_many, "set_many(mapping, ttl=default, ...)"),
    KW("delete_many", cache_delete_many, "delete_many(keys, ...) -> number removed"),
    KW("clear", cache_clear, "clear(*, prefix_only=False): FLUSHDB on Redis unless prefix_only"),
    KW("make_key", cache_make_key, "make_key(key, *, version=None, ns=None) -> physical key"),
    KW("get_or_set", corral_py_get_or_set,
       "get_or_set(key, producer, ttl=default, *, stale_ttl=0, beta=1.0, stale_if_error=0, "
       "tags=None, ns=None, version=None, wait_timeout=10.0, jitter=0.0, background=False) -> "
       "bytes"),
    KW("on", corral_py_on, "on(event, *, keys=(), tags=(), namespaces=(), when=None)"),
    KW("emit", corral_py_emit, "emit(event, **fields) -> number busted"),
    { "tag_bust", (PyCFunction)cache_tag_bust, METH_O, "tag_bust(tag)" },
    { "ns_bump", (PyCFunction)cache_ns_bump, METH_O, "ns_bump(ns)" },
    { "metrics", (PyCFunction)corral_py_metrics, METH_NOARGS, "metrics() -> Prometheus text" },
    { "stats", (PyCFunction)corral_py_stats, METH_NOARGS, "stats() -> dict of counters" },
    { "close", (PyCFunction)cache_close, METH_NOARGS, "close(): releases the handle" },
    { "__enter__", (PyCFunction)cache_enter, METH_NOARGS, NULL },
    { "__exit__", (PyCFunction)cache_exit, METH_VARARGS, NULL },
    { NULL, NULL, 0, NULL }
};

static PyObject *cache_closed(CacheObject *self, void *unused) {
    (void)unused;
    return PyBool_FromLong(self->c == NULL);
}

static PyGetSetDef cache_getset[] = { { "closed", (getter)cache_closed, NULL, NULL, NULL },
                                      { NULL, NULL, NULL, NULL, NULL } };

PyTypeObject corral_py_cache_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "corral._corral.Cache",
    .tp_basicsize = sizeof(CacheObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Cache(url='mem://', key_function=None, *, max_background_keys=65536): a "
              "libcorral handle",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)cache_init,
    .tp_dealloc = (destructor)cache_dealloc,
    .tp_methods = cache_methods,
    .tp_getset = cache_getset,
};

/* ---- The module ---- */

/* fragment_key(name, *vary): Django's make_template_fragment_key, computed by libcorral. */
static PyObject *mod_fragment_key(PyObject *mod, PyObject *args) {
    (void)mod;
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    if (n < 1) {
        PyErr_SetString(PyExc_TypeError, "fragment_key(name, *vary)");
        return NULL;
    }
    corral_buf *vary = PyMem_Calloc((size_t)n, sizeof *vary);
    if (!vary) return PyErr_NoMemory();
    PyObject *res = NULL;
    const char *name;
    Py_ssize_t name_len;
    if (corral_py_key(PyTuple_GET_ITEM(args, 0), &name, &name_len) < 0) goto out;
    for (Py_ssize_t i = 1; i < n; i++) {
        const char *p;
        Py_ssize_t len;
        if (corral_py_key(PyTuple_GET_ITEM(args, i), &p, &len) < 0) goto out;
        vary[i - 1] = (corral_buf){ p, (size_t)len };
    }
    char out[4200];
    size_t len = 0;
    int rc =
        corral_fragment_key(name, (size_t)name_len, vary, (size_t)n - 1, out, sizeof out, &len);
    res = rc < 0 ? corral_py_raise(rc) : PyUnicode_DecodeUTF8(out, (Py_ssize_t)len, "strict");
out:
    PyMem_Free(vary);
    return res;
}

static PyObject *mod_strerror(PyObject *mod, PyObject *arg) {
    (void)mod;
    long rc = PyLong_AsLong(arg);
    if (rc == -1 && PyErr_Occurred()) return NULL;
    return PyUnicode_FromString(corral_strerror((int)rc));
}

static PyMethodDef mod_methods[] = {
    { "fragment_key", mod_fragment_key, METH_VARARGS, "fragment_key(name, *vary) -> str" },
    { "strerror", mod_strerror, METH_O, "strerror(code) -> str" },
    { "_close_background", mod_close_background, METH_NOARGS,
      "closes the Caches with background refreshes (registered with atexit)" },
    { NULL, NULL, 0, NULL }
};

static struct PyModuleDef module = { PyModuleDef_HEAD_INIT,
                                     "corral._corral",
                                     "libcorral for Python",
                                     -1,
                                     mod_methods,
                                     NULL,
                                     NULL,
                                     NULL,
                                     NULL };

PyMODINIT_FUNC PyInit__corral(void);
PyMODINIT_FUNC PyInit__corral(void) {
    if (PyType_Ready(&corral_py_cache_type) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    corral_py_error = PyErr_NewExceptionWithDoc(
        "corral._corral.Error", "a libcorral error: args (code, reason); .code, .reason", NULL,
        NULL);
    if (!corral_py_error || PyModule_AddObjectRef(m, "Error", corral_py_error) < 0 ||
        PyModule_AddObjectRef(m, "Cache", (PyObject *)&corral_py_cache_type) < 0 ||
        PyModule_AddStringConstant(m, "__libcorral_version__", corral_version()) < 0 ||
        corral_py_django_add(m) < 0)
        goto fail;
    static const struct {
        const char *name;
        int code;
    } codes[] = { { "OK", CORRAL_OK },           { "MISS", CORRAL_MISS },
                  { "EXISTS", CORRAL_EXISTS },   { "STALE", CORRAL_STALE },
                  { "EINVAL", CORRAL_EINVAL },   { "ENOMEM", CORRAL_ENOMEM },
                  { "EBADKEY", CORRAL_EBADKEY }, { "ETOOBIG", CORRAL_ETOOBIG },
                  { "ENOTINT", CORRAL_ENOTINT }, { "ERANGE", CORRAL_ERANGE },
                  { "EBADURL", CORRAL_EBADURL }, { "ESTORE", CORRAL_ESTORE },
                  { "ENOTSUP", CORRAL_ENOTSUP }, { "ETIMEDOUT", CORRAL_ETIMEDOUT },
                  { "EFORMAT", CORRAL_EFORMAT } };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (PyModule_AddIntConstant(m, codes[i].name, codes[i].code) < 0) goto fail;
    PyObject *atexit = PyImport_ImportModule("atexit");
    PyObject *closer = PyObject_GetAttrString(m, "_close_background");
    PyObject *r = atexit && closer ? PyObject_CallMethod(atexit, "register", "O", closer) : NULL;
    Py_XDECREF(atexit);
    Py_XDECREF(closer);
    if (!r) goto fail;
    Py_DECREF(r);
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
