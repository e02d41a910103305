/*
 * The token splitter's compiled kernel (see job/native.py, which builds and
 * loads it with ctypes, and job/tokens.py, whose pure-Python kernel gives the
 * same bytes when no C compiler is at hand).
 *
 * Plain C99 with no Python headers: `cc -O2 -shared -fPIC` is all it needs.
 */
#include <stddef.h>

/* ASCII whitespace as bytes.split() knows it: space, \t, \n, \v, \f, \r. */
static const unsigned char WHITESPACE[256] = {
    ['\t'] = 1, ['\n'] = 1, ['\v'] = 1, ['\f'] = 1, ['\r'] = 1, [' '] = 1,
};

/*
 * Copy in[0..n) to out, every run of whitespace becoming one '\n' and a run
 * that starts where *after_whitespace is set (the byte before `in` was
 * whitespace) being dropped. Returns the bytes written (at most n; out may
 * not overlap in). On return *after_whitespace says whether the last byte
 * was whitespace, and *newlines has grown by the newlines written.
 *
 * Branch-free: every byte is stored, and the output pointer only moves past
 * it when it is kept, so the token boundaries of real text (one byte in
 * seven) cost no mispredicted branches.
 */
size_t amlshard_squeeze(const unsigned char *restrict in, size_t n, unsigned char *restrict out,
                        int *after_whitespace, size_t *newlines)
{
    unsigned char *start = out;
    unsigned previous = *after_whitespace != 0;
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char byte = in[i];
        unsigned space = WHITESPACE[byte];
        *out = space ? '\n' : byte;
        unsigned first = space & (previous ^ 1u);
        out += (space ^ 1u) | first;
        kept += first;
        previous = space;
    }
    *after_whitespace = (int)previous;
    *newlines += kept;
    return (size_t)(out - start);
}
