/*
 * The token splitter's compiled kernel (see job/native.py, which builds and
 * loads it with ctypes, and job/tokens.py, whose pure-Python kernel gives the
 * same bytes when no C compiler is at hand).
 *
 * Plain C99 with no Python headers: `cc -O2 -shared -fPIC` is all it needs.
 * Three paths do the same work, chosen at run time (amlshard_select):
 *
 *   avx2    32 bytes at a time (x86-64 CPUs that have AVX2, GCC >= 4.9 or clang)
 *   sse2    16 bytes at a time (every x86-64 CPU)
 *   scalar  8 bytes at a time in a 64-bit word (any CPU, any C99 compiler; the
 *           word step needs a little-endian CPU, else byte by byte)
 *
 * The vector paths are compiled for their instruction set with the target
 * attribute and picked with __builtin_cpu_supports, not -march=native: one
 * library serves every node, also from a cache folder the nodes share. A
 * compiler without these extensions builds the scalar path alone.
 *
 * -DAMLSHARD_NO_SIMD builds the scalar path alone, and -DAMLSHARD_NO_WORDS
 * makes it go byte by byte, as on other CPUs and compilers (for the tests).
 *
 * Two helpers of the rank's planning live here too, since the library is
 * built anyway (job/native.py; each has a Python twin that gives the same
 * answer where the library is not at hand): amlshard_examine, the `stat` of
 * a folder's files in one call, and amlshard_size_shards, the `size`
 * strategy's assignment (job/sharding.py).
 */
#if defined(__linux__)
#define _GNU_SOURCE /* O_TMPFILE, linkat */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#endif
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && !defined(AMLSHARD_NO_SIMD) && (defined(__clang__) || \
    (defined(__GNUC__) && (__GNUC__ > 4 || (__GNUC__ == 4 && __GNUC_MINOR__ >= 9))))
#define AMLSHARD_X86 1
#include <immintrin.h>
#endif

#if !defined(AMLSHARD_NO_WORDS) && defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define AMLSHARD_WORDS 1
#endif

/* ASCII whitespace as bytes.split() knows it: space, \t, \n, \v, \f, \r. */
static const unsigned char WHITESPACE[256] = {
    ['\t'] = 1, ['\n'] = 1, ['\v'] = 1, ['\f'] = 1, ['\r'] = 1, [' '] = 1,
};

/*
 * Every path has this shape: squeeze in[0..n) to out as amlshard_squeeze
 * says, *previous (0 or 1) being whether the byte before in[0] is whitespace
 * on entry and whether in[n-1] is on return; *kept grows by the newlines
 * written. Returns the end of what was written.
 */
typedef unsigned char *(*path_function)(const unsigned char *restrict in, size_t n,
                                        unsigned char *restrict out, unsigned *previous,
                                        size_t *kept);

/*
 * Byte by byte, branch-free: every byte is stored, and the output pointer
 * only moves past it when it is kept, so the token boundaries of real text
 * (one byte in seven) cost no mispredicted branches. The other paths end
 * with it, and hand it the blocks they do not compact themselves.
 */
static unsigned char *squeeze_bytes(const unsigned char *restrict in, size_t n,
                                    unsigned char *restrict out, unsigned *previous,
                                    size_t *kept)
{
    unsigned before = *previous;
    size_t first_count = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char byte = in[i];
        unsigned space = WHITESPACE[byte];
        *out = space ? '\n' : byte;
        unsigned first = space & (before ^ 1u);
        out += (space ^ 1u) | first;
        first_count += first;
        before = space;
    }
    *previous = before;
    *kept += first_count;
    return out;
}

#ifdef AMLSHARD_WORDS
#define ONES UINT64_C(0x0101010101010101)
#define HIGHS (ONES * 0x80)

/*
 * 8 bytes at a time: the high bit of each byte of the result is set where
 * the byte of x is whitespace. Exact per byte (no carry crosses a byte):
 * the sums are of 7-bit values, and bytes with their top bit set are none.
 */
static uint64_t whitespace_bits(uint64_t x)
{
    uint64_t low = x & ~HIGHS;
    uint64_t from_tab = low + ONES * (0x80 - '\t');      /* low >= 9 */
    uint64_t past_cr = low + ONES * (0x80 - '\r' - 1);   /* low >= 14 */
    uint64_t not_space = (low ^ (ONES * ' ')) + ~HIGHS;  /* low != 32 */
    return ((from_tab & ~past_cr) | ~not_space) & ~x & HIGHS;
}

static unsigned char *squeeze_words(const unsigned char *restrict in, size_t n,
                                    unsigned char *restrict out, unsigned *previous,
                                    size_t *kept)
{
    unsigned before = *previous;
    size_t count = 0, i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, in + i, 8);
        uint64_t space = whitespace_bits(x);
        uint64_t after = (space << 8) | ((uint64_t)before << 7);
        if (space & after) {  /* a byte to drop: this word byte by byte */
            out = squeeze_bytes(in + i, 8, out, &before, &count);
            continue;
        }
        uint64_t fill = (space >> 7) * 0xff;
        x ^= (x ^ (ONES * '\n')) & fill;
        memcpy(out, &x, 8);
        out += 8;
        count += ((space >> 7) * ONES) >> 56;  /* the bytes' high bits, summed in the top byte */
        before = (unsigned)(space >> 63);
    }
    *previous = before;
    *kept += count;
    return squeeze_bytes(in + i, n - i, out, previous, kept);
}
#else
#define squeeze_words squeeze_bytes
#endif

#ifdef AMLSHARD_X86
/* The bits of a 16-bit mask set, without the popcnt instruction SSE2 may lack. */
static unsigned count16(unsigned m)
{
    m = m - ((m >> 1) & 0x5555u);
    m = (m & 0x3333u) + ((m >> 2) & 0x3333u);
    m = (m + (m >> 4)) & 0x0f0fu;
    return (m + (m >> 8)) & 0x1fu;
}

/*
 * 16 bytes at a time. Whitespace is x == ' ' or x - 9 <= 4 (unsigned, as
 * min(x - 9, 4) == x - 9); it becomes '\n'. A block where no whitespace
 * follows whitespace (most blocks of prose) is stored whole; another goes to
 * the scalar loop (SSE2 has no byte shuffle to compact it).
 */
static unsigned char *squeeze_sse2(const unsigned char *restrict in, size_t n,
                                   unsigned char *restrict out, unsigned *previous,
                                   size_t *kept)
{
    const __m128i tab = _mm_set1_epi8('\t'), four = _mm_set1_epi8(4);
    const __m128i space = _mm_set1_epi8(' '), newline = _mm_set1_epi8('\n');
    unsigned before = *previous;
    size_t count = 0, i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(in + i));
        __m128i shifted = _mm_sub_epi8(x, tab);
        __m128i white = _mm_or_si128(_mm_cmpeq_epi8(x, space),
                                     _mm_cmpeq_epi8(_mm_min_epu8(shifted, four), shifted));
        unsigned mask = (unsigned)_mm_movemask_epi8(white);
        if (mask & ((mask << 1) | before)) {
            out = squeeze_bytes(in + i, 16, out, &before, &count);
            continue;
        }
        __m128i mapped = _mm_or_si128(_mm_andnot_si128(white, x), _mm_and_si128(white, newline));
        _mm_storeu_si128((__m128i *)out, mapped);
        out += 16;
        count += count16(mask);
        before = mask >> 15;
    }
    *previous = before;
    *kept += count;
    return squeeze_bytes(in + i, n - i, out, previous, kept);
}

/*
 * KEEP[m]: for an 8-byte group whose bytes to drop are the bits of m, the
 * indices of the bytes kept, in order, then 0x80 (pshufb's zero) to fill.
 */
static unsigned char KEEP[256][8];

__attribute__((constructor)) static void fill_keep(void)
{
    for (unsigned m = 0; m < 256; m++) {
        unsigned k = 0;
        for (unsigned bit = 0; bit < 8; bit++)
            if (!(m & (1u << bit)))
                KEEP[m][k++] = (unsigned char)bit;
        while (k < 8)
            KEEP[m][k++] = 0x80;
    }
}

/*
 * 32 bytes at a time. Whitespace is the bytes that pshufb of a table
 * indexed by their low nibble gives back unchanged: the table holds ' ' at
 * 0, \t \n \v \f \r at 9 to 13, and at every other nibble a byte whose low
 * nibble differs; a byte with its top bit set gets 0, which it is not. A
 * block with whitespace after whitespace is compacted in four groups of 8
 * bytes, with pshufb and KEEP; each group's 8-byte store ends within the
 * input's length, since the output never runs ahead of the input.
 */
__attribute__((target("avx2,popcnt")))
static unsigned char *squeeze_avx2(const unsigned char *restrict in, size_t n,
                                   unsigned char *restrict out, unsigned *previous,
                                   size_t *kept)
{
    const __m256i table = _mm256_setr_epi8(' ', 0, 0, 0, 0, 0, 0, 0, 0, '\t', '\n', '\v', '\f',
                                           '\r', 0, 0, ' ', 0, 0, 0, 0, 0, 0, 0, 0, '\t', '\n',
                                           '\v', '\f', '\r', 0, 0);
    const __m256i newline = _mm256_set1_epi8('\n');
    uint32_t before = *previous;
    size_t count = 0, i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i x = _mm256_loadu_si256((const __m256i *)(in + i));
        __m256i white = _mm256_cmpeq_epi8(_mm256_shuffle_epi8(table, x), x);
        __m256i mapped = _mm256_blendv_epi8(x, newline, white);
        uint32_t mask = (uint32_t)_mm256_movemask_epi8(white);
        uint32_t drop = mask & ((mask << 1) | before);
        before = mask >> 31;
        count += (size_t)(_mm_popcnt_u32(mask) - _mm_popcnt_u32(drop));
        if (!drop) {
            _mm256_storeu_si256((__m256i *)out, mapped);
            out += 32;
            continue;
        }
        __m128i halves[2] = {_mm256_castsi256_si128(mapped), _mm256_extracti128_si256(mapped, 1)};
        for (int h = 0; h < 2; h++) {
            unsigned low = (drop >> (16 * h)) & 0xff, high = (drop >> (16 * h + 8)) & 0xff;
            __m128i order = _mm_unpacklo_epi64(
                _mm_loadl_epi64((const __m128i *)KEEP[low]),
                _mm_add_epi8(_mm_loadl_epi64((const __m128i *)KEEP[high]), _mm_set1_epi8(8)));
            __m128i packed = _mm_shuffle_epi8(halves[h], order);
            _mm_storel_epi64((__m128i *)out, packed);
            out += 8 - _mm_popcnt_u32(low);
            _mm_storel_epi64((__m128i *)out, _mm_unpackhi_epi64(packed, packed));
            out += 8 - _mm_popcnt_u32(high);
        }
    }
    *previous = before;
    *kept += count;
    return squeeze_bytes(in + i, n - i, out, previous, kept);
}
#endif

struct path {
    const char *name;
    path_function function;
};

/* Fastest first. */
static const struct path PATHS[] = {
#ifdef AMLSHARD_X86
    {"avx2", squeeze_avx2},
    {"sse2", squeeze_sse2},
#endif
    {"scalar", squeeze_words},
};
#define PATH_COUNT (sizeof(PATHS) / sizeof(PATHS[0]))

static int supported(const struct path *path)
{
#ifdef AMLSHARD_X86
    if (path->function == squeeze_avx2) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
    }
#else
    (void)path;
#endif
    return 1;
}

static const struct path *current;

/*
 * Use the path `name` ("avx2", "sse2" or "scalar"; NULL or "" for the
 * fastest this CPU runs) for the calls that follow. Returns 0, or -1 when
 * there is no such path in this build or this CPU cannot run it (the path
 * in use is then unchanged). Not to be called while another thread squeezes.
 */
int amlshard_select(const char *name)
{
    int fastest = name == NULL || *name == '\0';
    for (size_t k = 0; k < PATH_COUNT; k++) {
        if (!fastest && strcmp(name, PATHS[k].name) != 0)
            continue;
        if (!supported(&PATHS[k])) {
            if (fastest)
                continue;
            return -1;
        }
        current = &PATHS[k];
        return 0;
    }
    return -1;
}

/* The name of the path in use (selecting the fastest first, if none is yet). */
const char *amlshard_selected(void)
{
    if (current == NULL)
        amlshard_select(NULL);
    return current->name;
}

/*
 * The paths of this build that this CPU runs, fastest first, separated by
 * spaces: "avx2 sse2 scalar" on most x86-64 machines, "scalar" elsewhere.
 */
const char *amlshard_paths(void)
{
    static char names[64];
    if (names[0] == '\0') {
        char *at = names;
        for (size_t k = 0; k < PATH_COUNT; k++) {
            if (!supported(&PATHS[k]))
                continue;
            size_t length = strlen(PATHS[k].name);
            if (at != names)
                *at++ = ' ';
            memcpy(at, PATHS[k].name, length + 1);
            at += length;
        }
    }
    return names;
}

/*
 * Copy in[0..n) to out, every run of whitespace becoming one '\n' and a run
 * that starts where *after_whitespace is set (the byte before `in` was
 * whitespace) being dropped. Returns the bytes written (at most n; out may
 * not overlap in, and no byte past out[n-1] is written). On return
 * *after_whitespace says whether the last byte was whitespace, and
 * *newlines has grown by the newlines written. The result is the same
 * whichever path amlshard_select chose, and however the input is cut into
 * calls.
 */
size_t amlshard_squeeze(const unsigned char *restrict in, size_t n, unsigned char *restrict out,
                        int *after_whitespace, size_t *newlines)
{
    if (current == NULL)
        amlshard_select(NULL);
    unsigned previous = *after_whitespace != 0;
    size_t kept = 0;
    unsigned char *end = current->function(in, n, out, &previous, &kept);
    *after_whitespace = (int)previous;
    *newlines += kept;
    return (size_t)(end - out);
}

/*
 * The whole of a small file split in one call, for job/tokens.py (what its
 * Python path does with os calls, without a Python object per step):
 * open `source` (O_NONBLOCK: a FIFO swapped in is not waited on), check it is
 * a regular file of at most `capacity` - 1 bytes, read it whole into `in`
 * (one read that returns the size fstat gave), squeeze it into `out` (at
 * least `capacity` bytes), write that to an unnamed file in `folder` and link
 * it to `final` through `proc_fds` (an open /proc/self/fd).
 *
 * Returns the tokens written, or -1 when it did nothing that can be seen:
 * anything unusual (an error of any call, a larger or special file, a file
 * that grew, an existing `final`, no O_TMPFILE) leaves the caller to do the
 * file its own way, which reports the error or handles the case. Once the
 * link is made the output is whole: a failing close then returns -2, the
 * output stays, and the caller does the file again (replacing it whole).
 */
long long amlshard_split_small_file(const char *source, const char *folder, const char *final,
                                    int proc_fds, unsigned char *in, unsigned char *out,
                                    size_t capacity)
{
#if defined(__linux__) && defined(O_TMPFILE)
    int fd = open(source, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat info;
    if (fstat(fd, &info) != 0 || !S_ISREG(info.st_mode) || info.st_size < 0 ||
        (unsigned long long)info.st_size >= capacity) {
        close(fd);
        return -1;
    }
    size_t size = (size_t)info.st_size;
    ssize_t got = read(fd, in, size + 1);
    close(fd);
    if (got < 0 || (size_t)got != size)
        return -1;
    int after_whitespace = 1;
    size_t tokens = 0;
    size_t length = amlshard_squeeze(in, size, out, &after_whitespace, &tokens);
    if (!after_whitespace) {
        out[length++] = '\n';
        tokens++;
    }
    int output = open(folder, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);
    if (output < 0)
        return -1;
    size_t written = 0;
    while (written < length) {
        ssize_t done = write(output, out + written, length - written);
        if (done <= 0) {
            close(output);
            return -1;
        }
        written += (size_t)done;
    }
    char name[24];
    snprintf(name, sizeof name, "%d", output);
    if (linkat(proc_fds, name, AT_FDCWD, final, AT_SYMLINK_FOLLOW) != 0) {
        close(output);
        return -1;
    }
    return close(output) == 0 ? (long long)tokens : -2;
#else
    (void)source; (void)folder; (void)final; (void)proc_fds; (void)in; (void)out;
    (void)capacity;
    return -1;
#endif
}


/*
 * Examine `count` entries of the folder `folder` (a descriptor) whose names
 * follow one another in `names`, each ended by a NUL: `fstatat`, following a
 * symbolic link when `follow` is set. For each, kinds[k] is its file type
 * (st_mode & S_IFMT) and sizes[k], mtimes_ns[k] its size and modification time,
 * or kinds[k] is -errno when it cannot be examined (the caller examines those
 * its own way, to report them as it reports any other), -EOVERFLOW when its
 * time in nanoseconds does not fit in 64 bits.
 */
#define MTIME_SECONDS 9223372035LL /* the most whose nanoseconds a long long holds */

void amlshard_examine(int folder, const char *names, size_t count, int follow, int *kinds,
                      long long *sizes, long long *mtimes_ns)
{
    for (size_t k = 0; k < count; k++) {
#if defined(__linux__) && defined(AT_SYMLINK_NOFOLLOW)
        struct stat info;
        if (fstatat(folder, names, &info, follow ? 0 : AT_SYMLINK_NOFOLLOW) != 0) {
            kinds[k] = -errno;
        } else if (info.st_mtim.tv_sec > MTIME_SECONDS || info.st_mtim.tv_sec < -MTIME_SECONDS) {
            kinds[k] = -EOVERFLOW; /* past 2262 (ext4 goes to 2446): left to Python's integers */
        } else {
            kinds[k] = (int)(info.st_mode & S_IFMT);
            sizes[k] = (long long)info.st_size;
            mtimes_ns[k] = (long long)info.st_mtim.tv_sec * 1000000000LL + info.st_mtim.tv_nsec;
        }
#else
        (void)folder; (void)follow; (void)sizes; (void)mtimes_ns;
        kinds[k] = -1;
#endif
        names += strlen(names) + 1;
    }
}

struct sized { uint64_t key; size_t index; };
struct load { long long load; size_t shard; };

static int lighter(const struct load *a, const struct load *b)
{
    return a->load < b->load || (a->load == b->load && a->shard < b->shard);
}

/*
 * Sort `items` by key, keeping the order of equal keys: a radix sort, a byte at
 * a time from the lowest (a million sizes in tens of milliseconds, where qsort
 * took 300), skipping the bytes that every key shares. `spare` holds as many.
 */
static void sort_by_key(struct sized *items, struct sized *spare, size_t n)
{
    for (unsigned shift = 0; shift < 64; shift += 8) {
        size_t starts[256] = {0};
        for (size_t k = 0; k < n; k++)
            starts[(items[k].key >> shift) & 0xff]++;
        if (n == 0 || starts[(items[0].key >> shift) & 0xff] == n)
            continue; /* every key has this byte: the order stays */
        size_t at = 0;
        for (unsigned b = 0; b < 256; b++) {
            size_t here = starts[b];
            starts[b] = at;
            at += here;
        }
        for (size_t k = 0; k < n; k++)
            spare[starts[(items[k].key >> shift) & 0xff]++] = items[k];
        memcpy(items, spare, n * sizeof *items);
    }
}

static int ascending(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

/*
 * The `size` strategy (job/sharding.py, _largest_first): the `n` items, in
 * order of decreasing size (the lower index first on a tie), each given to
 * the least loaded of `count` shards (the lower shard on a tie). With
 * `shards`, writes the shard of item k to shards[k]; with `taken`, writes the
 * items shard `index` takes there, ascending, and returns how many (a rank
 * asks for its own: no write lands at random in an array of a million).
 * Returns -1 (nothing written) when `count` is 0, a size is negative, the
 * sizes add up past LLONG_MAX, or memory runs short: the caller then
 * balances them in Python.
 */
long long amlshard_size_shards(const long long *sizes, size_t n, size_t count, size_t index,
                               int *shards, long long *taken)
{
    if (count == 0)
        return -1;
    struct sized *order = malloc(2 * n * sizeof *order + 1);
    struct load *heap = malloc(count * sizeof *heap);
    if (order == NULL || heap == NULL) {
        free(order);
        free(heap);
        return -1;
    }
    long long total = 0;
    for (size_t k = 0; k < n; k++) {
        if (sizes[k] < 0 || sizes[k] > LLONG_MAX - total) { /* no load may overflow */
            free(order);
            free(heap);
            return -1;
        }
        total += sizes[k];
        order[k].key = ~(uint64_t)sizes[k]; /* the larger size, the smaller key */
        order[k].index = k;
    }
    sort_by_key(order, order + n, n); /* stable: on a tie, the lower index first */
    for (size_t s = 0; s < count; s++) { /* equal loads, shards ascending: a heap already */
        heap[s].load = 0;
        heap[s].shard = s;
    }
    long long found = 0;
    for (size_t k = 0; k < n; k++) {
        if (shards != NULL)
            shards[order[k].index] = (int)heap[0].shard;
        if (taken != NULL && heap[0].shard == index)
            taken[found++] = (long long)order[k].index;
        heap[0].load += (long long)~order[k].key; /* sifted down: the lightest on top again */
        size_t at = 0;
        for (;;) {
            size_t child = 2 * at + 1;
            if (child >= count)
                break;
            if (child + 1 < count && lighter(&heap[child + 1], &heap[child]))
                child++;
            if (!lighter(&heap[child], &heap[at]))
                break;
            struct load swap = heap[at];
            heap[at] = heap[child];
            heap[child] = swap;
            at = child;
        }
    }
    free(order);
    free(heap);
    if (taken != NULL)
        qsort(taken, (size_t)found, sizeof *taken, ascending);
    return found;
}
