/*
 * _corral_load.c - the Cache methods that call back into Python: get_or_set (a producer),
 * on/emit (a rule's `when`), and the read-outs stats and metrics.
 *
 * get_or_set: corral_get_or_set runs with the GIL released; when this caller leads the flight,
 * corral calls `producer` on this thread, which takes the GIL back to call the Python callable
 * (PyGILState_Ensure). A callable that raises makes the producer return the code of the kept
 * exception (_corral.h): nothing is cached (stale-if-error may serve the old value), the caller
 * and every waiter of the flight raise that exception. A callable must return bytes.
 *
 * get_or_set(background=True): an early refresh or a refresh in grace runs on the handle's
 * refresh workers while callers keep the value they have (a miss still runs the producer in its
 * caller). corral keeps the producer's context until corral_close, so each (key, version, ns)
 * has one, holding the latest caller's callable (the refresh calls that one), freed at dealloc:
 * a Cache keeps at most `max_background_keys` of them (Cache(); default 65536) and refreshes
 * further keys in the caller. An exception of a producer on a worker goes to sys.unraisablehook
 * (and to any caller waiting on that flight).
 */
#include "_corral.h"

#include <string.h>

/* The producer context of the get_or_set call in progress on this thread: a producer called with
 * another one runs on a refresh worker, where nobody is there to raise its exception. */
static _Thread_local producer_ctx *calling;

static int py_producer(void *arg, const void *key, size_t key_len, corral_result *out) {
    (void)key;
    (void)key_len;
    producer_ctx *p = arg;
    bool on_worker = p != calling;
    PyGILState_STATE g = PyGILState_Ensure();
    int rc;
    PyObject *fn = p->fn; /* a later caller may replace p->fn during the call */
    Py_INCREF(fn);
    PyObject *r = PyObject_CallNoArgs(fn);
    if (r && !PyBytes_Check(r)) {
        PyErr_Format(PyExc_TypeError, "a producer returns bytes, not %.80s", Py_TYPE(r)->tp_name);
        Py_CLEAR(r);
    }
    if (!r) {
        /* Kept for the callers waiting on this flight; from a worker also reported, as an
         * exception in a thread is (sys.unraisablehook), since no caller raises it. */
        rc = corral_py_keep_exception(p->self);
        if (on_worker) {
            PyObject *exc = p->self->ring[(unsigned)(EXC_BASE - rc) % EXC_RING].exc;
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
            PyErr_WriteUnraisable(fn);
        }
    } else {
        rc = corral_result_set(out, PyBytes_AS_STRING(r), (size_t)PyBytes_GET_SIZE(r));
        Py_DECREF(r);
    }
    Py_DECREF(fn);
    PyGILState_Release(g);
    return rc;
}

void corral_py_bg_free(CacheObject *self) {
    for (producer_ctx *p = self->bg, *next; p; p = next) {
        next = p->next;
        Py_CLEAR(p->fn);
        PyMem_Free(p);
    }
    self->bg = NULL;
    self->n_bg = 0;
    Py_CLEAR(self->bg_index);
}

/* The background context of (key, version, ns), made on first use, now holding `fn`. Returns
 * it, or NULL with no exception when the Cache has max_background_keys already, or NULL
 * (raised). */
static producer_ctx *bg_ctx(CacheObject *self, PyObject *key, PyObject *version, PyObject *ns,
                            PyObject *fn) {
    if (!self->bg_index && !(self->bg_index = PyDict_New())) return NULL;
    PyObject *id = PyTuple_Pack(3, key, version ? version : Py_None, ns ? ns : Py_None);
    if (!id) return NULL;
    producer_ctx *p = NULL;
    PyObject *cap = PyDict_GetItemWithError(self->bg_index, id);
    if (cap) {
        p = PyCapsule_GetPointer(cap, NULL);
    } else if (!PyErr_Occurred() && self->n_bg < self->max_bg) {
        if (!(p = PyMem_Calloc(1, sizeof *p))) {
            PyErr_NoMemory();
        } else if (!(cap = PyCapsule_New(p, NULL, NULL)) ||
                   PyDict_SetItem(self->bg_index, id, cap) < 0) {
            Py_XDECREF(cap);
            PyMem_Free(p);
            p = NULL;
        } else {
            Py_DECREF(cap);
            p->self = self;
            p->next = self->bg;
            self->bg = p;
            self->n_bg++;
            corral_py_bg_listed(self);
        }
    }
    Py_DECREF(id);
    if (p) {
        Py_INCREF(fn);
        Py_XSETREF(p->fn, fn);
    }
    return p;
}

static int seconds_ms(PyObject *obj, int64_t *ms) {
    if (!obj || obj == Py_None) return 0;
    double s = PyFloat_AsDouble(obj);
    if (s == -1.0 && PyErr_Occurred()) return -1;
    *ms = s > 0 ? (int64_t)(s * 1000.0 + 0.5) : 0;
    return 0;
}

PyObject *corral_py_get_or_set(CacheObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = { "key",     "producer",       "ttl",    "stale_ttl",
                             "beta",    "stale_if_error", "tags",   "ns",
                             "version", "wait_timeout",   "jitter", "background",
                             NULL };
    PyObject *key, *fn, *ttl = NULL, *stale = NULL, *sie = NULL, *tags = NULL, *ns = NULL;
    PyObject *version = NULL, *wait = NULL;
    double beta = 1.0, jitter = 0.0;
    int background = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|O$OdOOOOOdp", names, &key, &fn, &ttl, &stale,
                                     &beta, &sie, &tags, &ns, &version, &wait, &jitter,
                                     &background))
        return NULL;
    if (!PyCallable_Check(fn)) {
        PyErr_SetString(PyExc_TypeError, "producer must be callable");
        return NULL;
    }
    corral_load_opts o;
    corral_load_opts_init(&o);
    o.beta = beta;
    o.ttl_jitter = jitter;
    const char *k;
    Py_ssize_t kn;
    call_args a;
    if (corral_py_key(key, &k, &kn) < 0 || corral_py_ttl(ttl, &o.ttl_ms) < 0 ||
        seconds_ms(stale, &o.stale_ttl_ms) < 0 || seconds_ms(sie, &o.stale_if_error_ms) < 0 ||
        seconds_ms(wait, &o.wait_timeout_ms) < 0)
        return NULL;
    if (corral_py_call_args(&a, version, ns, tags) < 0) return NULL;
    o.call = a.call;
    /* TTL 0 makes the value and hands it back without caching it. */
    bool no_cache = o.ttl_ms == 0;
    if (no_cache) o.ttl_ms = CORRAL_TTL_DEFAULT;
    producer_ctx p = { self, fn, NULL }, *ctx = &p;
    if (background && !no_cache) {
        if (!(ctx = bg_ctx(self, key, version, ns, fn))) {
            if (PyErr_Occurred()) {
                corral_py_call_args_done(&a);
                return NULL;
            }
            ctx = &p; /* max_background_keys already: refresh in the caller */
        }
        o.background = ctx != &p;
    }
    PyObject *res = NULL;
    corral *c = corral_py_begin(self);
    if (c) {
        corral_value *v = NULL;
        int rc;
        if (no_cache) { /* Django's timeout 0: make the value, store nothing, drop the old */
            PyObject *r = PyObject_CallNoArgs(fn);
            if (r && !PyBytes_Check(r)) {
                PyErr_SetString(PyExc_TypeError, "a producer returns bytes");
                Py_CLEAR(r);
            }
            if (r) {
                Py_BEGIN_ALLOW_THREADS rc = corral_delete(c, k, (size_t)kn, &o.call);
                Py_END_ALLOW_THREADS if (rc < 0) Py_CLEAR(r);
                if (rc < 0) corral_py_raise(rc);
            }
            corral_py_end(self);
            corral_py_call_args_done(&a);
            return r;
        }
        producer_ctx *outer = calling;
        calling = ctx;
        Py_BEGIN_ALLOW_THREADS rc = corral_get_or_set(c, k, (size_t)kn, py_producer, ctx, &o, &v);
        Py_END_ALLOW_THREADS corral_py_end(self);
        calling = outer;
        if (rc <= EXC_BASE) {
            corral_py_raise_kept(self, rc);
        } else if (rc < 0) {
            corral_py_raise(rc);
        } else {
            res = PyBytes_FromStringAndSize(corral_value_data(v), (Py_ssize_t)corral_value_len(v));
            corral_value_unref(v);
        }
    }
    corral_py_call_args_done(&a);
    return res;
}

/* ---- Events ---- */

struct rule_ctx {
    CacheObject *self; /* borrowed: the context lives no longer than the Cache */
    PyObject *when;
    rule_ctx *next;
};

static int py_when(void *arg, const char *event, const corral_field *fields, size_t n) {
    rule_ctx *r = arg;
    PyGILState_STATE g = PyGILState_Ensure();
    int rc = -1;
    PyObject *d = PyDict_New();
    for (size_t i = 0; d && i < n; i++) {
        PyObject *v = PyUnicode_FromString(fields[i].value ? fields[i].value : "");
        if (!v || PyDict_SetItemString(d, fields[i].name, v) < 0) Py_CLEAR(d);
        Py_XDECREF(v);
    }
    PyObject *res = d ? PyObject_CallFunction(r->when, "sO", event, d) : NULL;
    int truth = res ? PyObject_IsTrue(res) : -1;
    rc = truth < 0 ? corral_py_keep_exception(r->self) : truth;
    Py_XDECREF(res);
    Py_XDECREF(d);
    PyGILState_Release(g);
    return rc;
}

void corral_py_rules_free(CacheObject *self) {
    for (rule_ctx *r = self->rules, *next; r; r = next) {
        next = r->next;
        Py_CLEAR(r->when);
        PyMem_Free(r);
    }
    self->rules = NULL;
}

/* Converts an iterable of str into a PyMem array of UTF-8 pointers (borrowed from `*fast`). */
static int str_array(PyObject *obj, PyObject **fast, const char ***arr, size_t *n) {
    *fast = NULL;
    *arr = NULL;
    *n = 0;
    if (!obj || obj == Py_None) return 0;
    if (PyUnicode_Check(obj)) {
        PyErr_SetString(PyExc_TypeError, "an iterable of str, not a str");
        return -1;
    }
    if (!(*fast = PySequence_Fast(obj, "an iterable of str"))) return -1;
    Py_ssize_t len = PySequence_Fast_GET_SIZE(*fast);
    *arr = PyMem_Calloc(len ? (size_t)len : 1, sizeof **arr);
    if (!*arr) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        PyObject *s = PySequence_Fast_GET_ITEM(*fast, i);
        if (!PyUnicode_Check(s)) {
            PyErr_SetString(PyExc_TypeError, "an iterable of str");
            return -1;
        }
        if (!((*arr)[i] = PyUnicode_AsUTF8(s))) return -1;
    }
    *n = (size_t)len;
    return 0;
}

PyObject *corral_py_on(CacheObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = { "event", "keys", "tags", "namespaces", "when", NULL };
    const char *event;
    PyObject *keys = NULL, *tags = NULL, *nss = NULL, *when = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|$OOOO", names, &event, &keys, &tags, &nss, &when))
        return NULL;
    if (when == Py_None) when = NULL;
    if (when && !PyCallable_Check(when)) {
        PyErr_SetString(PyExc_TypeError, "when must be callable");
        return NULL;
    }
    PyObject *fast[3] = { NULL, NULL, NULL }, *res = NULL;
    corral_rule rule;
    memset(&rule, 0, sizeof rule);
    const char **arr[3] = { NULL, NULL, NULL };
    rule_ctx *ctx = NULL;
    if (str_array(keys, &fast[0], &arr[0], &rule.n_keys) < 0 ||
        str_array(tags, &fast[1], &arr[1], &rule.n_tags) < 0 ||
        str_array(nss, &fast[2], &arr[2], &rule.n_namespaces) < 0)
        goto out;
    rule.keys = arr[0];
    rule.tags = arr[1];
    rule.namespaces = arr[2];
    if (when) {
        if (!(ctx = PyMem_Calloc(1, sizeof *ctx))) {
            PyErr_NoMemory();
            goto out;
        }
        ctx->self = self;
        ctx->when = when;
        Py_INCREF(when);
        rule.when = py_when;
        rule.when_arg = ctx;
    }
    corral *c = corral_py_begin(self);
    if (!c) goto out;
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = corral_on(c, event, &rule);
    Py_END_ALLOW_THREADS corral_py_end(self);
    if (rc < 0) {
        corral_py_raise(rc);
        goto out;
    }
    if (ctx) { /* corral keeps the pointer until close; the Cache frees it at dealloc */
        ctx->next = self->rules;
        self->rules = ctx;
        ctx = NULL;
    }
    res = (Py_INCREF(Py_None), Py_None);
out:
    if (ctx) {
        Py_XDECREF(ctx->when);
        PyMem_Free(ctx);
    }
    for (int i = 0; i < 3; i++) {
        PyMem_Free(arr[i]);
        Py_XDECREF(fast[i]);
    }
    return res;
}

PyObject *corral_py_emit(CacheObject *self, PyObject *args, PyObject *kw) {
    const char *event;
    if (!PyArg_ParseTuple(args, "s", &event)) return NULL;
    Py_ssize_t n = kw ? PyDict_Size(kw) : 0;
    corral_field *fields = PyMem_Calloc(n ? (size_t)n : 1, sizeof *fields);
    PyObject *strs = PyList_New(0), *res = NULL;
    if (!fields || !strs) {
        PyErr_NoMemory();
        goto out;
    }
    Py_ssize_t pos = 0, i = 0;
    PyObject *name, *value;
    while (kw && PyDict_Next(kw, &pos, &name, &value)) {
        PyObject *s = PyObject_Str(value);
        if (!s || PyList_Append(strs, s) < 0) {
            Py_XDECREF(s);
            goto out;
        }
        Py_DECREF(s);
        fields[i].name = PyUnicode_AsUTF8(name);
        fields[i].value = PyUnicode_AsUTF8(s);
        if (!fields[i].name || !fields[i].value) goto out;
        i++;
    }
    corral *c = corral_py_begin(self);
    if (!c) goto out;
    int rc;
    size_t busted = 0;
    Py_BEGIN_ALLOW_THREADS rc = corral_emit(c, event, fields, (size_t)n, &busted);
    Py_END_ALLOW_THREADS corral_py_end(self);
    if (rc <= EXC_BASE)
        corral_py_raise_kept(self, rc);
    else if (rc < 0)
        corral_py_raise(rc);
    else
        res = PyLong_FromSize_t(busted);
out:
    PyMem_Free(fields);
    Py_XDECREF(strs);
    return res;
}

/* ---- Read-outs ---- */

static PyObject *prefix_dict(const corral_prefix_stats *p) {
    return Py_BuildValue(
        "{s:s,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:d,s:L,s:L}", "prefix", p->prefix,
        "hits", (unsigned long long)p->hits, "misses", (unsigned long long)p->misses, "sets",
        (unsigned long long)p->sets, "deletes", (unsigned long long)p->deletes, "evictions",
        (unsigned long long)p->evictions, "expirations", (unsigned long long)p->expirations,
        "loads", (unsigned long long)p->loads, "load_errors", (unsigned long long)p->load_errors,
        "load_waiters", (unsigned long long)p->load_waiters, "early_refreshes",
        (unsigned long long)p->early_refreshes, "stale_served", (unsigned long long)p->stale_served,
        "lease_timeouts", (unsigned long long)p->lease_timeouts, "load_seconds",
        (double)p->load_ns / 1e9, "items", (long long)p->items, "bytes", (long long)p->bytes);
}

PyObject *corral_py_stats(CacheObject *self, PyObject *unused) {
    (void)unused;
    corral *c = corral_py_begin(self);
    if (!c) return NULL;
    corral_stats_snapshot *s = NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = corral_stats(c, &s);
    Py_END_ALLOW_THREADS corral_py_end(self);
    if (rc < 0) return corral_py_raise(rc);
    PyObject *prefixes = PyList_New((Py_ssize_t)s->n_prefixes), *total = prefix_dict(&s->total);
    PyObject *res = NULL;
    for (size_t i = 0; prefixes && i < s->n_prefixes; i++) {
        PyObject *d = prefix_dict(&s->prefixes[i]);
        if (!d) {
            Py_CLEAR(prefixes);
            break;
        }
        PyList_SET_ITEM(prefixes, (Py_ssize_t)i, d);
    }
    if (prefixes && total)
        res = Py_BuildValue("{s:O,s:O,s:n,s:n}", "total", total, "prefixes", prefixes,
                            "max_memory_bytes", (Py_ssize_t)s->max_memory_bytes, "used_bytes",
                            (Py_ssize_t)s->used_bytes);
    Py_XDECREF(prefixes);
    Py_XDECREF(total);
    corral_stats_free(c, s);
    return res;
}

PyObject *corral_py_metrics(CacheObject *self, PyObject *unused) {
    (void)unused;
    corral *c = corral_py_begin(self);
    if (!c) return NULL;
    char *text = NULL;
    size_t len = 0;
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = corral_metrics_write(c, &text, &len);
    Py_END_ALLOW_THREADS corral_py_end(self);
    if (rc < 0) return corral_py_raise(rc);
    PyObject *res = PyUnicode_DecodeUTF8(text, (Py_ssize_t)len, "replace");
    corral_free(c, text);
    return res;
}
