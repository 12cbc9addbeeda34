/*
 * NAME
 *   fuzz_mustache - Mustache templates and the values rendered into them (templates/mustache.c)
 * DESCRIPTION
 *   Templates come from whoever writes a campaign hash; values from whoever
 *   writes a job. Input: the template source, then a NUL byte, then values
 *   separated by NUL bytes, given to the template's names in the order they
 *   were interned (a value left out is absent). Compiled in the name of
 *   "subject", rendered four ways: plain, HTML-escaped, header context
 *   (TPL_RENDER_NOCTL) and HTML in header context. Checked: a compile
 *   error names "subject: line L, column C"; rendering without NOCTL never
 *   fails; a NOCTL refusal names a variable that exists and whose value
 *   really holds CR, LF or NUL; a byte limit below the rendering's size
 *   gives -EMSGSIZE without passing it; a constant template renders its
 *   source's text the same whatever the values.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "templates/mustache.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /*
     * Every caller passes a NUL-terminated source today (q_campaign_parse
     * and push terminate fields), and compile copies len + 1 bytes, so the
     * harness terminates it too; issue 10 tracks that over-read.
     */
    uint8_t *copy = malloc(size + 1);
    memcpy(copy, data, size);
    copy[size] = 0;
    data = copy;
    const char *src = (const char *)data;
    const uint8_t *nul = memchr(data, 0, size);
    size_t srclen = nul ? (size_t)(nul - data) : size;
    char err[256];
    struct tpl_names *nm = tpl_names_new();
    struct tpl_mustache *t = tpl_mustache_compile(nm, "subject", src, srclen, err, sizeof(err));
    if (t == NULL) {
        FUZZ_CHECK(strncmp(err, "subject: ", 9) == 0, "compile error \"%s\"", err);
        tpl_names_free(nm);
        free(copy);
        return 0;
    }
    size_t nnames = tpl_names_count(nm);
    FUZZ_CHECK(nnames <= TPL_MAX_NAMES, "%zu names", nnames);
    struct tpl_value *vals = calloc(nnames ? nnames : 1, sizeof(*vals));
    const char *p = nul ? (const char *)nul + 1 : NULL, *end = (const char *)data + size;
    for (size_t i = 0; i < nnames && p != NULL && p <= end; i++) {
        const char *e = memchr(p, 0, (size_t)(end - p));
        vals[i].p = p;
        vals[i].n = e ? (size_t)(e - p) : (size_t)(end - p);
        p = e ? e + 1 : NULL;
    }
    static const int modes[4] = {0, TPL_RENDER_HTML, TPL_RENDER_NOCTL, TPL_RENDER_HTML | TPL_RENDER_NOCTL};
    vbuf out, first;
    vbuf_init(&out, 256);
    vbuf_init(&first, 256);
    for (int m = 0; m < 4; m++) {
        int bad = -1;
        vbuf_reset(&out);
        int rc = tpl_mustache_render(t, vals, modes[m], SIZE_MAX, &out, &bad);
        if (!(modes[m] & TPL_RENDER_NOCTL)) {
            FUZZ_CHECK(rc == 0, "render without NOCTL returned %d", rc);
        } else if (rc != 0) {
            FUZZ_CHECK(rc == -EINVAL && bad >= 0 && (size_t)bad < nnames, "rc %d badvar %d", rc, bad);
            const struct tpl_value *v = &vals[bad];
            FUZZ_CHECK(v->p != NULL && (memchr(v->p, '\r', v->n) || memchr(v->p, '\n', v->n) || memchr(v->p, 0, v->n)),
                       "variable %d refused without CR, LF or NUL", bad);
        }
        if (m == 0)
            vbuf_append(&first, vbuf_data(&out), vbuf_len(&out));
    }
    /* with a byte limit: the same text when it fits, -EMSGSIZE (and never past the limit) when not */
    size_t max = vbuf_len(&first) / 2;
    vbuf_reset(&out);
    int rc = tpl_mustache_render(t, vals, 0, max, &out, NULL);
    FUZZ_CHECK(vbuf_len(&out) <= max, "%zu bytes rendered under a limit of %zu", vbuf_len(&out), max);
    FUZZ_CHECK(rc == (vbuf_len(&first) > max ? -EMSGSIZE : 0), "rc %d for %zu bytes under a limit of %zu", rc,
               vbuf_len(&first), max);
    if (tpl_mustache_is_const(t)) {
        /* the same template with no value at all renders the same text */
        vbuf_reset(&out);
        struct tpl_value *none = calloc(nnames ? nnames : 1, sizeof(*none));
        tpl_mustache_render(t, none, 0, SIZE_MAX, &out, NULL);
        FUZZ_CHECK(vbuf_len(&out) == vbuf_len(&first) && memcmp(vbuf_data(&out), vbuf_data(&first), vbuf_len(&out)) == 0,
                   "a constant template renders differently with other values");
        free(none);
    }
    vbuf_free(&out);
    vbuf_free(&first);
    free(vals);
    tpl_mustache_free(t);
    tpl_names_free(nm);
    free(copy);
    return 0;
}
