# Static types for tracker.py when Cython compiles it (connections/protocols/compiled.py).
# Every attribute the .py file sets must be declared here, with a type that holds every value it gets.
# Compiled, indexing `bytes` typed here with an integer gives a signed C char (0xFF reads as -1), not
# Python's 0..255: the .py file masks every byte it reads that way with `& 0xFF`.

cimport cython


cdef Py_ssize_t _message_length(bytes data, Py_ssize_t pos) except -1
cdef list _replaced(list parts, bytes data, Py_ssize_t sent, Py_ssize_t pos, bytes replacement)
cdef bytes _spliced(list parts, bytes data, Py_ssize_t sent, Py_ssize_t pos)


cdef class Execution:
    cdef public Py_ssize_t seq
    cdef public long long started  # perf_counter_ns()
    cdef public object columns
    cdef public list formats
    cdef public object fields
    cdef public object row_masker
    cdef public list rows
    cdef public Py_ssize_t row_bytes
    cdef public bint truncated
    cdef public Py_ssize_t copy_bytes
    cdef public tuple source
    cdef public object denied
    cdef public str text
    cdef public Py_ssize_t result_index

    cdef void reset(self)


cdef class StatementTracker:
    cdef public object sink
    cdef public Py_ssize_t max_rows
    cdef public Py_ssize_t max_bytes
    cdef public object owed
    cdef public dict statements
    cdef public object approved_statement
    cdef public dict statement_columns
    cdef public dict portals
    cdef public dict portal_columns
    cdef public Py_ssize_t statement_count
    cdef public Py_ssize_t error_count
    cdef public Py_ssize_t denied_count
    cdef public bytes transaction_status
    cdef public object copy_in
    cdef public object copy_out
    cdef public dict descriptions
    cdef public object policy
    cdef public object masker
    cdef public dict client_handlers
    cdef public dict server_handlers

    # The per-message path: C calls between these, Python calls only into the handlers' tables.
    @cython.locals(raw=cython.p_char, pos=Py_ssize_t, size=Py_ssize_t, sent=Py_ssize_t, end=Py_ssize_t,
                   length=Py_ssize_t, parts=list)
    cpdef tuple relay_from_client(self, bytes data, Py_ssize_t limit)
    cpdef from_client(self, bytes kind, bytes payload)
    @cython.locals(raw=cython.p_char, pos=Py_ssize_t, size=Py_ssize_t, sent=Py_ssize_t, end=Py_ssize_t,
                   length=Py_ssize_t, parts=list)
    cpdef tuple relay_from_server(self, bytes data)
    @cython.locals(raw=cython.p_char)
    cpdef from_server(self, bytes kind, bytes data, Py_ssize_t start, Py_ssize_t end)
    cdef _client_query(self, bytes payload)
    cdef _on_query_text(self, str text)
    cdef _track(self, bytes kind, bytes payload)
    cdef str _text_of(self, bytes kind, bytes payload)
    cdef Execution _start(self, str text, object params, object described=*, object formats=*)
    cdef _head(self)
    cdef _current(self)
    @cython.locals(raw=cython.p_char)
    cdef _on_data_row(self, bytes data, Py_ssize_t start, Py_ssize_t end)
    cdef _mask_row(self, Execution execution, bytes data, Py_ssize_t start, Py_ssize_t end)
    cdef _plan_masking(self, Execution execution)
    cpdef _on_row_description(self, bytes payload)
    cpdef _on_command_complete(self, bytes payload)
    cdef _record_row(self, Execution execution, bytes payload, Py_ssize_t size)
    cdef _describe(self, bytes payload)
    @cython.locals(execution=Execution)
    cdef _finish(self, dict outcome)
    @cython.locals(elapsed_us=cython.longlong)
    cdef _emit(self, Execution execution, dict outcome)
