/*
 * NAME
 *   fuzz_sink_proto - volley-sink's SMTP command parser and DATA decoder (bench/sink/proto.c)
 * DESCRIPTION
 *   volley-sink listens on a socket, so whatever connects may send it
 *   anything. Input: byte 0 picks the server's setup (bit 0: 421 after 3
 *   messages; bit 1: STARTTLS offered; bit 2: a 554 greeting; bit 3: a
 *   --max-size of 64), byte 1 the size of the reads the bytes arrive in
 *   (1..256), the rest is what the client sends. The worker's part is
 *   played here: read into c->in, sink_proto_input, "write" c->out, finish
 *   STARTTLS as if the handshake succeeded, stop once the session closes.
 *   Checked: every reply line is "DDD" + ' ' or '-' + text + CRLF within
 *   512 octets, with no CR or LF inside; the input buffer never holds more
 *   than SINK_CMD_MAX + one read (the parser's promise that a client
 *   cannot make it grow); a transaction holds at most SINK_MAX_RCPTS
 *   recipients. No --maildir: nothing is written to disk.
 */
#include <string.h>

#include "bench/sink/sink.h"
#include "tests/fuzz/fuzz.h"

/* the sink's configuration lives in its main.c, which is not linked here */
struct sink_config sink_cfg;

static struct sink_rule rcpt_rules[3], data_rules[1];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    rcpt_rules[0] = (struct sink_rule){.kind = SINK_RULE_REJECT, .pattern = "*@reject.test"};
    rcpt_rules[1] = (struct sink_rule){.kind = SINK_RULE_DEFER, .pattern = "*@defer.test"};
    if (sink_rule_parse(&rcpt_rules[2], "*@rate.test=421 4.7.28 rate limited") < 0 ||
        sink_rule_parse(&data_rules[0], "*@spam.test=554 5.7.1 looks like spam") < 0)
        abort();
    return 0;
}

/* check_replies - every queued line is a well-formed SMTP reply line */
static void check_replies(const vbuf *out)
{
    const char *p = vbuf_data(out);
    size_t n = vbuf_len(out);
    for (size_t start = 0; start < n;) {
        const char *lf = memchr(p + start, '\n', n - start);
        FUZZ_CHECK(lf != NULL, "reply without a line end");
        size_t len = (size_t)(lf - (p + start)) + 1;
        FUZZ_CHECK(len <= 512, "reply line of %zu octets", len);
        FUZZ_CHECK(len >= 6 && p[start + len - 2] == '\r', "reply line not ended by CRLF");
        FUZZ_CHECK(p[start] >= '2' && p[start] <= '5' && p[start + 1] >= '0' && p[start + 1] <= '9' &&
                       p[start + 2] >= '0' && p[start + 2] <= '9' && (p[start + 3] == ' ' || p[start + 3] == '-'),
                   "reply \"%.*s\"", (int)(len - 2), p + start);
        FUZZ_CHECK(memchr(p + start, '\r', len - 2) == NULL, "CR inside a reply line");
        start += len;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    unsigned setup = data[0];
    size_t chunk = (size_t)data[1] + 1;
    data += 2;
    size -= 2;

    memset(&sink_cfg, 0, sizeof(sink_cfg));
    sink_cfg.hostname = "sink.test";
    sink_cfg.max_size = setup & 8 ? 64 : SINK_DEFAULT_SIZE;
    sink_cfg.after421 = setup & 1 ? 3 : 0;
    sink_cfg.ssl_ctx = setup & 2 ? (SSL_CTX *)&sink_cfg : NULL; /* only tested for NULL by proto.c */
    sink_cfg.greeting_code = setup & 4 ? 554 : 220;
    snprintf(sink_cfg.greeting, sizeof(sink_cfg.greeting), "%d sink.test ESMTP", sink_cfg.greeting_code);
    memcpy(sink_cfg.rcpt_rules, rcpt_rules, sizeof(rcpt_rules));
    sink_cfg.nrcpt_rules = 3;
    memcpy(sink_cfg.data_rules, data_rules, sizeof(data_rules));
    sink_cfg.ndata_rules = 1;

    static struct sink_worker w;
    sink_stats_init(&w.stats);
    struct sink_conn c;
    memset(&c, 0, sizeof(c));
    c.w = &w;
    c.fd = -1;
    snprintf(c.ip, sizeof(c.ip), "127.0.0.1");
    vbuf_init(&c.in, 4096);
    vbuf_init(&c.out, 4096);
    sink_proto_greet(&c, 0);
    check_replies(&c.out);
    vbuf_reset(&c.out);

    for (size_t off = 0; off < size && !c.closing;) {
        size_t n = size - off < chunk ? size - off : chunk;
        vbuf_append(&c.in, data + off, n);
        off += n;
        FUZZ_CHECK(vbuf_len(&c.in) <= SINK_CMD_MAX + chunk, "input buffer holds %zu bytes", vbuf_len(&c.in));
        for (;;) {
            size_t before = vbuf_len(&c.in);
            sink_proto_input(&c);
            check_replies(&c.out);
            FUZZ_CHECK(c.nrcpt <= SINK_MAX_RCPTS, "%u recipients", c.nrcpt);
            vbuf_reset(&c.out); /* written to the client */
            if (c.tls_start) {
                c.tls_start = 0; /* the handshake succeeded */
                sink_proto_tls_done(&c);
            }
            if (c.closing || vbuf_len(&c.in) == 0 || vbuf_len(&c.in) == before)
                break;
        }
    }
    vbuf_free(&c.in);
    vbuf_free(&c.out);
    vbuf_free(&c.from);
    vbuf_free(&c.rcpts);
    vbuf_free(&c.first_rcpt);
    vbuf_free(&c.msg);
    sink_stats_free(&w.stats);
    return 0;
}
