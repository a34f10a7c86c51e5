# Static types for messages.py when Cython compiles it (connections/protocols/compiled.py).
# Compiled, indexing `bytes` typed here with an integer gives a signed C char (0xFF reads as -1), not
# Python's 0..255: the .py file masks every byte it reads that way with `& 0xFF`.

cimport cython


@cython.locals(raw=cython.p_char, size=Py_ssize_t, count=Py_ssize_t, pos=Py_ssize_t, start=Py_ssize_t, _=Py_ssize_t)
cpdef list parse_data_row(bytes payload)
