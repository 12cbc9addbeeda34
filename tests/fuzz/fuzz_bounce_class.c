/*
 * NAME
 *   fuzz_bounce_class - the bounce classifier over hostile replies (lib/bounce_class.c)
 * DESCRIPTION
 *   A reply's text and enhanced code come from the receiving server, or
 *   from a DSN's Status and Diagnostic-Code that anyone can mail to
 *   `volley inbound`. Input: byte 0 picks the reply code (200-599), the
 *   bytes up to the first newline (at most 15) are the enhanced code, the
 *   rest is the text, passed with its length and no terminating NUL (so a
 *   read past text_len is caught by ASan). Checked: the class is a name of
 *   the table, the same input gives the same class, and a text longer
 *   than BOUNCE_TEXT_MAX is classified as its first BOUNCE_TEXT_MAX bytes.
 */
#include <string.h>

#include "lib/bounce_class.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    int code = 200 + data[0] % 400;
    data++;
    size--;
    const uint8_t *nl = memchr(data, '\n', size);
    size_t el = nl ? (size_t)(nl - data) : 0;
    char enhanced[16];
    if (el > 15)
        el = 15;
    memcpy(enhanced, data, el);
    enhanced[el] = '\0';
    size_t skip = nl ? (size_t)(nl - data) + 1 : 0;
    size_t tl = size - skip;
    char *text = malloc(tl ? tl : 1);
    memcpy(text, data + skip, tl);

    const char *cls = bounce_class(code, enhanced, text, tl);
    FUZZ_CHECK(cls != NULL && bounce_class_parse(cls, strlen(cls)) >= 0, "class %s", cls ? cls : "(null)");
    FUZZ_CHECK(strcmp(bounce_class(code, enhanced, text, tl), cls) == 0, "not deterministic");
    if (tl > BOUNCE_TEXT_MAX)
        FUZZ_CHECK(strcmp(bounce_class(code, enhanced, text, BOUNCE_TEXT_MAX), cls) == 0, "past the cap");
    free(text);
    return 0;
}
