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

static PyObject *
mask(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer buffer, key;
    Py_ssize_t offset = 0;
    unsigned char rotated[4];
    int shift;

    if (nargs < 2 || nargs > 3) {
        PyErr_Format(PyExc_TypeError,
                     "mask() takes 2 or 3 positional arguments (%zd given)", nargs);
        return NULL;
    }
    if (nargs == 3) {
        offset = PyLong_AsSsize_t(args[2]);
        if (offset == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (offset < 0) {
            PyErr_SetString(PyExc_ValueError, "mask() offset must not be negative");
            return NULL;
        }
    }
    shift = (int)(offset & 3);
    if (PyBytes_CheckExact(args[1])) {
        /* The usual case, without the cost of a buffer export (it shows at 64 bytes). */
        if (PyBytes_GET_SIZE(args[1]) != 4) {
            PyErr_Format(PyExc_ValueError, "mask() key must be 4 bytes, not %zd",
                         PyBytes_GET_SIZE(args[1]));
            return NULL;
        }
        for (int j = 0; j < 4; j++) {
            rotated[j] = ((const unsigned char *)PyBytes_AS_STRING(args[1]))[(j + shift) & 3];
        }
    }
    else {
        if (PyObject_GetBuffer(args[1], &key, PyBUF_SIMPLE) < 0) {
            return NULL;
        }
        if (key.len != 4) {
            PyErr_Format(PyExc_ValueError, "mask() key must be 4 bytes, not %zd", key.len);
            PyBuffer_Release(&key);
            return NULL;
        }
        for (int j = 0; j < 4; j++) {
            rotated[j] = ((const unsigned char *)key.buf)[(j + shift) & 3];
        }
        PyBuffer_Release(&key);
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

static PyMethodDef methods[] = {
    {"mask", (PyCFunction)(void (*)(void))mask, METH_FASTCALL,
     "mask(buffer, key, offset=0, /)\n--\n\n"
     "XOR a writable buffer in place with a 4-byte key, starting at byte `offset` of the key\n"
     "cycle (the buffer's position in its frame's payload). RFC 6455 section 5.3."},
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
    .m_doc = "WebSocket masking in C; see wsproxy.sansio.masking for the pure-Python twin.",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&module);
}
