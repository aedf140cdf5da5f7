/* wsproxy.sansio._speedups: WebSocket masking in C (RFC 6455 section 5.3).
 *
 * mask(buffer, key, offset=0) XORs a writable buffer in place with a 4-byte key, as if the
 * buffer started at byte `offset` of its frame's payload. Masking is its own inverse, so this
 * both masks and unmasks. The pure-Python fallback with the same contract is
 * wsproxy/sansio/masking.py; the tests run both against the same vectors.
 *
 * Eight bytes at a time: the key, rotated by the offset, is repeated into a uint64 and XORed
 * with unaligned 8-byte loads and stores (memcpy, which compilers turn into plain moves, with
 * no alignment or aliasing assumptions), four words per step so that the compiler's vector
 * XORs cover it (bench/mask_bench.py: on a par with aiohttp's compiled helper).
 * The GIL is released for large buffers: a buffer export pins the memory (a bytearray cannot
 * be resized while exported), and other threads may run while a megabyte is XORed.
 *
 * relay_frames(data, masked, max_frame, max_message, keys, key_pos) is the relay's fast path
 * (wsproxy/sansio/fastpath.py has the contract and the pure-Python twin): it walks the whole,
 * final, unextended text and binary frames at the start of `data`, checks each as the frame
 * reader would, and re-masks client frames with fresh keys from `keys`. It stops at the first
 * frame that is anything else (a control frame, a fragment, RSV bits, a frame not all there,
 * one over a limit, invalid UTF-8, a bad header): the general reader takes over from there,
 * and reports the error if there is one. whole_frames(data, masked, max_frame, max_message,
 * keys, key_pos) walks the same frames for a relay whose plugins read every message: their
 * payloads in the clear for the message hooks, and each frame as it goes on if unchanged.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Below this size, releasing and taking back the GIL costs more than the XOR itself. */
#define RELEASE_GIL_FROM 65536

static void
xor_in_place(unsigned char *data, Py_ssize_t size, const unsigned char key[4])
{
    unsigned char key8[8];
    uint64_t wide;
    unsigned char *end = data + size;

    memcpy(key8, key, 4);
    memcpy(key8 + 4, key, 4);
    memcpy(&wide, key8, 8);
    /* Four words a step: the loop the compiler turns into vector XORs. */
    while (end - data >= 32) {
        uint64_t w0, w1, w2, w3;
        memcpy(&w0, data, 8);
        memcpy(&w1, data + 8, 8);
        memcpy(&w2, data + 16, 8);
        memcpy(&w3, data + 24, 8);
        w0 ^= wide;
        w1 ^= wide;
        w2 ^= wide;
        w3 ^= wide;
        memcpy(data, &w0, 8);
        memcpy(data + 8, &w1, 8);
        memcpy(data + 16, &w2, 8);
        memcpy(data + 24, &w3, 8);
        data += 32;
    }
    while (end - data >= 8) {
        uint64_t word;
        memcpy(&word, data, 8);
        word ^= wide;
        memcpy(data, &word, 8);
        data += 8;
    }
    /* Whole words so far, a multiple of 4 bytes: the tail starts at key[0]. */
    for (int i = 0; data < end; data++, i++) {
        *data ^= key[i & 3];
    }
}

/* dest = source XOR key, in one pass: a masked copy costs what a plain copy does. */
static void
xor_copy(unsigned char *dest, const unsigned char *source, Py_ssize_t size,
         const unsigned char key[4])
{
    unsigned char key8[8];
    uint64_t wide;
    Py_ssize_t i = 0;

    memcpy(key8, key, 4);
    memcpy(key8 + 4, key, 4);
    memcpy(&wide, key8, 8);
    for (; size - i >= 32; i += 32) {
        uint64_t w[4];
        memcpy(w, source + i, 32);
        w[0] ^= wide;
        w[1] ^= wide;
        w[2] ^= wide;
        w[3] ^= wide;
        memcpy(dest + i, w, 32);
    }
    for (; size - i >= 8; i += 8) {
        uint64_t word;
        memcpy(&word, source + i, 8);
        word ^= wide;
        memcpy(dest + i, &word, 8);
    }
    for (int j = 0; i < size; i++, j++) {
        dest[i] = source[i] ^ key[j & 3];
    }
}

/* The key rotated by `offset` (its position in the frame), or -1 with an exception set. */
static int
rotated_key(PyObject *key_object, Py_ssize_t offset, unsigned char rotated[4], const char *name)
{
    Py_buffer key;
    int shift = (int)(offset & 3);

    if (PyBytes_CheckExact(key_object)) {
        /* The usual case, without the cost of a buffer export (it shows at 64 bytes). */
        if (PyBytes_GET_SIZE(key_object) != 4) {
            PyErr_Format(PyExc_ValueError, "%s() key must be 4 bytes, not %zd", name,
                         PyBytes_GET_SIZE(key_object));
            return -1;
        }
        for (int j = 0; j < 4; j++) {
            rotated[j] = ((const unsigned char *)PyBytes_AS_STRING(key_object))[(j + shift) & 3];
        }
        return 0;
    }
    if (PyObject_GetBuffer(key_object, &key, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    if (key.len != 4) {
        PyErr_Format(PyExc_ValueError, "%s() key must be 4 bytes, not %zd", name, key.len);
        PyBuffer_Release(&key);
        return -1;
    }
    for (int j = 0; j < 4; j++) {
        rotated[j] = ((const unsigned char *)key.buf)[(j + shift) & 3];
    }
    PyBuffer_Release(&key);
    return 0;
}

/* The arguments of mask() and mask_copy(), (data, key, offset=0): the key rotated by the
 * offset, or -1 with an exception set. */
static int
mask_args(PyObject *const *args, Py_ssize_t nargs, const char *name, unsigned char rotated[4])
{
    Py_ssize_t offset = 0;

    if (nargs < 2 || nargs > 3) {
        PyErr_Format(PyExc_TypeError, "%s() takes 2 or 3 positional arguments (%zd given)", name,
                     nargs);
        return -1;
    }
    if (nargs == 3) {
        offset = PyLong_AsSsize_t(args[2]);
        if (offset == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (offset < 0) {
            PyErr_Format(PyExc_ValueError, "%s() offset must not be negative", name);
            return -1;
        }
    }
    return rotated_key(args[1], offset, rotated, name);
}

static PyObject *
mask_copy(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data;
    unsigned char rotated[4];
    PyObject *out;

    if (mask_args(args, nargs, "mask_copy", rotated) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &data, PyBUF_C_CONTIGUOUS) < 0) {
        return NULL;
    }
    out = PyBytes_FromStringAndSize(NULL, data.len);
    if (out != NULL) {
        unsigned char *dest = (unsigned char *)PyBytes_AS_STRING(out);
        if (data.len >= RELEASE_GIL_FROM) {
            Py_BEGIN_ALLOW_THREADS
            xor_copy(dest, data.buf, data.len, rotated);
            Py_END_ALLOW_THREADS
        }
        else {
            xor_copy(dest, data.buf, data.len, rotated);
        }
    }
    PyBuffer_Release(&data);
    return out;
}

static PyObject *
mask(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer buffer;
    unsigned char rotated[4];

    if (mask_args(args, nargs, "mask", rotated) < 0) {
        return NULL;
    }
    /* PyBUF_WRITABLE alone asks for a simple, C-contiguous, writable buffer. */
    if (PyObject_GetBuffer(args[0], &buffer, PyBUF_WRITABLE) < 0) {
        return NULL;
    }
    if (buffer.len >= RELEASE_GIL_FROM) {
        Py_BEGIN_ALLOW_THREADS
        xor_in_place(buffer.buf, buffer.len, rotated);
        Py_END_ALLOW_THREADS
    }
    else {
        xor_in_place(buffer.buf, buffer.len, rotated);
    }
    PyBuffer_Release(&buffer);
    Py_RETURN_NONE;
}


/* RFC 3629 section 4: whether data[0:size] is well-formed UTF-8 (no overlong forms, no
 * surrogates, nothing past U+10FFFF). ASCII is checked eight bytes at a time. */
static int
valid_utf8(const unsigned char *data, Py_ssize_t size)
{
    const unsigned char *end = data + size;

    while (data < end) {
        if (end - data >= 8) {
            uint64_t word;
            memcpy(&word, data, 8);
            if ((word & 0x8080808080808080ULL) == 0) {
                data += 8;
                continue;
            }
        }
        unsigned char lead = *data;
        if (lead < 0x80) {
            data++;
            continue;
        }
        Py_ssize_t need;
        unsigned char low = 0x80, high = 0xBF; /* the range of the second byte */
        if (lead >= 0xC2 && lead <= 0xDF) {
            need = 1;
        }
        else if (lead >= 0xE0 && lead <= 0xEF) {
            need = 2;
            if (lead == 0xE0) {
                low = 0xA0; /* overlong below U+0800 */
            }
            else if (lead == 0xED) {
                high = 0x9F; /* U+D800-U+DFFF are surrogates */
            }
        }
        else if (lead >= 0xF0 && lead <= 0xF4) {
            need = 3;
            if (lead == 0xF0) {
                low = 0x90; /* overlong below U+10000 */
            }
            else if (lead == 0xF4) {
                high = 0x8F; /* past U+10FFFF */
            }
        }
        else {
            return 0; /* 0x80-0xC1 and 0xF5-0xFF never lead */
        }
        if (end - data <= need) {
            return 0; /* cut short: a final frame must end its last code point */
        }
        if (data[1] < low || data[1] > high) {
            return 0;
        }
        for (Py_ssize_t i = 2; i <= need; i++) {
            if ((data[i] & 0xC0) != 0x80) {
                return 0;
            }
        }
        data += need + 1;
    }
    return 1;
}

/* The arguments every walk over frames begins with, (data, masked, max_frame, max_message,
 * keys, key_pos, ...): the count checked (`expected` in all), the numbers read; -1 with an
 * exception set when one is wrong. The two buffers are taken by walk_buffers. */
static int
walk_args(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t expected, const char *name,
          int *masked, unsigned long long *max_frame, unsigned long long *max_message,
          Py_ssize_t *key_pos)
{
    if (nargs != expected) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", name, expected,
                     nargs);
        return -1;
    }
    *masked = PyObject_IsTrue(args[1]);
    if (*masked < 0) {
        return -1;
    }
    *max_frame = PyLong_AsUnsignedLongLong(args[2]);
    if (*max_frame == (unsigned long long)-1 && PyErr_Occurred()) {
        return -1;
    }
    *max_message = PyLong_AsUnsignedLongLong(args[3]);
    if (*max_message == (unsigned long long)-1 && PyErr_Occurred()) {
        return -1;
    }
    *key_pos = PyLong_AsSsize_t(args[5]);
    if (*key_pos == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (*key_pos < 0) {
        PyErr_Format(PyExc_ValueError, "%s() key_pos must not be negative", name);
        return -1;
    }
    return 0;
}

/* A walk's data (args[0]) and key block (args[4]), both released by the caller once it is
 * done; -1 with an exception set (and nothing held) when either is no buffer. */
static int
walk_buffers(PyObject *const *args, Py_buffer *data, Py_buffer *keys)
{
    if (PyObject_GetBuffer(args[0], data, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    if (PyObject_GetBuffer(args[4], keys, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(data);
        return -1;
    }
    return 0;
}

/* The out bytes a walk returns: the unmasked frames cut to the `position` bytes it took; None
 * when it took nothing or the frames go on as they came (no mask to take off). 0, or -1 with an
 * exception set and *out cleared. */
static int
finish_out(PyObject **out, int masked, Py_ssize_t position, Py_ssize_t size)
{
    if (!masked || position == 0) {
        PyObject *unused = *out;
        *out = Py_NewRef(Py_None);
        Py_XDECREF(unused);
        return 0;
    }
    if (position < size && _PyBytes_Resize(out, position) < 0) {
        return -1;
    }
    return 0;
}

/* Where the payload of the frame at data[0:available] starts and how long it is; 0 when the
 * frame is not one the fast path relays (or not all there), which the general reader then
 * handles. `rsv` is the RSV bits the frame must have: 0, or RSV1 (0x40) for a compressed one. */
static int
simple_frame(const unsigned char *data, Py_ssize_t available, int masked,
             unsigned long long max_length, unsigned char rsv, Py_ssize_t *header,
             unsigned long long *length)
{
    if (available < 2) {
        return 0;
    }
    unsigned char first = data[0] ^ rsv, second = data[1];
    /* FIN set, the RSV bits as asked and no others, text or binary. */
    if (first != 0x81 && first != 0x82) {
        return 0;
    }
    if (((second & 0x80) != 0) != masked) {
        return 0;
    }
    unsigned long long size = second & 0x7F;
    Py_ssize_t used = 2;
    if (size == 126) {
        if (available < 4) {
            return 0;
        }
        size = ((unsigned long long)data[2] << 8) | data[3];
        if (size < 126) {
            return 0;
        }
        used = 4;
    }
    else if (size == 127) {
        if (available < 10) {
            return 0;
        }
        size = 0;
        for (int i = 2; i < 10; i++) {
            size = (size << 8) | data[i];
        }
        if (size < 65536 || (size >> 63)) {
            return 0;
        }
        used = 10;
    }
    if (masked) {
        used += 4;
    }
    if (available < used || size > max_length || (unsigned long long)(available - used) < size) {
        return 0;
    }
    *header = used;
    *length = size;
    return 1;
}

/* The tuple (position, out, frames, key_pos), taking over the reference to `out` (also on
 * failure): what Py_BuildValue("nNnn") makes, without parsing a format on every read. */
static PyObject *
walk_result(Py_ssize_t position, PyObject *out, Py_ssize_t frames, Py_ssize_t key_pos)
{
    PyObject *result = PyTuple_New(4);
    PyObject *items[3] = {PyLong_FromSsize_t(position), PyLong_FromSsize_t(frames),
                          PyLong_FromSsize_t(key_pos)};
    if (result == NULL || items[0] == NULL || items[1] == NULL || items[2] == NULL) {
        Py_XDECREF(result);
        Py_XDECREF(items[0]);
        Py_XDECREF(items[1]);
        Py_XDECREF(items[2]);
        Py_DECREF(out);
        return NULL;
    }
    PyTuple_SET_ITEM(result, 0, items[0]);
    PyTuple_SET_ITEM(result, 1, out);
    PyTuple_SET_ITEM(result, 2, items[1]);
    PyTuple_SET_ITEM(result, 3, items[2]);
    return result;
}

static PyObject *
relay_frames(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, keys;
    PyObject *out = NULL, *result = NULL;
    unsigned char *target = NULL;
    Py_ssize_t position = 0, key_pos, frames = 0;

    int masked;
    unsigned long long max_frame, max_message;
    if (walk_args(args, nargs, 6, "relay_frames", &masked, &max_frame, &max_message,
                  &key_pos) < 0) {
        return NULL;
    }
    unsigned long long max_length = max_frame < max_message ? max_frame : max_message;
    if (walk_buffers(args, &data, &keys) < 0) {
        return NULL;
    }
    const unsigned char *source = data.buf;
    const unsigned char *key_block = keys.buf;
    if (masked) {
        /* Re-masked frames are exactly as long as the frames read: same header, new key. */
        out = PyBytes_FromStringAndSize(NULL, data.len);
        if (out == NULL) {
            goto done;
        }
        target = (unsigned char *)PyBytes_AS_STRING(out);
    }
    for (;;) {
        Py_ssize_t header;
        unsigned long long length;
        if (!simple_frame(source + position, data.len - position, masked, max_length, 0, &header,
                          &length)) {
            break;
        }
        const unsigned char *payload = source + position + header;
        int text = source[position] == 0x81;
        if (masked) {
            if (key_pos + 4 > keys.len) {
                break; /* out of fresh keys: the caller draws more and goes on */
            }
            unsigned char *frame = target + position;
            unsigned char *body = frame + header;
            memcpy(frame, source + position, header - 4);
            memcpy(body, payload, (size_t)length);
            xor_in_place(body, (Py_ssize_t)length, payload - 4);
            if (text && !valid_utf8(body, (Py_ssize_t)length)) {
                break;
            }
            memcpy(body - 4, key_block + key_pos, 4);
            xor_in_place(body, (Py_ssize_t)length, key_block + key_pos);
            key_pos += 4;
        }
        else if (text && !valid_utf8(payload, (Py_ssize_t)length)) {
            break;
        }
        position += header + (Py_ssize_t)length;
        frames++;
    }
    if (finish_out(&out, masked, position, data.len) < 0) {
        goto done;
    }
    result = walk_result(position, out, frames, key_pos);
    out = NULL;
done:
    Py_XDECREF(out);
    PyBuffer_Release(&keys);
    PyBuffer_Release(&data);
    return result;
}

static const char UTF8_REASON[] = "invalid UTF-8 in a text message";

/* After decoder.decompress gave *content: 1 when the decoder reached a BFINAL block, *content
 * then replaced by after_final(*content); else 0, the content added to the window, which keeps
 * the last 32 KiB of output and at most 64 KiB (Inflater._remember); -1 with an exception. */
static int
eof_or_keep(PyObject *decoder, PyObject *eof_name, PyObject *window, PyObject **content,
            PyObject *after_final)
{
    PyObject *eof = PyObject_GetAttr(decoder, eof_name);
    if (eof == NULL) {
        return -1;
    }
    int ended = PyObject_IsTrue(eof);
    Py_DECREF(eof);
    if (ended < 0) {
        return -1;
    }
    if (ended) {
        PyObject *whole = PyObject_CallOneArg(after_final, *content);
        Py_SETREF(*content, whole);
        if (whole == NULL) {
            return -1;
        }
        if (!PyBytes_Check(whole)) {
            PyErr_SetString(PyExc_TypeError, "relay_deflated() after_final must return bytes");
            return -1;
        }
        return 1;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(*content);
    const char *bytes = PyBytes_AS_STRING(*content);
    Py_ssize_t kept = PyByteArray_GET_SIZE(window);
    if (size >= 32768) {
        if (PyByteArray_Resize(window, 32768) < 0) {
            return -1;
        }
        memcpy(PyByteArray_AS_STRING(window), bytes + size - 32768, 32768);
        return 0;
    }
    if (PyByteArray_Resize(window, kept + size) < 0) {
        return -1;
    }
    char *start = PyByteArray_AS_STRING(window);
    memcpy(start + kept, bytes, (size_t)size);
    if (kept + size > 65536) {
        memmove(start, start + kept + size - 32768, 32768);
        if (PyByteArray_Resize(window, 32768) < 0) {
            return -1;
        }
    }
    return 0;
}

/* How a walk inflates compressed payloads: through a callable, or straight through a
 * decoder's own decompress, keeping its window (the (decoder, window, after_final) tuple). */
typedef struct {
    const char *name; /* the walk's, for its error messages */
    PyObject *inflate; /* the callable (borrowed), when not direct */
    PyObject *decoder, *window, *after_final; /* borrowed, when direct */
    PyObject *decompress, *eof_name; /* owned, when direct: looked up once a walk */
    int direct;
    unsigned long long max_message;
} Inflating;

/* The budget argument of the two walks that hand frames to the hooks: they stop after the
 * frame that brings what they took (each frame's content and FRAME_COST) to `budget` bytes, so
 * one read of tiny frames cannot become hundreds of thousands of objects at once. */
#define FRAME_COST 256 /* as fastpath.EVENT_COST */

static int
budget_arg(PyObject *arg, Py_ssize_t *budget)
{
    *budget = PyLong_AsSsize_t(arg);
    return *budget == -1 && PyErr_Occurred() ? -1 : 0;
}

/* The two walks over compressed frames take (data, masked, max_frame, max_message, keys,
 * key_pos, inflate, max_compressed): the common arguments, then how to inflate (whole_deflated
 * a budget after them: `expected` counts it). */
static int
inflating_args(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t expected, const char *name,
               int *masked, unsigned long long *max_plain, unsigned long long *max_deflated,
               Py_ssize_t *key_pos, Inflating *run)
{
    unsigned long long max_frame, max_message;
    memset(run, 0, sizeof(*run));
    run->name = name;
    if (walk_args(args, nargs, expected, name, masked, &max_frame, &max_message, key_pos) < 0) {
        return -1;
    }
    unsigned long long max_compressed = PyLong_AsUnsignedLongLong(args[7]);
    if (max_compressed == (unsigned long long)-1 && PyErr_Occurred()) {
        return -1;
    }
    *max_plain = max_frame < max_message ? max_frame : max_message;
    *max_deflated = max_frame < max_compressed ? max_frame : max_compressed;
    run->max_message = max_message;
    PyObject *inflate = args[6];
    run->inflate = inflate;
    run->direct = PyTuple_Check(inflate);
    if (!run->direct) {
        return 0;
    }
    if (PyTuple_GET_SIZE(inflate) != 3 || !PyByteArray_Check(PyTuple_GET_ITEM(inflate, 1))) {
        PyErr_Format(PyExc_TypeError,
                     "%s() inflate must be a callable or "
                     "(decoder, window bytearray, after_final)",
                     name);
        return -1;
    }
    run->decoder = PyTuple_GET_ITEM(inflate, 0);
    run->window = PyTuple_GET_ITEM(inflate, 1);
    run->after_final = PyTuple_GET_ITEM(inflate, 2);
    run->decompress = PyObject_GetAttrString(run->decoder, "decompress");
    run->eof_name = PyUnicode_InternFromString("eof");
    if (run->decompress == NULL || run->eof_name == NULL) {
        Py_CLEAR(run->decompress);
        Py_CLEAR(run->eof_name);
        return -1;
    }
    return 0;
}

static void
inflating_end(Inflating *run)
{
    Py_CLEAR(run->decompress);
    Py_CLEAR(run->eof_name);
}

/* One compressed payload (in the clear, without the RFC 7692 tail) inflated and checked:
 * 0 with *content (a new reference) and *ended (a BFINAL block: the walk stops after this
 * frame, the decoder having been replaced); 1 when the connection fails, *error then the
 * exception inflating raised or (code, reason) for a message over max_message (1009) or
 * invalid UTF-8 in a text message (1007); -1 with a Python exception, the walk's own
 * failure. */
static int
inflate_checked(Inflating *run, const unsigned char *clear, unsigned long long length,
                int text, PyObject **content, int *ended, PyObject **error)
{
    *ended = 0;
    PyObject *input = PyBytes_FromStringAndSize(NULL, length ? (Py_ssize_t)length + 4 : 0);
    if (input == NULL) {
        return -1;
    }
    if (length) {
        unsigned char *in = (unsigned char *)PyBytes_AS_STRING(input);
        memcpy(in, clear, (size_t)length);
        memcpy(in + length, "\x00\x00\xff\xff", 4);
    }
    PyObject *inflated = PyObject_CallOneArg(run->direct ? run->decompress : run->inflate,
                                             input);
    Py_DECREF(input);
    if (inflated != NULL && run->direct) {
        *ended = eof_or_keep(run->decoder, run->eof_name, run->window, &inflated,
                             run->after_final);
        if (*ended < 0) {
            Py_CLEAR(inflated);
        }
    }
    if (inflated == NULL) {
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        PyErr_NormalizeException(&type, &value, &traceback);
        if (traceback != NULL && value != NULL) {
            PyException_SetTraceback(value, traceback);
        }
        Py_XDECREF(type);
        Py_XDECREF(traceback);
        *error = value != NULL ? value : Py_NewRef(Py_None);
        return 1;
    }
    if (!PyBytes_Check(inflated)) {
        Py_DECREF(inflated);
        PyErr_Format(PyExc_TypeError, "%s() inflate must return bytes", run->name);
        return -1;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(inflated);
    if ((unsigned long long)size > run->max_message) {
        /* max_compressed rules this out; should a caller pass more, the limit holds. */
        Py_DECREF(inflated);
        *error = Py_BuildValue("(iN)", 1009,
                               PyUnicode_FromFormat("message inflates beyond %llu bytes",
                                                    run->max_message));
        return *error == NULL ? -1 : 1;
    }
    if (text && !valid_utf8((const unsigned char *)PyBytes_AS_STRING(inflated), size)) {
        Py_DECREF(inflated);
        *error = Py_BuildValue("(is)", 1007, UTF8_REASON);
        return *error == NULL ? -1 : 1;
    }
    *content = inflated;
    return 0;
}

/* relay_deflated(data, masked, max_frame, max_message, keys, key_pos, inflate, max_compressed):
 * relay_frames for a connection with permessage-deflate (the contract is in fastpath.py). Besides
 * the simple frames it relays whole, final, compressed text and binary frames (RSV1 set) of at
 * most `max_compressed` bytes: their payload, unmasked, with the four tail bytes of RFC 7692
 * 7.2.2 appended (b"" for an empty payload), goes to `inflate`, which keeps the running
 * context and returns the message's content; a text message's content must be UTF-8. The
 * compressed bytes are forwarded as they came (client frames re-masked): nothing is
 * recompressed. Returns (end, out, frames, key_pos, error): error is None, or what stopped the
 * run at data[end:] after `inflate` was already fed that frame: the exception `inflate` raised,
 * or (1007, reason) for a content that is not UTF-8. The caller must then fail the connection
 * with it: the inflater's context has moved past that frame. */
static PyObject *
relay_deflated(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, keys;
    PyObject *out = NULL, *result = NULL, *error = NULL;
    unsigned char *target = NULL;
    Py_ssize_t position = 0, key_pos, frames = 0;
    int masked;
    unsigned long long max_plain, max_deflated;
    Inflating run;
    if (inflating_args(args, nargs, 8, "relay_deflated", &masked, &max_plain, &max_deflated,
                       &key_pos, &run) < 0) {
        return NULL;
    }
    if (walk_buffers(args, &data, &keys) < 0) {
        inflating_end(&run);
        return NULL;
    }
    const unsigned char *source = data.buf;
    const unsigned char *key_block = keys.buf;
    if (masked) {
        out = PyBytes_FromStringAndSize(NULL, data.len);
        if (out == NULL) {
            goto done;
        }
        target = (unsigned char *)PyBytes_AS_STRING(out);
    }
    for (;;) {
        Py_ssize_t header;
        unsigned long long length;
        if (data.len - position < 2) {
            break;
        }
        unsigned char first = source[position];
        int compressed = first == 0xC1 || first == 0xC2;
        if (!simple_frame(source + position, data.len - position, masked,
                          compressed ? max_deflated : max_plain, compressed ? 0x40 : 0, &header,
                          &length)) {
            break;
        }
        const unsigned char *payload = source + position + header;
        const unsigned char *clear = payload;
        unsigned char *body = NULL;
        int text = (first & 0x0F) == 0x1;
        if (masked) {
            if (key_pos + 4 > keys.len) {
                break; /* out of fresh keys: before anything is inflated */
            }
            unsigned char *frame = target + position;
            body = frame + header;
            memcpy(frame, source + position, header - 4);
            memcpy(body, payload, (size_t)length);
            xor_in_place(body, (Py_ssize_t)length, payload - 4);
            clear = body;
        }
        int ended = 0;
        if (compressed) {
            PyObject *content;
            int failed = inflate_checked(&run, clear, length, text, &content, &ended, &error);
            if (failed < 0) {
                goto done;
            }
            if (failed) {
                break;
            }
            Py_DECREF(content);
        }
        else if (text && !valid_utf8(clear, (Py_ssize_t)length)) {
            break;
        }
        if (masked) {
            memcpy(body - 4, key_block + key_pos, 4);
            xor_in_place(body, (Py_ssize_t)length, key_block + key_pos);
            key_pos += 4;
        }
        position += header + (Py_ssize_t)length;
        frames++;
        if (ended) {
            break; /* the decoder was replaced: the caller asks for the new one */
        }
    }
    if (finish_out(&out, masked, position, data.len) < 0) {
        goto done;
    }
    result = Py_BuildValue("nNnnN", position, out, frames, key_pos,
                           error != NULL ? error : Py_NewRef(Py_None));
    out = NULL;
    error = NULL;
done:
    inflating_end(&run);
    Py_XDECREF(out);
    Py_XDECREF(error);
    PyBuffer_Release(&keys);
    PyBuffer_Release(&data);
    return result;
}

/* relay_frames_recorded(data, masked, max_frame, max_message, keys, key_pos, keep): what
 * relay_frames does, for a relay whose frames are recorded (the log, a capture): returns
 * (end, out, key_pos, frames), frames a list with one (opcode, length, payload) tuple per frame
 * relayed, payload its first `keep` bytes in the clear (all of them when keep is negative). */
static PyObject *
relay_frames_recorded(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, keys;
    PyObject *out = NULL, *result = NULL, *records = NULL;
    unsigned char *target = NULL;
    Py_ssize_t position = 0, key_pos, keep;

    int masked;
    unsigned long long max_frame, max_message;
    if (walk_args(args, nargs, 7, "relay_frames_recorded", &masked, &max_frame, &max_message,
                  &key_pos) < 0) {
        return NULL;
    }
    keep = PyLong_AsSsize_t(args[6]);
    if (keep == -1 && PyErr_Occurred()) {
        return NULL;
    }
    unsigned long long max_length = max_frame < max_message ? max_frame : max_message;
    if (walk_buffers(args, &data, &keys) < 0) {
        return NULL;
    }
    records = PyList_New(0);
    if (records == NULL) {
        goto done;
    }
    const unsigned char *source = data.buf;
    const unsigned char *key_block = keys.buf;
    if (masked) {
        out = PyBytes_FromStringAndSize(NULL, data.len);
        if (out == NULL) {
            goto done;
        }
        target = (unsigned char *)PyBytes_AS_STRING(out);
    }
    for (;;) {
        Py_ssize_t header;
        unsigned long long length;
        if (!simple_frame(source + position, data.len - position, masked, max_length, 0, &header,
                          &length)) {
            break;
        }
        const unsigned char *payload = source + position + header;
        const unsigned char *clear = payload;
        unsigned char opcode = source[position] & 0x0F;
        int text = opcode == 0x1;
        unsigned char *body = NULL;
        if (masked) {
            if (key_pos + 4 > keys.len) {
                break;
            }
            unsigned char *frame = target + position;
            body = frame + header;
            memcpy(frame, source + position, header - 4);
            memcpy(body, payload, (size_t)length);
            xor_in_place(body, (Py_ssize_t)length, payload - 4);
            if (text && !valid_utf8(body, (Py_ssize_t)length)) {
                break;
            }
            clear = body;
        }
        else if (text && !valid_utf8(payload, (Py_ssize_t)length)) {
            break;
        }
        Py_ssize_t kept = (Py_ssize_t)length;
        if (keep >= 0 && keep < kept) {
            kept = keep;
        }
        PyObject *record = Py_BuildValue("(iKy#)", (int)opcode, length, clear, kept);
        if (record == NULL) {
            goto done;
        }
        int appended = PyList_Append(records, record);
        Py_DECREF(record);
        if (appended < 0) {
            goto done;
        }
        if (masked) {
            memcpy(body - 4, key_block + key_pos, 4);
            xor_in_place(body, (Py_ssize_t)length, key_block + key_pos);
            key_pos += 4;
        }
        position += header + (Py_ssize_t)length;
    }
    if (finish_out(&out, masked, position, data.len) < 0) {
        goto done;
    }
    result = Py_BuildValue("nNnN", position, out, key_pos, records);
    out = NULL;
    records = NULL;
done:
    Py_XDECREF(out);
    Py_XDECREF(records);
    PyBuffer_Release(&keys);
    PyBuffer_Release(&data);
    return result;
}

/* whole_frames(data, masked, max_frame, max_message, keys, key_pos, budget): the frames relay_frames
 * would take at the start of `data`, for a relay whose plugins read every message: returns
 * (end, frames, key_pos), frames a list with one (opcode, payload, out) tuple per frame,
 * payload in the clear and out the frame as it goes to the other peer if the plugins leave it
 * unchanged (masked: with a fresh key from `keys` at `key_pos`; else as it came). */
static PyObject *
whole_frames(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, keys;
    PyObject *frames = NULL, *result = NULL;
    Py_ssize_t position = 0, key_pos;

    int masked;
    unsigned long long max_frame, max_message;
    Py_ssize_t budget;
    if (walk_args(args, nargs, 7, "whole_frames", &masked, &max_frame, &max_message,
                  &key_pos) < 0 ||
        budget_arg(args[6], &budget) < 0) {
        return NULL;
    }
    unsigned long long max_length = max_frame < max_message ? max_frame : max_message;
    if (walk_buffers(args, &data, &keys) < 0) {
        return NULL;
    }
    frames = PyList_New(0);
    if (frames == NULL) {
        goto done;
    }
    const unsigned char *source = data.buf;
    const unsigned char *key_block = keys.buf;
    for (;;) {
        Py_ssize_t header;
        unsigned long long length;
        if (!simple_frame(source + position, data.len - position, masked, max_length, 0, &header,
                          &length)) {
            break;
        }
        if (masked && key_pos + 4 > keys.len) {
            break; /* out of fresh keys: the caller draws more and goes on */
        }
        const unsigned char *frame = source + position;
        const unsigned char *payload = frame + header;
        unsigned char opcode = frame[0] & 0x0F;
        Py_ssize_t size = header + (Py_ssize_t)length;
        PyObject *content, *out;
        if (masked) {
            /* New objects to write into: PyBytes_FromStringAndSize with data returns
             * CPython's shared one-byte objects, which must never be written. */
            content = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)length);
            if (content == NULL) {
                goto done;
            }
            unsigned char *clear = (unsigned char *)PyBytes_AS_STRING(content);
            xor_copy(clear, payload, (Py_ssize_t)length, payload - 4);
            if (opcode == 0x1 && !valid_utf8(clear, (Py_ssize_t)length)) {
                Py_DECREF(content);
                break;
            }
            out = PyBytes_FromStringAndSize(NULL, size);
            if (out == NULL) {
                Py_DECREF(content);
                goto done;
            }
            unsigned char *target = (unsigned char *)PyBytes_AS_STRING(out);
            memcpy(target, frame, header - 4);
            memcpy(target + header - 4, key_block + key_pos, 4);
            xor_copy(target + header, clear, (Py_ssize_t)length, key_block + key_pos);
        }
        else {
            if (opcode == 0x1 && !valid_utf8(payload, (Py_ssize_t)length)) {
                break;
            }
            content = PyBytes_FromStringAndSize((const char *)payload, (Py_ssize_t)length);
            if (content == NULL) {
                goto done;
            }
            out = PyBytes_FromStringAndSize((const char *)frame, size);
            if (out == NULL) {
                Py_DECREF(content);
                goto done;
            }
        }
        PyObject *item = Py_BuildValue("(iNN)", (int)opcode, content, out);
        if (item == NULL) {
            goto done;
        }
        int appended = PyList_Append(frames, item);
        Py_DECREF(item);
        if (appended < 0) {
            goto done;
        }
        if (masked) {
            key_pos += 4;
        }
        position += size;
        budget -= (Py_ssize_t)length + FRAME_COST;
        if (budget <= 0) {
            break;
        }
    }
    result = Py_BuildValue("nNn", position, frames, key_pos);
    frames = NULL;
done:
    Py_XDECREF(frames);
    PyBuffer_Release(&keys);
    PyBuffer_Release(&data);
    return result;
}

/* whole_deflated(data, masked, max_frame, max_message, keys, key_pos, inflate, max_compressed,
 * budget): whole_frames for permessage-deflate, the frames relay_deflated takes (inflated the same way)
 * for plugins to read. Returns (end, frames, key_pos, error), frames a list of (opcode, content,
 * wire, out): wire the compressed payload in the clear without the RFC 7692 tail (None for a
 * frame sent uncompressed), out the frame as it came, re-masked with a fresh key when masked;
 * error as relay_deflated's. */
static PyObject *
whole_deflated(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, keys;
    PyObject *frames = NULL, *result = NULL, *error = NULL;
    Py_ssize_t position = 0, key_pos;
    int masked;
    unsigned long long max_plain, max_deflated;
    Inflating run;
    Py_ssize_t budget;
    if (inflating_args(args, nargs, 9, "whole_deflated", &masked, &max_plain, &max_deflated,
                       &key_pos, &run) < 0) {
        return NULL;
    }
    if (budget_arg(args[8], &budget) < 0) {
        inflating_end(&run);
        return NULL;
    }
    if (walk_buffers(args, &data, &keys) < 0) {
        inflating_end(&run);
        return NULL;
    }
    frames = PyList_New(0);
    if (frames == NULL) {
        goto done;
    }
    const unsigned char *source = data.buf;
    const unsigned char *key_block = keys.buf;
    for (;;) {
        Py_ssize_t header;
        unsigned long long length;
        if (data.len - position < 2) {
            break;
        }
        const unsigned char *frame = source + position;
        unsigned char first = frame[0];
        int compressed = first == 0xC1 || first == 0xC2;
        if (!simple_frame(frame, data.len - position, masked,
                          compressed ? max_deflated : max_plain, compressed ? 0x40 : 0, &header,
                          &length)) {
            break;
        }
        if (masked && key_pos + 4 > keys.len) {
            break; /* out of fresh keys: before anything is inflated */
        }
        const unsigned char *payload = frame + header;
        unsigned char opcode = first & 0x0F;
        Py_ssize_t size = header + (Py_ssize_t)length;
        /* The payload in the clear, in a new object (never a shared one-byte bytes: with
         * data, PyBytes_FromStringAndSize may return one, which must not be written). */
        PyObject *clear_object = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)length);
        if (clear_object == NULL) {
            goto done;
        }
        unsigned char *clear = (unsigned char *)PyBytes_AS_STRING(clear_object);
        if (masked) {
            xor_copy(clear, payload, (Py_ssize_t)length, payload - 4);
        }
        else {
            memcpy(clear, payload, (size_t)length);
        }
        PyObject *content, *wire;
        int ended = 0;
        if (compressed) {
            int failed = inflate_checked(&run, clear, length, opcode == 0x1, &content, &ended,
                                         &error);
            if (failed) {
                Py_DECREF(clear_object);
                if (failed < 0) {
                    goto done;
                }
                break;
            }
            wire = clear_object;
        }
        else {
            if (opcode == 0x1 && !valid_utf8(clear, (Py_ssize_t)length)) {
                Py_DECREF(clear_object);
                break;
            }
            content = clear_object;
            wire = Py_NewRef(Py_None);
        }
        PyObject *out = PyBytes_FromStringAndSize(NULL, size);
        if (out == NULL) {
            Py_DECREF(content);
            Py_DECREF(wire);
            goto done;
        }
        unsigned char *target = (unsigned char *)PyBytes_AS_STRING(out);
        if (masked) {
            memcpy(target, frame, header - 4);
            memcpy(target + header - 4, key_block + key_pos, 4);
            xor_copy(target + header, clear, (Py_ssize_t)length, key_block + key_pos);
            key_pos += 4;
        }
        else {
            memcpy(target, frame, (size_t)size);
        }
        budget -= (PyBytes_Check(content) ? PyBytes_GET_SIZE(content) : 0) + FRAME_COST;
        PyObject *item = Py_BuildValue("(iNNN)", (int)opcode, content, wire, out);
        if (item == NULL) {
            goto done;
        }
        int appended = PyList_Append(frames, item);
        Py_DECREF(item);
        if (appended < 0) {
            goto done;
        }
        position += size;
        if (ended) {
            break; /* the decoder was replaced: the caller asks for the new one */
        }
        if (budget <= 0) {
            break;
        }
    }
    result = Py_BuildValue("nNnN", position, frames, key_pos,
                           error != NULL ? error : Py_NewRef(Py_None));
    frames = NULL;
    error = NULL;
done:
    inflating_end(&run);
    Py_XDECREF(frames);
    Py_XDECREF(error);
    PyBuffer_Release(&keys);
    PyBuffer_Release(&data);
    return result;
}

static PyMethodDef methods[] = {
    {"mask", (PyCFunction)(void (*)(void))mask, METH_FASTCALL,
     "mask(buffer, key, offset=0, /)\n--\n\n"
     "XOR a writable buffer in place with a 4-byte key, starting at byte `offset` of the key\n"
     "cycle (the buffer's position in its frame's payload). RFC 6455 section 5.3."},
    {"mask_copy", (PyCFunction)(void (*)(void))mask_copy, METH_FASTCALL,
     "mask_copy(data, key, offset=0, /)\n--\n\n"
     "A new bytes object: `data` XORed with a 4-byte key from byte `offset` of the key cycle,\n"
     "in one pass (mask() works in place on a writable buffer)."},
    {"relay_frames", (PyCFunction)(void (*)(void))relay_frames, METH_FASTCALL,
     "relay_frames(data, masked, max_frame, max_message, keys, key_pos, /)\n--\n\n"
     "The whole, final, unextended text and binary frames at the start of `data`, checked\n"
     "and (masked: from a client) re-masked with fresh keys from `keys` at `key_pos`.\n"
     "Returns (end, out, frames, key_pos): out is the re-masked bytes of data[:end], or\n"
     "None when unmasked (data[:end] goes on unchanged) or when end is 0."},
    {"relay_deflated", (PyCFunction)(void (*)(void))relay_deflated, METH_FASTCALL,
     "relay_deflated(data, masked, max_frame, max_message, keys, key_pos, inflate,\n"
     "               max_compressed, /)\n--\n\n"
     "relay_frames for permessage-deflate: also whole compressed text and binary frames of at\n"
     "most max_compressed bytes, their payload (with the RFC 7692 tail) fed to inflate, the\n"
     "content checked, the compressed bytes forwarded. Returns (end, out, frames, key_pos,\n"
     "error)."},
    {"relay_frames_recorded", (PyCFunction)(void (*)(void))relay_frames_recorded, METH_FASTCALL,
     "relay_frames_recorded(data, masked, max_frame, max_message, keys, key_pos, keep, /)\n"
     "--\n\n"
     "relay_frames for recorded frames: returns (end, out, key_pos, frames), frames a list of\n"
     "(opcode, length, payload) per frame, payload its first `keep` bytes in the clear (all\n"
     "when keep is negative)."},
    {"whole_frames", (PyCFunction)(void (*)(void))whole_frames, METH_FASTCALL,
     "whole_frames(data, masked, max_frame, max_message, keys, key_pos, budget, /)\n--\n\n"
     "The frames relay_frames would take at the start of `data`, for plugins to read:\n"
     "returns (end, frames, key_pos), frames a list of (opcode, payload, out) per frame,\n"
     "payload in the clear, out the frame for the other peer (re-masked when masked); it stops\n"
     "once the payloads and 256 bytes per frame reach `budget`."},
    {"whole_deflated", (PyCFunction)(void (*)(void))whole_deflated, METH_FASTCALL,
     "whole_deflated(data, masked, max_frame, max_message, keys, key_pos, inflate,\n"
     "               max_compressed, budget, /)\n--\n\n"
     "The frames relay_deflated would take, for plugins to read: returns (end, frames,\n"
     "key_pos, error), frames a list of (opcode, content, wire, out) per frame, content\n"
     "inflated, wire the compressed payload in the clear (None when not compressed), out the\n"
     "frame for the other peer (re-masked when masked); it stops once the contents and 256\n"
     "bytes per frame reach `budget`."},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "wsproxy.sansio._speedups",
    .m_doc = "WebSocket masking and the relay's fast path in C; see wsproxy.sansio.masking and\n"
              "wsproxy.sansio.fastpath for the pure-Python twins.",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&module);
}
