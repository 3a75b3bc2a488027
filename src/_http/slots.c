/* Byte offsets of the __slots__ attributes of Python classes.
 *
 * A class with __slots__ stores each slot in its instances at a fixed
 * offset, described by a member descriptor in the class's __dict__.  The
 * lane reads and writes the state of the transport's Connection, Protocol
 * and friends there (a load or a store) instead of through attribute
 * lookups (a type-cache probe and a descriptor call each).  Offsets are
 * taken from the class itself at setup, by name, so a renamed or removed
 * slot is an error at server start, never a wrong read.
 */
#include "http.h"

#if PY_VERSION_HEX >= 0x030C0000
#define NC_OBJECT_EX Py_T_OBJECT_EX
#else
#define NC_OBJECT_EX T_OBJECT_EX
#endif

nc_slot nc_slot_offset(PyTypeObject *tp, const char *name)
{
    PyObject *dict = tp->tp_dict;
    PyObject *d = dict ? PyDict_GetItemString(dict, name) : NULL;
    if (!d || !PyObject_TypeCheck(d, &PyMemberDescr_Type)) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not a __slots__ attribute (the C lane needs it)",
                     tp->tp_name, name);
        return -1;
    }
    PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
    if (m->type != NC_OBJECT_EX || (m->flags & READONLY)) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not a plain object slot", tp->tp_name, name);
        return -1;
    }
    return m->offset;
}

int nc_slot_all(PyTypeObject *tp, nc_slot *out, int max)
{
    PyObject *dict = tp->tp_dict;
    PyObject *key, *d;
    Py_ssize_t pos = 0;
    int n = 0;
    while (dict && PyDict_Next(dict, &pos, &key, &d)) {
        if (!PyObject_TypeCheck(d, &PyMemberDescr_Type))
            continue;
        PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
        if (m->type != NC_OBJECT_EX)
            continue;
        if (n == max) {
            PyErr_Format(PyExc_TypeError, "%s has too many slots", tp->tp_name);
            return -1;
        }
        out[n++] = m->offset;
    }
    return n;
}
