/*
 * NAME
 *   fuzz_campaign_ini - the CAMPAIGN.ini reader of `volley push` (cli/cmd_push.c)
 * DESCRIPTION
 *   The .ini is written by whoever prepares a campaign, often generated.
 *   Input: the file's bytes, written to CAMPAIGN.ini in a private folder
 *   that also holds body.txt (so `text_file = body.txt` has something to
 *   read). load_campaign is static in cmd_push.c, so this harness includes
 *   that file rather than widen its interface for a test; cmd_push_main
 *   stays unused. Then the fields are compiled as push does. Checked: an
 *   error is one line naming the file; a loaded campaign has at most
 *   PUSH_MAX_FIELDS fields, unique names and an id that is empty or
 *   valid; when the fields compile, header.* names are valid header names
 *   and default.* names valid variable names.
 */
#include "cli/cmd_push.c"

#include "tests/fuzz/fuzz.h"

static char dir[256], ini[300], body[300];

/* cleanup - the private folder goes when the process exits */
static void cleanup(void)
{
    unlink(ini);
    unlink(body);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/volley-fuzz-ini.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL)
        abort();
    snprintf(ini, sizeof(ini), "%s/CAMPAIGN.ini", dir);
    snprintf(body, sizeof(body), "%s/body.txt", dir);
    atexit(cleanup);
    FILE *f = fopen(body, "w");
    if (f == NULL)
        abort();
    fputs("Hello {{name}},\n\nthe body of the campaign.\n", f);
    fclose(f);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = fopen(ini, "w");
    if (f == NULL || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort();
    struct campaign c;
    char err[1024] = "";
    memset(&c, 0, sizeof(c));
    int rc = load_campaign(ini, &c, err, sizeof(err));
    if (rc < 0) {
        FUZZ_CHECK(strncmp(err, ini, strlen(ini)) == 0, "error \"%s\" does not name the file", err);
        FUZZ_CHECK(strchr(err, '\n') == NULL, "error of several lines \"%s\"", err);
    } else {
        FUZZ_CHECK(c.n >= 1 && c.n <= PUSH_MAX_FIELDS, "%zu fields", c.n);
        FUZZ_CHECK(c.id[0] == '\0' || q_campaign_id_valid(c.id, strlen(c.id)), "invalid id \"%s\"", c.id);
        for (size_t i = 0; i < c.n; i++) {
            const struct kv *kv = &c.f[i];
            FUZZ_CHECK(kv->k[kv->klen] == '\0' && kv->v[kv->vlen] == '\0', "unterminated field");
            for (size_t j = 0; j < i; j++)
                FUZZ_CHECK(kv->klen != c.f[j].klen || memcmp(kv->k, c.f[j].k, kv->klen) != 0, "field %s twice",
                           kv->k);
        }
        /* a header or default name push would write must be one the worker can use */
        struct tpl_message *m = tpl_message_compile(c.f, c.n, err, sizeof(err));
        for (size_t i = 0; m != NULL && i < c.n; i++) {
            const struct kv *kv = &c.f[i];
            if (kv->klen > 7 && memcmp(kv->k, "header.", 7) == 0)
                FUZZ_CHECK(header_name_ok(kv->k + 7), "bad header name \"%s\" compiled", kv->k);
            if (kv->klen > 8 && memcmp(kv->k, "default.", 8) == 0)
                FUZZ_CHECK(q_var_name_valid(kv->k + 8, kv->klen - 8), "bad variable name \"%s\" compiled", kv->k);
        }
        tpl_message_free(m);
    }
    campaign_free(&c);
    return 0;
}
