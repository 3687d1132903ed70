/* A streaming scanner of a worksheet's XML and its shared strings table (see shared/spreadsheet/xlsx_fast.py).
 *
 * SharedStrings: the table as one UTF-8 buffer and an offsets array, fed in chunks; a Python str is
 * made only when a cell asks for one (a cache of recent ones was measured slower: most strings of a
 * large sheet are used once).
 * SheetParser: fed the sheet's XML in chunks, returns the rows completed so far as (number, cells)
 * tuples, cells typed exactly as shared/spreadsheet/xlsx_stream.py types them. Anything unusual (an entity HTML
 * knows but XML does not, a date, an ISO date cell) is handed to a Python callable so the two readers
 * cannot drift apart. Malformed input raises WorkbookError (the class is given by the Python side);
 * nothing is read outside the buffers, whatever the bytes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_PENDING (64u << 20) /* one row (or one shared string) may be at most this much XML */
#define MAX_COLUMN 16384        /* Excel's limit: XFD */

static PyObject *WorkbookError = NULL; /* set by set_error_class() */

static void fail(const char *message) {
    PyErr_SetString(WorkbookError ? WorkbookError : PyExc_ValueError, message);
}

/* ---- growable byte buffer ---------------------------------------------------------------------- */

typedef struct {
    char *data;
    size_t len, cap;
} Buf;

static int buf_reserve(Buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    char *data = PyMem_Realloc(b->data, cap);
    if (!data) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

static int buf_put(Buf *b, const char *s, size_t n) {
    if (n == 0) return 0;
    if (buf_reserve(b, n) < 0) return -1;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

static void buf_free(Buf *b) {
    PyMem_Free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* Drop the first n bytes (what was parsed), keeping the rest for the next chunk. */
static void buf_consume(Buf *b, size_t n) {
    if (n >= b->len) {
        b->len = 0;
    } else if (n) {
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
    }
    /* a large row once must not pin a large buffer for the rest of the sheet */
    if (b->cap > (8u << 20) && b->len < b->cap / 4) {
        size_t cap = b->len > 4096 ? b->len : 4096;
        char *data = PyMem_Realloc(b->data, cap);
        if (data) {
            b->data = data;
            b->cap = cap;
        }
    }
}

/* ---- XML scanning helpers (all bounded by `end`) ----------------------------------------------- */

static inline int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static inline int is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.' || c == ':' || (unsigned char)c >= 0x80;
}

/* p points just after '<'. If the tag's (possibly prefixed) local name is `name` followed by a
 * delimiter (space, '>' or '/'), return a pointer just past the name; else NULL. Returns `end` when
 * the buffer ends before that can be told. */
static const char *match_tag(const char *p, const char *end, const char *name, size_t n) {
    const char *q = p;
    while (q < end && is_name_char(*q) && *q != ':') q++;
    if (q >= end) return end;
    const char *local = p;
    if (*q == ':') {
        local = q + 1;
        q = local;
        while (q < end && is_name_char(*q)) q++;
        if (q >= end) return end;
    }
    if ((size_t)(q - local) != n || memcmp(local, name, n) != 0) return NULL;
    if (is_space(*q) || *q == '>' || *q == '/') return q;
    return NULL;
}

/* p points at '<'. Whether it is the closing tag of `name` (any prefix); sets *after past '>'.
 * Returns 1 yes, 0 no, -1 the buffer ends first. */
static int closing_tag(const char *p, const char *end, const char *name, size_t n, const char **after) {
    if (p + 1 >= end) return -1;
    if (p[1] != '/') return 0;
    const char *q = p + 2;
    const char *start = q;
    while (q < end && is_name_char(*q) && *q != ':') q++;
    if (q >= end) return -1;
    const char *local = start;
    if (*q == ':') {
        local = q + 1;
        q = local;
        while (q < end && is_name_char(*q)) q++;
        if (q >= end) return -1;
    }
    if ((size_t)(q - local) != n || memcmp(local, name, n) != 0) return 0;
    while (q < end && is_space(*q)) q++;
    if (q >= end) return -1;
    if (*q != '>') return 0;
    *after = q + 1;
    return 1;
}

/* From inside a start tag (just past its name), find its end. Sets *attrs_end at the '>' or "/>"
 * and *self_closing. Returns the pointer past '>' or NULL when the buffer ends first. */
static const char *tag_end(const char *p, const char *end, const char **attrs_end, int *self_closing) {
    char quote = 0;
    for (const char *q = p; q < end; q++) {
        char c = *q;
        if (quote) {
            if (c == quote) quote = 0;
        } else if (c == '"' || c == '\'') {
            quote = c;
        } else if (c == '>') {
            *self_closing = q > p && q[-1] == '/';
            *attrs_end = *self_closing ? q - 1 : q;
            return q + 1;
        }
    }
    return NULL;
}

/* The next attribute in [p, end): name and value spans. Returns the pointer after it, or NULL. */
static const char *next_attr(const char *p, const char *end, const char **name, size_t *name_len, const char **value,
                             size_t *value_len) {
    while (p < end && is_space(*p)) p++;
    const char *n0 = p;
    while (p < end && is_name_char(*p)) p++;
    if (p == n0) return NULL;
    *name = n0;
    *name_len = (size_t)(p - n0);
    while (p < end && is_space(*p)) p++;
    if (p >= end || *p != '=') return NULL;
    p++;
    while (p < end && is_space(*p)) p++;
    if (p >= end || (*p != '"' && *p != '\'')) return NULL;
    char quote = *p++;
    const char *v0 = p;
    while (p < end && *p != quote) p++;
    if (p >= end) return NULL;
    *value = v0;
    *value_len = (size_t)(p - v0);
    return p + 1;
}

/* Skip a markup construct at p ('<' ...) that is not an element we read: comment, CDATA, processing
 * instruction, declaration or any other tag. Returns the pointer past it, or NULL (buffer ends).
 * A DTD or entity declaration is refused: sets an error and *error. */
static const char *skip_markup(const char *p, const char *end, int *error) {
    if (p + 1 >= end) return NULL;
    if (p[1] == '!') {
        if (end - p >= 4 && memcmp(p, "<!--", 4) == 0) {
            for (const char *q = p + 4; q + 2 < end; q++)
                if (q[0] == '-' && q[1] == '-' && q[2] == '>') return q + 3;
            return NULL;
        }
        if (end - p >= 9 && memcmp(p, "<![CDATA[", 9) == 0) {
            for (const char *q = p + 9; q + 2 < end; q++)
                if (q[0] == ']' && q[1] == ']' && q[2] == '>') return q + 3;
            return NULL;
        }
        if (end - p < 9) return NULL;
        fail("the workbook's XML declares a DTD or an entity (<!DOCTYPE>, <!ENTITY>): entity declarations are refused");
        *error = 1;
        return NULL;
    }
    if (p[1] == '?') {
        for (const char *q = p + 2; q + 1 < end; q++)
            if (q[0] == '?' && q[1] == '>') return q + 2;
        return NULL;
    }
    const char *attrs_end;
    int self_closing;
    return tag_end(p + 1, end, &attrs_end, &self_closing);
}

/* ---- text: entities, CDATA, _xHHHH_ escapes ----------------------------------------------------- */

static void put_utf8(Buf *out, uint32_t cp) {
    char s[4];
    size_t n;
    if (cp < 0x80) {
        s[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        s[0] = (char)(0xC0 | (cp >> 6));
        s[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        s[0] = (char)(0xE0 | (cp >> 12));
        s[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        s[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        s[0] = (char)(0xF0 | (cp >> 18));
        s[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        s[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        s[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    buf_put(out, s, n);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decode XML character data [p, end) (text and CDATA sections) into out. `newlines`: XML's end-of-line
 * rule (CR LF and CR become LF), as an XML parser applies it. Returns 0, or 1 when the text holds
 * something only the Python side decodes (an entity XML does not define, a character reference to a
 * code point XML does not allow), or -1 on memory error. */
static int decode_xml_text(const char *p, const char *end, Buf *out, int newlines) {
    while (p < end) {
        const char *q = p;
        while (q < end && *q != '&' && *q != '<' && !(newlines && *q == '\r')) q++;
        if (q > p && buf_put(out, p, (size_t)(q - p)) < 0) return -1;
        if (q >= end) break;
        if (*q == '\r') {
            buf_put(out, "\n", 1);
            p = (q + 1 < end && q[1] == '\n') ? q + 2 : q + 1;
            continue;
        }
        if (*q == '<') {
            if (end - q >= 12 && memcmp(q, "<![CDATA[", 9) == 0) {
                const char *s = q + 9, *e = s;
                while (e + 2 < end && !(e[0] == ']' && e[1] == ']' && e[2] == '>')) e++;
                if (e + 2 >= end) return 1;
                if (buf_put(out, s, (size_t)(e - s)) < 0) return -1;
                p = e + 3;
                continue;
            }
            return 1;
        }
        /* an entity */
        const char *semi = q + 1;
        while (semi < end && semi - q < 12 && *semi != ';') semi++;
        if (semi >= end || *semi != ';') return 1;
        const char *name = q + 1;
        size_t n = (size_t)(semi - name);
        if (n == 3 && memcmp(name, "amp", 3) == 0) buf_put(out, "&", 1);
        else if (n == 2 && memcmp(name, "lt", 2) == 0) buf_put(out, "<", 1);
        else if (n == 2 && memcmp(name, "gt", 2) == 0) buf_put(out, ">", 1);
        else if (n == 4 && memcmp(name, "quot", 4) == 0) buf_put(out, "\"", 1);
        else if (n == 4 && memcmp(name, "apos", 4) == 0) buf_put(out, "'", 1);
        else if (n >= 2 && name[0] == '#') {
            uint32_t cp = 0;
            size_t i = 1;
            int hex = name[1] == 'x';
            if (hex) i = 2;
            if (i >= n) return 1;
            for (; i < n; i++) {
                int d = hex ? hexval(name[i]) : (name[i] >= '0' && name[i] <= '9' ? name[i] - '0' : -1);
                if (d < 0) return 1;
                cp = cp * (hex ? 16 : 10) + (uint32_t)d;
                if (cp > 0x10FFFF) return 1;
            }
            /* Where XML and HTML disagree (NUL, C1 controls, surrogates) the Python side decides. */
            if (cp == 0 || (cp >= 0x80 && cp <= 0x9F) || (cp >= 0xD800 && cp <= 0xDFFF)) return 1;
            put_utf8(out, cp);
        } else {
            return 1;
        }
        if (PyErr_Occurred()) return -1;
        p = semi + 1;
    }
    return PyErr_Occurred() ? -1 : 0;
}

/* OOXML's escapes of characters XML cannot carry: _xHHHH_ is the UTF-16 code unit HHHH. In place
 * over buf[start:], single pass left to right (as re.sub does). */
static void decode_ooxml_escapes(Buf *b, size_t start) {
    if (!b->data || b->len <= start) return;
    char *s = b->data + start, *end = b->data + b->len, *w = s;
    char *r = s;
    int found = 0;
    for (char *q = s; q + 6 < end; q++)
        if (q[0] == '_' && q[1] == 'x') {
            found = 1;
            break;
        }
    if (!found) return;
    while (r < end) {
        if (r + 6 < end && r[0] == '_' && r[1] == 'x' && r[6] == '_') {
            int a = hexval(r[2]), c = hexval(r[3]), d = hexval(r[4]), e = hexval(r[5]);
            if (a >= 0 && c >= 0 && d >= 0 && e >= 0) {
                uint32_t cp = (uint32_t)((a << 12) | (c << 8) | (d << 4) | e);
                /* at most 3 bytes written for the 7 read: w never passes r */
                char tmp[4];
                Buf t = {tmp, 0, 4};
                put_utf8(&t, cp);
                memcpy(w, tmp, t.len);
                w += t.len;
                r += 7;
                continue;
            }
        }
        *w++ = *r++;
    }
    b->len = (size_t)(w - b->data);
}

static inline int has_ooxml_escape(const char *p, const char *end) {
    for (; p + 1 < end; p++)
        if (p[0] == '_' && p[1] == 'x') return 1;
    return 0;
}

/* ---- SharedStrings ----------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    Buf text;          /* every string, UTF-8, back to back */
    uint32_t *offsets; /* offsets[i]..offsets[i+1] is string i; count+1 entries */
    size_t count, offsets_cap;
    Buf pending; /* XML not parsed yet */
    Buf scratch;
    int done;
} SharedStrings;

static int ss_init(SharedStrings *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "", kwlist)) return -1;
    if (self->offsets) return 0; /* __init__ called again */
    self->offsets = PyMem_Malloc(1024 * sizeof(uint32_t));
    if (!self->offsets) {
        PyErr_NoMemory();
        return -1;
    }
    self->offsets_cap = 1024;
    self->offsets[0] = 0;
    self->count = 0;
    return 0;
}

static void ss_dealloc(SharedStrings *self) {
    PyMem_Free(self->offsets);
    buf_free(&self->text);
    buf_free(&self->pending);
    buf_free(&self->scratch);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Append the string whose raw <t> texts were gathered in scratch (already entity-decoded). */
static int ss_push(SharedStrings *self) {
    size_t start = self->text.len;
    if (buf_put(&self->text, self->scratch.data ? self->scratch.data : "", self->scratch.len) < 0) return -1;
    decode_ooxml_escapes(&self->text, start);
    if (self->text.len > UINT32_MAX) {
        fail("the workbook's shared strings table is over 4 GB");
        return -1;
    }
    if (self->count + 2 > self->offsets_cap) {
        size_t cap = self->offsets_cap * 2;
        uint32_t *o = PyMem_Realloc(self->offsets, cap * sizeof(uint32_t));
        if (!o) {
            PyErr_NoMemory();
            return -1;
        }
        self->offsets = o;
        self->offsets_cap = cap;
    }
    self->count++;
    self->offsets[self->count] = (uint32_t)self->text.len;
    return 0;
}

/* Parse one <si> whose content is [p, end): the text of every <t> not inside <rPh>, joined.
 * Returns 0, or -1 with an error set. */
static int ss_item(SharedStrings *self, const char *p, const char *end) {
    self->scratch.len = 0;
    int phonetic = 0;
    while (p < end) {
        const char *lt = memchr(p, '<', (size_t)(end - p));
        if (!lt) break;
        const char *after;
        if (lt + 1 < end && lt[1] == '/') {
            if (phonetic && closing_tag(lt, end, "rPh", 3, &after) == 1) phonetic = 0;
            const char *gt = memchr(lt, '>', (size_t)(end - lt));
            if (!gt) break;
            p = gt + 1;
            continue;
        }
        const char *name_end;
        if (!phonetic && (name_end = match_tag(lt + 1, end, "t", 1)) != NULL && name_end != end) {
            const char *attrs_end;
            int self_closing;
            const char *body = tag_end(name_end, end, &attrs_end, &self_closing);
            if (!body) break;
            if (self_closing) {
                p = body;
                continue;
            }
            /* the text runs to the next '<' that is not a CDATA section */
            const char *q = body;
            while (q < end) {
                const char *l = memchr(q, '<', (size_t)(end - q));
                if (!l) {
                    q = end;
                    break;
                }
                if (end - l >= 9 && memcmp(l, "<![CDATA[", 9) == 0) {
                    const char *e = l + 9;
                    while (e + 2 < end && !(e[0] == ']' && e[1] == ']' && e[2] == '>')) e++;
                    q = e + 3 <= end ? e + 3 : end;
                    continue;
                }
                q = l;
                break;
            }
            int r = decode_xml_text(body, q, &self->scratch, 1);
            if (r < 0) return -1;
            if (r > 0) {
                fail("the workbook's shared strings hold an entity XML does not define (or a malformed one)");
                return -1;
            }
            p = q;
            continue;
        }
        if (!phonetic && (name_end = match_tag(lt + 1, end, "rPh", 3)) != NULL && name_end != end) {
            const char *attrs_end;
            int self_closing;
            const char *body = tag_end(name_end, end, &attrs_end, &self_closing);
            if (!body) break;
            if (!self_closing) phonetic = 1;
            p = body;
            continue;
        }
        int error = 0;
        const char *next = skip_markup(lt, end, &error);
        if (error) return -1;
        if (!next) break;
        p = next;
    }
    return ss_push(self);
}

/* Parse every complete <si> in pending. */
static int ss_parse(SharedStrings *self, int final) {
    const char *start = self->pending.data, *p = start, *end = start + self->pending.len;
    const char *keep = end; /* where unparsed input starts */
    while (p < end) {
        const char *lt = memchr(p, '<', (size_t)(end - p));
        if (!lt) {
            keep = end;
            break;
        }
        const char *name_end = match_tag(lt + 1, end, "si", 2);
        if (name_end == end) {
            keep = lt;
            break;
        }
        if (name_end) {
            const char *attrs_end;
            int self_closing;
            const char *body = tag_end(name_end, end, &attrs_end, &self_closing);
            if (!body) {
                keep = lt;
                break;
            }
            if (self_closing) {
                self->scratch.len = 0;
                if (ss_push(self) < 0) return -1;
                p = body;
                continue;
            }
            /* find </si> */
            const char *q = body, *after = NULL;
            int found = 0;
            while (q < end) {
                const char *l = memchr(q, '<', (size_t)(end - q));
                if (!l) break;
                int c = closing_tag(l, end, "si", 2, &after);
                if (c < 0) break;
                if (c == 1) {
                    found = 1;
                    if (ss_item(self, body, l) < 0) return -1;
                    break;
                }
                q = l + 1;
            }
            if (!found) {
                keep = lt;
                break;
            }
            p = after;
            continue;
        }
        int error = 0;
        const char *next = skip_markup(lt, end, &error);
        if (error) return -1;
        if (!next) {
            keep = lt;
            break;
        }
        p = next;
    }
    if (p >= end) keep = end;
    size_t left = self->pending.len - (size_t)(keep - start);
    if (final && left) {
        /* trailing bytes: white space or an unfinished element */
        for (const char *q = keep; q < end; q++)
            if (!is_space(*q)) {
                fail("the workbook's shared strings XML ends in the middle of an element (truncated?)");
                return -1;
            }
    }
    if (left > MAX_PENDING) {
        fail("the workbook's shared strings hold one string of over 64 MB of XML (or the XML is malformed)");
        return -1;
    }
    buf_consume(&self->pending, (size_t)(keep - start));
    return 0;
}

static PyObject *ss_feed(SharedStrings *self, PyObject *arg) {
    Py_buffer view;
    if (self->done) {
        fail("the shared strings table was already finished");
        return NULL;
    }
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    int r = buf_put(&self->pending, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    if (r < 0 || ss_parse(self, 0) < 0) return NULL;
    return PyLong_FromSize_t(self->count);
}

static PyObject *ss_finish(SharedStrings *self, PyObject *Py_UNUSED(ignored)) {
    if (!self->done) {
        if (ss_parse(self, 1) < 0) return NULL;
        self->done = 1;
        buf_free(&self->pending);
        buf_free(&self->scratch);
        /* hold no more than the table: at most the size of its XML */
        if (self->text.cap > self->text.len && self->text.len) {
            char *data = PyMem_Realloc(self->text.data, self->text.len);
            if (data) {
                self->text.data = data;
                self->text.cap = self->text.len;
            }
        }
        if (self->offsets_cap > self->count + 1) {
            uint32_t *o = PyMem_Realloc(self->offsets, (self->count + 1) * sizeof(uint32_t));
            if (o) {
                self->offsets = o;
                self->offsets_cap = self->count + 1;
            }
        }
    }
    Py_RETURN_NONE;
}

static PyObject *ss_get(SharedStrings *self, size_t index) {
    uint32_t a = self->offsets[index], b = self->offsets[index + 1];
    PyObject *s = PyUnicode_DecodeUTF8(self->text.data ? self->text.data + a : "", (Py_ssize_t)(b - a), "surrogatepass");
    if (!s) {
        PyErr_Clear();
        fail("the workbook's shared strings are not valid UTF-8 text");
        return NULL;
    }
    return s;
}

static Py_ssize_t ss_len(SharedStrings *self) { return (Py_ssize_t)self->count; }

static PyObject *ss_item_py(SharedStrings *self, Py_ssize_t index) {
    if (index < 0 || (size_t)index >= self->count) {
        PyErr_SetString(PyExc_IndexError, "shared string index out of range");
        return NULL;
    }
    return ss_get(self, (size_t)index);
}

static PyObject *ss_nbytes(SharedStrings *self, void *Py_UNUSED(closure)) {
    return PyLong_FromSize_t(self->text.cap + self->offsets_cap * sizeof(uint32_t) + self->pending.cap +
                             self->scratch.cap);
}

static PyObject *ss_done(SharedStrings *self, void *Py_UNUSED(closure)) { return PyBool_FromLong(self->done); }

static PyMethodDef ss_methods[] = {
    {"feed", (PyCFunction)ss_feed, METH_O, "Parse a chunk of sharedStrings.xml; returns the strings known so far."},
    {"finish", (PyCFunction)ss_finish, METH_NOARGS, "The end of the XML: raises if it stops inside an element."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef ss_getset[] = {
    {"nbytes", (getter)ss_nbytes, NULL, "bytes of memory held", NULL},
    {"done", (getter)ss_done, NULL, "whether the whole table was read", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods ss_as_sequence = {
    .sq_length = (lenfunc)ss_len,
    .sq_item = (ssizeargfunc)ss_item_py,
};

static PyTypeObject SharedStringsType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shared.spreadsheet._xlsx_fast.SharedStrings",
    .tp_basicsize = sizeof(SharedStrings),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A shared strings table in one buffer, fed in chunks of XML.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)ss_init,
    .tp_dealloc = (destructor)ss_dealloc,
    .tp_methods = ss_methods,
    .tp_getset = ss_getset,
    .tp_as_sequence = &ss_as_sequence,
};

/* ---- SheetParser ------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    SharedStrings *strings; /* may be NULL */
    PyObject *load_more;    /* callable: loads more shared strings, returns False at the end */
    PyObject *date_styles;  /* bytes: date_styles[i] != 0 when style i shows a date */
    PyObject *to_date;      /* callable(number) -> value */
    PyObject *text;         /* callable(raw str) -> str: the Python reader's text decoding */
    PyObject *iso;          /* callable(raw str) -> value, for t="d" cells */
    Buf pending;
    Buf scratch;
    long long number; /* the last row's number */
    /* Formula cells with no cached value (a file written by a program that does not calculate): read as
       empty; (row, 0-based column) of the first MAX_UNCACHED kept for the import's warning, all counted. */
    PyObject *uncached;
    long long uncached_count;
} SheetParser;

#define MAX_UNCACHED 100

static int sp_init(SheetParser *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"strings", "load_more", "date_styles", "to_date", "text", "iso", NULL};
    PyObject *strings, *load_more, *date_styles, *to_date, *text, *iso;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOSOOO", kwlist, &strings, &load_more, &date_styles, &to_date, &text,
                                     &iso))
        return -1;
    if (strings != Py_None && !PyObject_TypeCheck(strings, &SharedStringsType)) {
        PyErr_SetString(PyExc_TypeError, "strings must be a SharedStrings or None");
        return -1;
    }
    Py_XSETREF(self->strings, strings == Py_None ? NULL : (SharedStrings *)Py_NewRef(strings));
    Py_XSETREF(self->load_more, Py_NewRef(load_more));
    Py_XSETREF(self->date_styles, Py_NewRef(date_styles));
    Py_XSETREF(self->to_date, Py_NewRef(to_date));
    Py_XSETREF(self->text, Py_NewRef(text));
    Py_XSETREF(self->iso, Py_NewRef(iso));
    self->number = 0;
    Py_XSETREF(self->uncached, PyList_New(0));
    self->uncached_count = 0;
    return self->uncached ? 0 : -1;
}

static void sp_dealloc(SheetParser *self) {
    Py_XDECREF(self->strings);
    Py_XDECREF(self->load_more);
    Py_XDECREF(self->date_styles);
    Py_XDECREF(self->to_date);
    Py_XDECREF(self->text);
    Py_XDECREF(self->iso);
    Py_XDECREF(self->uncached);
    buf_free(&self->pending);
    buf_free(&self->scratch);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

enum { K_N, K_S, K_STR, K_INLINE, K_B, K_E, K_D };

static int kind_of(const char *v, size_t n) {
    if (n == 1 && v[0] == 's') return K_S;
    if (n == 1 && v[0] == 'n') return K_N;
    if (n == 3 && memcmp(v, "str", 3) == 0) return K_STR;
    if (n == 9 && memcmp(v, "inlineStr", 9) == 0) return K_INLINE;
    if (n == 1 && v[0] == 'b') return K_B;
    if (n == 1 && v[0] == 'e') return K_E;
    if (n == 1 && v[0] == 'd') return K_D;
    return K_N; /* the Python reader reads any other kind as a number */
}

static void strip(const char **p, const char **end) {
    while (*p < *end && (is_space(**p) || **p == '\f' || **p == '\v')) (*p)++;
    while (*end > *p && (is_space((*end)[-1]) || (*end)[-1] == '\f' || (*end)[-1] == '\v')) (*end)--;
}

static PyObject *utf8(const char *p, size_t n) {
    PyObject *s = PyUnicode_DecodeUTF8(p, (Py_ssize_t)n, "strict");
    if (!s) {
        PyErr_Clear();
        fail("the sheet holds bytes that are not valid UTF-8 text");
    }
    return s;
}

/* A cell's text (inline string or t="str"): raw is the text of its <t>/<v>, joined, still escaped. */
static PyObject *sp_text(SheetParser *self, const char *p, size_t n) {
    const char *end = p + n;
    int plain = memchr(p, '&', n) == NULL && memchr(p, '<', n) == NULL && !has_ooxml_escape(p, end);
    if (plain) return utf8(p, n);
    self->scratch.len = 0;
    int r = decode_xml_text(p, end, &self->scratch, 0);
    if (r < 0) return NULL;
    if (r == 0) {
        decode_ooxml_escapes(&self->scratch, 0);
        PyObject *s = PyUnicode_DecodeUTF8(self->scratch.data ? self->scratch.data : "", (Py_ssize_t)self->scratch.len,
                                           "surrogatepass");
        if (!s) {
            PyErr_Clear();
            fail("the sheet holds bytes that are not valid UTF-8 text");
        }
        return s;
    }
    /* something for the Python decoder (HTML entities and the like) */
    PyObject *raw = utf8(p, n);
    if (!raw) return NULL;
    PyObject *s = PyObject_CallOneArg(self->text, raw);
    Py_DECREF(raw);
    return s;
}

static PyObject *sp_number(SheetParser *self, const char *p, const char *end, long style) {
    strip(&p, &end);
    if (p == end) Py_RETURN_NONE;
    const char *q = p;
    if (*q == '-') q++;
    int digits = q < end;
    for (const char *d = q; d < end; d++)
        if (*d < '0' || *d > '9') {
            digits = 0;
            break;
        }
    PyObject *number;
    if (digits && end - q <= 18) {
        long long v = 0;
        for (const char *d = q; d < end; d++) v = v * 10 + (*d - '0');
        number = PyLong_FromLongLong(*p == '-' ? -v : v);
    } else {
        PyObject *s = utf8(p, (size_t)(end - p));
        if (!s) return NULL;
        number = digits ? PyLong_FromUnicodeObject(s, 10) : PyFloat_FromString(s);
        Py_DECREF(s);
        if (!number) {
            if (PyErr_ExceptionMatches(PyExc_ValueError)) {
                PyErr_Clear();
                fail("the sheet holds a number cell whose value is not a number");
            }
            return NULL;
        }
    }
    if (!number) return NULL;
    if (style >= 0 && style < PyBytes_GET_SIZE(self->date_styles) && PyBytes_AS_STRING(self->date_styles)[style]) {
        PyObject *date = PyObject_CallOneArg(self->to_date, number);
        Py_DECREF(number);
        return date;
    }
    return number;
}

static PyObject *sp_shared(SheetParser *self, const char *p, const char *end) {
    strip(&p, &end);
    if (p == end) Py_RETURN_NONE; /* an empty value: no string */
    size_t index = 0;
    for (const char *d = p; d < end; d++) {
        if (*d < '0' || *d > '9' || index > (size_t)UINT32_MAX) {
            fail("the sheet holds a shared-string cell whose value is not an index");
            return NULL;
        }
        index = index * 10 + (size_t)(*d - '0');
    }
    SharedStrings *strings = self->strings;
    while (!strings || index >= strings->count) {
        if (!strings || strings->done || self->load_more == Py_None) {
            fail("the sheet refers to a shared string the workbook does not have");
            return NULL;
        }
        PyObject *more = PyObject_CallNoArgs(self->load_more);
        if (!more) return NULL;
        int again = PyObject_IsTrue(more);
        Py_DECREF(more);
        if (again < 0) return NULL;
        if (!again && index >= strings->count) {
            fail("the sheet refers to a shared string the workbook does not have");
            return NULL;
        }
    }
    return ss_get(strings, index);
}

/* Whether a cell's content [p, end) holds an <f> (a formula). */
static int has_formula(const char *p, const char *end) {
    for (const char *lt = p; (lt = memchr(lt, '<', (size_t)(end - lt))) != NULL; lt++) {
        const char *name_end = match_tag(lt + 1, end, "f", 1);
        if (name_end != NULL && name_end != end) return 1;
    }
    return 0;
}

static int note_uncached(SheetParser *self, long long row, Py_ssize_t column) {
    self->uncached_count++;
    if (PyList_GET_SIZE(self->uncached) >= MAX_UNCACHED) return 0;
    PyObject *cell = Py_BuildValue("(Ln)", row, column);
    if (!cell) return -1;
    int r = PyList_Append(self->uncached, cell);
    Py_DECREF(cell);
    return r;
}

/* Find the first <v> in [p, end): sets *v0, *v1 to its text. Returns 1 found, 0 none. */
static int find_value(const char *p, const char *end, const char **v0, const char **v1) {
    while (p < end) {
        const char *lt = memchr(p, '<', (size_t)(end - p));
        if (!lt) return 0;
        const char *name_end = match_tag(lt + 1, end, "v", 1);
        if (name_end && name_end != end) {
            const char *attrs_end;
            int self_closing;
            const char *body = tag_end(name_end, end, &attrs_end, &self_closing);
            if (!body) return 0;
            if (!self_closing) {
                /* the value runs to </v> */
                for (const char *l = body; l < end; l++) {
                    if (*l != '<') continue;
                    const char *after;
                    if (closing_tag(l, end, "v", 1, &after) == 1) {
                        *v0 = body;
                        *v1 = l;
                        return 1;
                    }
                }
                return 0;
            }
            p = body;
            continue;
        }
        p = lt + 1;
    }
    return 0;
}

/* The raw text of every <t> of an inline string, outside <rPh>, joined into scratch2. */
static int gather_inline(const char *p, const char *end, Buf *out) {
    int phonetic = 0;
    out->len = 0;
    while (p < end) {
        const char *lt = memchr(p, '<', (size_t)(end - p));
        if (!lt) break;
        const char *after, *name_end;
        if (phonetic) {
            if (closing_tag(lt, end, "rPh", 3, &after) == 1) {
                phonetic = 0;
                p = after;
            } else {
                p = lt + 1;
            }
            continue;
        }
        if ((name_end = match_tag(lt + 1, end, "rPh", 3)) != NULL && name_end != end) {
            const char *attrs_end;
            int self_closing;
            const char *body = tag_end(name_end, end, &attrs_end, &self_closing);
            if (!body) break;
            phonetic = !self_closing;
            p = body;
            continue;
        }
        if ((name_end = match_tag(lt + 1, end, "t", 1)) != NULL && name_end != end) {
            const char *attrs_end;
            int self_closing;
            const char *body = tag_end(name_end, end, &attrs_end, &self_closing);
            if (!body) break;
            if (self_closing) {
                p = body;
                continue;
            }
            const char *l = body;
            int closed = 0;
            while (l < end) {
                const char *m = memchr(l, '<', (size_t)(end - l));
                if (!m) break;
                if (end - m >= 9 && memcmp(m, "<![CDATA[", 9) == 0) {
                    const char *e = m + 9;
                    while (e + 2 < end && !(e[0] == ']' && e[1] == ']' && e[2] == '>')) e++;
                    l = e + 3 <= end ? e + 3 : end;
                    continue;
                }
                if (closing_tag(m, end, "t", 1, &after) == 1) {
                    if (buf_put(out, body, (size_t)(m - body)) < 0) return -1;
                    p = after;
                    closed = 1;
                    break;
                }
                l = m + 1;
            }
            if (!closed) break;
            continue;
        }
        p = lt + 1;
    }
    return 0;
}

/* The value of one cell whose content (between <c ...> and </c>) is [p, end). */
static PyObject *sp_value(SheetParser *self, int kind, long style, const char *p, const char *end, Buf *inline_buf) {
    if (p == end) Py_RETURN_NONE;
    if (kind == K_INLINE) {
        if (gather_inline(p, end, inline_buf) < 0) return NULL;
        return sp_text(self, inline_buf->data ? inline_buf->data : "", inline_buf->len);
    }
    const char *v0, *v1;
    if (!find_value(p, end, &v0, &v1)) Py_RETURN_NONE;
    switch (kind) {
    case K_S:
        return sp_shared(self, v0, v1);
    case K_STR:
        return sp_text(self, v0, (size_t)(v1 - v0));
    case K_B:
        strip(&v0, &v1);
        return PyBool_FromLong((v1 - v0 == 1 && *v0 == '1') || (v1 - v0 == 4 && memcmp(v0, "true", 4) == 0));
    case K_E:
        Py_RETURN_NONE;
    case K_D: {
        PyObject *raw = utf8(v0, (size_t)(v1 - v0));
        if (!raw) return NULL;
        PyObject *value = PyObject_CallOneArg(self->iso, raw);
        Py_DECREF(raw);
        return value;
    }
    default:
        return sp_number(self, v0, v1, style);
    }
}

static int place(PyObject *cells, Py_ssize_t column, PyObject *value) {
    Py_ssize_t n = PyList_GET_SIZE(cells);
    if (column < 0) column = n;
    if (column == n) return PyList_Append(cells, value);
    if (column > n) {
        for (Py_ssize_t i = n; i < column; i++)
            if (PyList_Append(cells, Py_None) < 0) return -1;
        return PyList_Append(cells, value);
    }
    Py_INCREF(value);
    return PyList_SetItem(cells, column, value);
}

/* Parse one row starting at `lt` ('<' of <row). Returns the pointer past it and appends the
 * (number, cells) tuple to out; NULL with no error when the buffer ends first; NULL with an error. */
static const char *sp_row(SheetParser *self, const char *name_end, const char *end, PyObject *out, Buf *inline_buf) {
    const char *attrs_end;
    int self_closing;
    const char *p = tag_end(name_end, end, &attrs_end, &self_closing);
    if (!p) return NULL;
    long long number = -1;
    const char *a = name_end, *name, *value;
    size_t name_len, value_len;
    while ((a = next_attr(a, attrs_end, &name, &name_len, &value, &value_len)) != NULL) {
        if (name_len == 1 && name[0] == 'r' && value_len > 0 && value_len <= 18) {
            long long v = 0;
            size_t i;
            for (i = 0; i < value_len && value[i] >= '0' && value[i] <= '9'; i++) v = v * 10 + (value[i] - '0');
            if (i == value_len) number = v;
        }
    }
    PyObject *cells = PyList_New(0);
    if (!cells) return NULL;
    if (!self_closing) {
        for (;;) {
            const char *lt = memchr(p, '<', (size_t)(end - p));
            if (!lt) goto incomplete;
            const char *after;
            int c = closing_tag(lt, end, "row", 3, &after);
            if (c < 0) goto incomplete;
            if (c == 1) {
                p = after;
                break;
            }
            const char *cell_name = lt[1] == '/' ? NULL : match_tag(lt + 1, end, "c", 1);
            if (cell_name == end) goto incomplete;
            if (!cell_name) {
                int error = 0;
                const char *next = skip_markup(lt, end, &error);
                if (error) goto error;
                if (!next) goto incomplete;
                p = next;
                continue;
            }
            const char *cell_attrs_end;
            int cell_closing;
            const char *body = tag_end(cell_name, end, &cell_attrs_end, &cell_closing);
            if (!body) goto incomplete;
            Py_ssize_t column = -1;
            int kind = K_N;
            long style = -1;
            const char *ca = cell_name;
            while ((ca = next_attr(ca, cell_attrs_end, &name, &name_len, &value, &value_len)) != NULL) {
                if (name_len != 1) continue;
                if (name[0] == 'r') {
                    size_t i = 0;
                    Py_ssize_t index = 0;
                    while (i < value_len && value[i] >= 'A' && value[i] <= 'Z' && index <= MAX_COLUMN) {
                        index = index * 26 + (value[i] - 'A' + 1);
                        i++;
                    }
                    if (index > MAX_COLUMN) {
                        Py_DECREF(cells);
                        fail("the sheet has a cell beyond column XFD, the last Excel allows");
                        return NULL;
                    }
                    column = i ? index - 1 : -1;
                } else if (name[0] == 't') {
                    kind = kind_of(value, value_len);
                } else if (name[0] == 's') {
                    long s = 0;
                    size_t i;
                    for (i = 0; i < value_len && value[i] >= '0' && value[i] <= '9' && s < 100000000; i++)
                        s = s * 10 + (value[i] - '0');
                    style = (i == value_len && value_len) ? s : -1;
                }
            }
            PyObject *v;
            if (cell_closing) {
                v = Py_NewRef(Py_None);
                p = body;
            } else {
                /* the content runs to </c> */
                const char *q = body, *close = NULL;
                for (;;) {
                    const char *l = memchr(q, '<', (size_t)(end - q));
                    if (!l) goto incomplete;
                    int cc = closing_tag(l, end, "c", 1, &after);
                    if (cc < 0) goto incomplete;
                    if (cc == 1) {
                        close = l;
                        break;
                    }
                    q = l + 1;
                }
                v = sp_value(self, kind, style, body, close, inline_buf);
                if (!v) goto error;
                if (v == Py_None && has_formula(body, close) &&
                    note_uncached(self, number >= 0 ? number : self->number + 1, column) < 0) {
                    Py_DECREF(v);
                    goto error;
                }
                p = after;
            }
            int r = place(cells, column, v);
            Py_DECREF(v);
            if (r < 0) goto error;
        }
    }
    self->number = number >= 0 ? number : self->number + 1;
    PyObject *item = Py_BuildValue("(LN)", self->number, cells);
    if (!item) return NULL;
    int r = PyList_Append(out, item);
    Py_DECREF(item);
    return r < 0 ? NULL : p;
incomplete:
    Py_DECREF(cells);
    return NULL;
error:
    Py_DECREF(cells);
    return NULL;
}

static PyObject *sp_parse(SheetParser *self, int final) {
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    Buf inline_buf = {NULL, 0, 0};
    const char *start = self->pending.data, *p = start, *end = start + self->pending.len;
    const char *keep = end;
    while (p < end) {
        const char *lt = memchr(p, '<', (size_t)(end - p));
        if (!lt) {
            keep = end;
            break;
        }
        const char *name_end = match_tag(lt + 1, end, "row", 3);
        if (name_end == end) {
            keep = lt;
            break;
        }
        if (name_end) {
            const char *next = sp_row(self, name_end, end, out, &inline_buf);
            if (!next) {
                if (PyErr_Occurred()) goto error;
                keep = lt;
                break;
            }
            p = next;
            continue;
        }
        int error = 0;
        const char *next = skip_markup(lt, end, &error);
        if (error) goto error;
        if (!next) {
            keep = lt;
            break;
        }
        p = next;
    }
    if (p >= end) keep = end;
    size_t left = self->pending.len - (size_t)(keep - start);
    if (final && left) {
        for (const char *q = keep; q < end; q++)
            if (!is_space(*q)) {
                fail("the sheet's XML ends in the middle of a row or tag (the file is truncated or damaged)");
                goto error;
            }
    }
    if (left > MAX_PENDING) {
        fail("the sheet has one row of over 64 MB of XML (or its XML is malformed)");
        goto error;
    }
    buf_consume(&self->pending, (size_t)(keep - start));
    buf_free(&inline_buf);
    return out;
error:
    buf_free(&inline_buf);
    Py_DECREF(out);
    return NULL;
}

static PyObject *sp_feed(SheetParser *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    int r = buf_put(&self->pending, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    if (r < 0) return NULL;
    return sp_parse(self, 0);
}

static PyObject *sp_finish(SheetParser *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *rows = sp_parse(self, 1);
    buf_free(&self->pending);
    buf_free(&self->scratch);
    return rows;
}

static PyMethodDef sp_methods[] = {
    {"feed", (PyCFunction)sp_feed, METH_O, "Parse a chunk of the sheet's XML; returns the rows it completed."},
    {"finish", (PyCFunction)sp_finish, METH_NOARGS, "The end of the XML: the last rows; raises if it is truncated."},
    {NULL, NULL, 0, NULL},
};

static PyObject *sp_uncached(SheetParser *self, void *Py_UNUSED(closure)) {
    return PyList_GetSlice(self->uncached, 0, PyList_GET_SIZE(self->uncached));
}

static PyObject *sp_uncached_count(SheetParser *self, void *Py_UNUSED(closure)) {
    return PyLong_FromLongLong(self->uncached_count);
}

static PyGetSetDef sp_getset[] = {
    {"uncached", (getter)sp_uncached, NULL, "(row, 0-based column) of the first formula cells with no value.", NULL},
    {"uncached_count", (getter)sp_uncached_count, NULL, "How many formula cells had no value.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject SheetParserType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shared.spreadsheet._xlsx_fast.SheetParser",
    .tp_basicsize = sizeof(SheetParser),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Rows of a worksheet's XML, fed in chunks.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)sp_init,
    .tp_dealloc = (destructor)sp_dealloc,
    .tp_methods = sp_methods,
    .tp_getset = sp_getset,
};

/* ---- module ------------------------------------------------------------------------------------ */

static PyObject *set_error_class(PyObject *Py_UNUSED(module), PyObject *cls) {
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, (PyTypeObject *)PyExc_Exception)) {
        PyErr_SetString(PyExc_TypeError, "an exception class is needed");
        return NULL;
    }
    Py_XSETREF(WorkbookError, Py_NewRef(cls));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"set_error_class", set_error_class, METH_O, "The exception class raised for malformed input."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_xlsx_fast", "A compiled streaming reader of xlsx sheet XML.", -1, module_methods,
};

PyMODINIT_FUNC PyInit__xlsx_fast(void) {
    if (PyType_Ready(&SharedStringsType) < 0 || PyType_Ready(&SheetParserType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "SharedStrings", (PyObject *)&SharedStringsType) < 0 ||
        PyModule_AddObjectRef(m, "SheetParser", (PyObject *)&SheetParserType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
