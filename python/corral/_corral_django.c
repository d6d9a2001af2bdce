/*
 * _corral_django.c - corral._corral.DjangoOps: corral.django.CorralCache's get, set and
 * get_many as one C call each (the fast path), with Django's semantics exactly.
 *
 * A Django get through a backend written in Python pays a Python frame for the method, Django's
 * key checks, keyword parsing and a second frame to decode the value; on a memory-store hit that
 * is most of the time (docs/django.md, "The fast path"). Here one vectorcall method does it all:
 * - keys: Django's default key function is libcorral's ("KEY_PREFIX:VERSION:key"); Django's
 *   key warnings (memcache_key_warnings: over 250 characters, or a character below 33 or 127)
 *   are checked exactly on the key the call would make (the UTF-8 bytes below 0x80 are the
 *   ASCII characters, and the length is the str's);
 * - values as Django's Redis backends write them (ints as their digits, the rest pickled with
 *   the backend's protocol), read with one cached reference to pickle.loads.
 * Anything else goes to the Python method the backend passed (`slow`), with the same arguments:
 * a key that would warn (Python warns, then makes the call), a key that is not a str, a version
 * that is not an int, tags, an argument this parser does not know (Python raises its own
 * TypeError). So the Python path stays the one definition of every edge, and the C path only
 * takes calls where the two provably agree. A backend with a custom KEY_FUNCTION, or a subclass
 * with its own keys or encoding, makes no DjangoOps (corral/django/__init__.py).
 *
 * Threads: as the Cache's methods (_corral.h); the GIL is released around each corral call.
 */
#include "_corral.h"

#include <stdbool.h>
#include <string.h>

#define DJANGO_MAX_KEY 250 /* Django's MEMCACHE_MAX_KEY_LENGTH, in characters */

enum { OP_GET, OP_SET, OP_GET_MANY, N_OPS };

typedef struct {
    PyObject_HEAD CacheObject *cache; /* NULL once cleared by the garbage collector */
    PyObject *slow[N_OPS];            /* the backend's Python methods, bound */
    PyObject *protocol;               /* pickle protocol, an int */
    PyObject *default_timeout;        /* the backend's TIMEOUT: None or seconds */
    PyObject *default_sentinel;       /* django's DEFAULT_TIMEOUT object */
    long long version;                /* the backend's VERSION (the handle's default) */
    Py_ssize_t header_chars;          /* len(KEY_PREFIX) + the two ':' of a made key */
    bool prefix_ok;                   /* KEY_PREFIX holds no character Django warns about */
} DjangoObject;

static PyObject *pickle_loads, *pickle_dumps; /* module-wide, set by the first DjangoOps */

/* ---- Arguments ---- */

/* The keyword names of each method, in positional order. */
static const char *const get_names[] = { "key", "default", "version", "ns", NULL };
static const char *const set_names[] = { "key", "value", "timeout", "version", "tags", "ns", NULL };
static const char *const get_many_names[] = { "keys", "version", "ns", NULL };

/* Spreads a vectorcall's arguments over `out` (room for every name; unset slots stay NULL).
 * Returns 1, or 0 when the call is not a plain one (too few or too many positionals, an unknown
 * or repeated keyword): the slow path then raises Python's own TypeError. */
static int spread(PyObject *const *args, size_t nargsf, PyObject *kwnames, const char *const *names,
                  Py_ssize_t required, PyObject **out) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf), n_names = 0;
    while (names[n_names])
        n_names++;
    if (nargs > n_names) return 0;
    for (Py_ssize_t i = 0; i < nargs; i++)
        out[i] = args[i];
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t j = 0; j < nkw; j++) {
        const char *kw = PyUnicode_AsUTF8(PyTuple_GET_ITEM(kwnames, j));
        if (!kw) {
            PyErr_Clear();
            return 0;
        }
        Py_ssize_t i = 0;
        while (i < n_names && strcmp(names[i], kw) != 0)
            i++;
        if (i == n_names || out[i]) return 0;
        out[i] = args[nargs + j];
    }
    for (Py_ssize_t i = 0; i < required; i++)
        if (!out[i]) return 0;
    return 1;
}

static Py_ssize_t decimal_chars(long long v) {
    Py_ssize_t n = v < 0 ? 2 : 1;
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    while (u >= 10) {
        u /= 10;
        n++;
    }
    return n;
}

/* The version of a call: `obj` NULL or None is the backend's. Returns 1, 0 (not an int: the slow
 * path decides), or -1 (raised). */
static int version_arg(DjangoObject *d, PyObject *obj, corral_call *call, long long *version) {
    *version = d->version;
    if (!obj || obj == Py_None) return 1;
    if (!PyLong_CheckExact(obj)) return 0;
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (overflow) return 0;
    if (v == -1 && PyErr_Occurred()) return -1;
    call->version = *version = v;
    return 1;
}

/* A key the fast path takes: a str whose made key draws no warning from Django. Returns 1 with
 * its UTF-8 in (*p, *n), 0 (the slow path decides), or -1 (raised). */
static int key_arg(DjangoObject *d, PyObject *key, long long version, const char **p,
                   Py_ssize_t *n) {
    if (!PyUnicode_CheckExact(key) || !d->prefix_ok) return 0;
    if (PyUnicode_GET_LENGTH(key) + d->header_chars + decimal_chars(version) > DJANGO_MAX_KEY)
        return 0;
    if (!(*p = PyUnicode_AsUTF8AndSize(key, n))) return -1;
    for (Py_ssize_t i = 0; i < *n; i++) {
        unsigned char b = (unsigned char)(*p)[i];
        if (b < 33 || b == 127) return 0;
    }
    return 1;
}

/* ns=: None or a str. Returns 1, or 0 (the slow path decides). */
static int ns_arg(PyObject *obj, corral_call *call) {
    if (!obj || obj == Py_None) return 1;
    if (!PyUnicode_CheckExact(obj)) return 0;
    call->ns = PyUnicode_AsUTF8(obj);
    if (!call->ns) PyErr_Clear();
    return call->ns != NULL;
}

/* ---- Values: Django's Redis wire format ---- */

/* A value as CorralCache._decode reads it: pickled when it starts with the pickle opcode PROTO,
 * else int(data), else pickled after all. New reference, or NULL (raised). */
static PyObject *decode(const char *p, size_t n) {
    PyObject *b = PyBytes_FromStringAndSize(p, (Py_ssize_t)n), *r;
    if (!b) return NULL;
    if (n && (unsigned char)p[0] == 0x80) {
        r = PyObject_CallOneArg(pickle_loads, b);
    } else if (!(r = PyNumber_Long(b)) && PyErr_ExceptionMatches(PyExc_ValueError)) {
        PyErr_Clear();
        r = PyObject_CallOneArg(pickle_loads, b);
    }
    Py_DECREF(b);
    return r;
}

/* A value as CorralCache._encode writes it: an int as its digits, the rest pickled. New
 * reference to a bytes or str object whose UTF-8 is the value, or NULL (raised). */
static PyObject *encode(DjangoObject *d, PyObject *value) {
    if (PyLong_CheckExact(value)) return PyObject_Str(value);
    PyObject *args[2] = { value, d->protocol };
    return PyObject_Vectorcall(pickle_dumps, args, 2, NULL);
}

/* The TTL of Django's `timeout`. Returns 1, 0 (not a number: the slow path decides), -1. */
static int timeout_arg(DjangoObject *d, PyObject *obj, int64_t *ttl_ms) {
    if (!obj || obj == d->default_sentinel) obj = d->default_timeout;
    if (obj != Py_None && !PyLong_CheckExact(obj) && !PyFloat_CheckExact(obj)) return 0;
    return corral_py_ttl(obj, ttl_ms) < 0 ? -1 : 1;
}

/* ---- The methods ---- */

#define SLOW(d, op, args, nargsf, kwnames) PyObject_Vectorcall((d)->slow[op], args, nargsf, kwnames)

static corral *begin(DjangoObject *d) {
    if (!d->cache) {
        PyErr_SetString(corral_py_error, "the cache is closed");
        return NULL;
    }
    return corral_py_begin(d->cache);
}

/* get(key, default=None, version=None, ns=None) */
static PyObject *dj_get(DjangoObject *d, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    PyObject *a[4] = { NULL, NULL, NULL, NULL };
    corral_call call = CORRAL_CALL_INIT;
    long long version = 0;
    const char *k = NULL;
    Py_ssize_t kn = 0;
    int ok = spread(args, nargsf, kwnames, get_names, 1, a);
    if (ok == 1) ok = version_arg(d, a[2], &call, &version);
    if (ok == 1) ok = ns_arg(a[3], &call);
    if (ok == 1) ok = key_arg(d, a[0], version, &k, &kn);
    if (ok < 0) return NULL;
    if (ok == 0) return SLOW(d, OP_GET, args, nargsf, kwnames);
    corral *c = begin(d);
    if (!c) return NULL;
    corral_value *v;
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = corral_get(c, k, (size_t)kn, &call, &v);
    Py_END_ALLOW_THREADS corral_py_end(d->cache);
    if (rc == CORRAL_MISS) {
        PyObject *dflt = a[1] ? a[1] : Py_None;
        Py_INCREF(dflt);
        return dflt;
    }
    if (rc < 0) return corral_py_raise(rc);
    PyObject *r = decode(corral_value_data(v), corral_value_len(v));
    corral_value_unref(v);
    return r;
}

/* set(key, value, timeout=DEFAULT_TIMEOUT, version=None, tags=None, ns=None) */
static PyObject *dj_set(DjangoObject *d, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    PyObject *a[6] = { NULL, NULL, NULL, NULL, NULL, NULL };
    corral_call call = CORRAL_CALL_INIT;
    long long version = 0;
    const char *k = NULL;
    Py_ssize_t kn = 0;
    int64_t ttl_ms;
    int ok = spread(args, nargsf, kwnames, set_names, 2, a);
    if (ok == 1 && a[4] && a[4] != Py_None) ok = 0; /* tags: the Python path */
    if (ok == 1) ok = version_arg(d, a[3], &call, &version);
    if (ok == 1) ok = ns_arg(a[5], &call);
    if (ok == 1) ok = timeout_arg(d, a[2], &ttl_ms);
    if (ok == 1) ok = key_arg(d, a[0], version, &k, &kn);
    if (ok < 0) return NULL;
    if (ok == 0) return SLOW(d, OP_SET, args, nargsf, kwnames);
    PyObject *data = encode(d, a[1]);
    if (!data) return NULL;
    const char *p;
    Py_ssize_t n;
    if (PyBytes_Check(data)) {
        p = PyBytes_AS_STRING(data);
        n = PyBytes_GET_SIZE(data);
    } else if (!(p = PyUnicode_AsUTF8AndSize(data, &n))) {
        Py_DECREF(data);
        return NULL;
    }
    corral *c = begin(d);
    if (!c) {
        Py_DECREF(data);
        return NULL;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = corral_set(c, k, (size_t)kn, p, (size_t)n, ttl_ms, &call);
    Py_END_ALLOW_THREADS corral_py_end(d->cache);
    Py_DECREF(data);
    if (rc < 0) return corral_py_raise(rc);
    Py_RETURN_NONE;
}

/* get_many(keys, version=None, ns=None): keys a list or tuple (an iterator could not be read
 * twice, so it takes the slow path). */
static PyObject *dj_get_many(DjangoObject *d, PyObject *const *args, size_t nargsf,
                             PyObject *kwnames) {
    PyObject *a[3] = { NULL, NULL, NULL };
    corral_call call = CORRAL_CALL_INIT;
    long long version = 0;
    int ok = spread(args, nargsf, kwnames, get_many_names, 1, a);
    if (ok == 1 && !PyList_CheckExact(a[0]) && !PyTuple_CheckExact(a[0])) ok = 0;
    if (ok == 1) ok = version_arg(d, a[1], &call, &version);
    if (ok == 1) ok = ns_arg(a[2], &call);
    if (ok < 0) return NULL;
    if (ok == 0) return SLOW(d, OP_GET_MANY, args, nargsf, kwnames);
    /* A tuple (a list copied): the keys' UTF-8 must outlive the call, which releases the GIL. */
    PyObject *keys = PySequence_Tuple(a[0]);
    if (!keys) return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(keys);
    corral_buf *bufs = PyMem_Calloc(n ? (size_t)n : 1, sizeof *bufs);
    corral_value **vals = PyMem_Calloc(n ? (size_t)n : 1, sizeof *vals);
    PyObject *res = NULL;
    if (!bufs || !vals) {
        PyErr_NoMemory();
        goto out;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *k = NULL;
        Py_ssize_t kn = 0;
        ok = key_arg(d, PyTuple_GET_ITEM(keys, i), version, &k, &kn);
        if (ok < 0) goto out;
        if (ok == 0) {
            res = SLOW(d, OP_GET_MANY, args, nargsf, kwnames);
            goto out;
        }
        bufs[i] = (corral_buf){ k, (size_t)kn };
    }
    corral *c = begin(d);
    if (!c) goto out;
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = corral_get_many(c, bufs, (size_t)n, &call, vals, NULL);
    Py_END_ALLOW_THREADS corral_py_end(d->cache);
    if (rc < 0) {
        corral_py_raise(rc);
        goto out;
    }
    if (!(res = PyDict_New())) goto out;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!vals[i]) continue;
        PyObject *v = decode(corral_value_data(vals[i]), corral_value_len(vals[i]));
        if (!v || PyDict_SetItem(res, PyTuple_GET_ITEM(keys, i), v) < 0) {
            Py_XDECREF(v);
            Py_CLEAR(res);
            break;
        }
        Py_DECREF(v);
    }
out:
    for (Py_ssize_t i = 0; vals && i < n; i++)
        corral_value_unref(vals[i]);
    PyMem_Free(vals);
    PyMem_Free(bufs);
    Py_DECREF(keys);
    return res;
}

/* ---- The type ---- */

static int dj_init(DjangoObject *d, PyObject *args, PyObject *kw) {
    static char *names[] = { "cache",           "key_prefix", "version",  "protocol",
                             "default_timeout", "sentinel",   "slow_get", "slow_set",
                             "slow_get_many",   NULL };
    PyObject *cache, *prefix, *protocol, *dflt, *sentinel, *slow[N_OPS];
    long long version = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!ULOOOOOO", names, &corral_py_cache_type, &cache,
                                     &prefix, &version, &protocol, &dflt, &sentinel, &slow[OP_GET],
                                     &slow[OP_SET], &slow[OP_GET_MANY]))
        return -1;
    if (!pickle_loads) {
        PyObject *m = PyImport_ImportModule("pickle");
        if (!m) return -1;
        pickle_loads = PyObject_GetAttrString(m, "loads");
        pickle_dumps = PyObject_GetAttrString(m, "dumps");
        Py_DECREF(m);
        if (!pickle_loads || !pickle_dumps) {
            Py_CLEAR(pickle_loads);
            Py_CLEAR(pickle_dumps);
            return -1;
        }
    }
    Py_ssize_t plen = PyUnicode_GET_LENGTH(prefix);
    d->prefix_ok = true;
    for (Py_ssize_t i = 0; i < plen; i++) {
        Py_UCS4 ch = PyUnicode_READ_CHAR(prefix, i);
        if (ch < 33 || ch == 127) d->prefix_ok = false;
    }
    d->header_chars = plen + 2;
    d->version = version;
    Py_XSETREF(d->cache, (CacheObject *)Py_NewRef(cache));
    Py_XSETREF(d->protocol, Py_NewRef(protocol));
    Py_XSETREF(d->default_timeout, Py_NewRef(dflt));
    Py_XSETREF(d->default_sentinel, Py_NewRef(sentinel));
    for (int i = 0; i < N_OPS; i++)
        Py_XSETREF(d->slow[i], Py_NewRef(slow[i]));
    return 0;
}

static int dj_traverse(DjangoObject *d, visitproc visit, void *arg) {
    Py_VISIT(d->cache);
    Py_VISIT(d->protocol);
    Py_VISIT(d->default_timeout);
    Py_VISIT(d->default_sentinel);
    for (int i = 0; i < N_OPS; i++)
        Py_VISIT(d->slow[i]);
    return 0;
}

static int dj_clear(DjangoObject *d) {
    Py_CLEAR(d->cache);
    Py_CLEAR(d->protocol);
    Py_CLEAR(d->default_timeout);
    Py_CLEAR(d->default_sentinel);
    for (int i = 0; i < N_OPS; i++)
        Py_CLEAR(d->slow[i]);
    return 0;
}

static void dj_dealloc(DjangoObject *d) {
    PyObject_GC_UnTrack(d);
    dj_clear(d);
    Py_TYPE(d)->tp_free((PyObject *)d);
}

#define FAST(name, fn, doc) \
    { name, (PyCFunction)(void (*)(void))fn, METH_FASTCALL | METH_KEYWORDS, doc }

static PyMethodDef dj_methods[] = {
    FAST("get", dj_get, "get(key, default=None, version=None, ns=None): Django's get"),
    FAST("set", dj_set,
         "set(key, value, timeout=DEFAULT_TIMEOUT, version=None, tags=None, ns=None): Django's "
         "set"),
    FAST("get_many", dj_get_many, "get_many(keys, version=None, ns=None): Django's get_many"),
    { NULL, NULL, 0, NULL }
};

static PyTypeObject django_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "corral._corral.DjangoOps",
    .tp_basicsize = sizeof(DjangoObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "DjangoOps(cache, key_prefix, version, protocol, default_timeout, sentinel, "
              "slow_get, slow_set, slow_get_many): CorralCache's get, set and get_many in C",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)dj_init,
    .tp_dealloc = (destructor)dj_dealloc,
    .tp_traverse = (traverseproc)dj_traverse,
    .tp_clear = (inquiry)dj_clear,
    .tp_methods = dj_methods,
};

int corral_py_django_add(PyObject *module) {
    if (PyType_Ready(&django_type) < 0) return -1;
    return PyModule_AddObjectRef(module, "DjangoOps", (PyObject *)&django_type);
}
