# Static types for writer.py when Cython compiles it (connections/protocols/compiled.py): the proxy
# calls RecordingWriter.event for every event it records. Every attribute the .py file sets on a
# RecordingWriter must be declared here, with a type that holds every value it gets.

cdef class RecordingWriter:
    cdef public object path
    cdef public double started_monotonic
    cdef public object chain
    cdef public str session_id
    cdef public dict header
    cdef public bint closed
    cdef public bint finished
    cdef public object end_status
    cdef public dict end_counters
    cdef public Py_ssize_t dropped_events
    cdef public double watched_until
    cdef public dict search_texts
    cdef public Py_ssize_t _search_chars
    cdef public list _pending

    cpdef event(self, str kind, object data)
