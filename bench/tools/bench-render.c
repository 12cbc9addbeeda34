/*
 * NAME
 *   bench-render - single-thread throughput of template rendering + MIME assembly
 * SYNOPSIS
 *   build/tools/bench-render [-n MESSAGES]
 * DESCRIPTION
 *   Compiles a campaign of about 2 KB (text and HTML parts, a personalised
 *   subject and display name, List-Unsubscribe, Feedback-ID, an extra
 *   header) using 5 variables, then renders N messages on one thread, each
 *   with different variable values (a mix of ASCII and UTF-8), reusing one
 *   output buffer the way a worker does. Prints the timing, then the last
 *   line "render_msgs_per_sec=NNN" for scripts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/buf.h"
#include "lib/clock.h"
#include "lib/kv.h"
#include "templates/message.h"

#define KV(a, b)                                                                                                       \
    {                                                                                                                  \
        a, sizeof(a) - 1, b, sizeof(b) - 1                                                                             \
    }

static const char text_tpl[] = "Hello {{first_name}},\n"
                               "\n"
                               "Spring is here and so is our biggest sale of the season. As a valued member of\n"
                               "our community since {{member_since}} you get early access to every deal, before\n"
                               "anyone else. Use the code {{code}} at checkout for an extra 15% off everything\n"
                               "in the garden, kitchen and outdoor departments.\n"
                               "\n"
                               "{{#city}}We have also opened a new store near you in {{city}}: come and say hello,\n"
                               "the coffee is on us during the opening week.\n{{/city}}"
                               "\n"
                               "Top picks this week:\n"
                               " - Cedar raised garden bed, 120 x 60 cm ......................... 89.00 EUR\n"
                               " - Cast iron skillet, pre-seasoned, 28 cm ......................... 34.50 EUR\n"
                               " - Solar string lights, 50 bulbs, warm white ...................... 19.99 EUR\n"
                               "\n"
                               "See all offers: https://shop.example/spring?u={{token}}\n"
                               "\n"
                               "Happy shopping,\n"
                               "The Shop team\n"
                               "\n"
                               "You receive this because you subscribed at shop.example. Unsubscribe:\n"
                               "https://shop.example/unsubscribe/{{token}}\n";

static const char html_tpl[] =
    "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Spring sale</title></head>\n"
    "<body style=\"font-family: Arial, sans-serif; color: #222; max-width: 600px; margin: auto\">\n"
    "<h1 style=\"color: #2a7\">Hello {{first_name}},</h1>\n"
    "<p>Spring is here and so is our biggest sale of the season. As a valued member since\n"
    "<b>{{member_since}}</b> you get early access to every deal. Use the code <code>{{code}}</code>\n"
    "at checkout for an extra 15% off everything in the garden, kitchen and outdoor departments.</p>\n"
    "{{#city}}<p>We have opened a new store in <b>{{city}}</b>: the coffee is on us.</p>{{/city}}\n"
    "<table style=\"width: 100%; border-collapse: collapse\">\n"
    "<tr><td>Cedar raised garden bed, 120 x 60 cm</td><td align=\"right\">89.00 EUR</td></tr>\n"
    "<tr><td>Cast iron skillet, pre-seasoned, 28 cm</td><td align=\"right\">34.50 EUR</td></tr>\n"
    "<tr><td>Solar string lights, 50 bulbs</td><td align=\"right\">19.99 EUR</td></tr>\n"
    "</table>\n"
    "<p><a href=\"https://shop.example/spring?u={{token}}\" style=\"color: #2a7\">See all offers</a></p>\n"
    "<p style=\"font-size: 11px; color: #888\">You receive this because you subscribed at shop.example.\n"
    "<a href=\"https://shop.example/unsubscribe/{{token}}\">Unsubscribe</a></p>\n"
    "</body></html>\n";

int main(int argc, char **argv)
{
    long n = 300000;
    if (argc == 3 && strcmp(argv[1], "-n") == 0)
        n = strtol(argv[2], NULL, 10);
    if (n <= 0) {
        fprintf(stderr, "usage: bench-render [-n MESSAGES]\n");
        return 2;
    }
    struct kv fields[] = {
        KV("from", "\"{{first_name}} at Shop\" <news@shop.example>"),
        KV("subject", "{{first_name}}, your spring code {{code}} is inside"),
        {"text", 4, text_tpl, sizeof text_tpl - 1},
        {"html", 4, html_tpl, sizeof html_tpl - 1},
        KV("list_unsubscribe", "https://shop.example/unsubscribe/{{token}}"),
        KV("feedback_id", "spring24:newsletter:shop"),
        KV("header.X-Campaign", "spring24"),
        KV("default.city", ""),
        KV("created_ms", "1700000000000"),
    };
    char err[256];
    struct tpl_message *m = tpl_message_compile(fields, sizeof fields / sizeof *fields, err, sizeof err);
    if (!m) {
        fprintf(stderr, "compile: %s\n", err);
        return 1;
    }
    static const char *names[] = {"Ann", "Łucja", "Bob", "Zoë", "王小明", "Christopher", "Agnieszka", "Olu"};
    static const char *cities[] = {"", "Kraków", "Lyon", "", "Osaka"};
    char token[32], code[16], since[8], to[64], uniq[32];
    vbuf out;
    vbuf_init(&out, 16384);
    size_t bytes = 0;
    uint64_t t0 = clock_mono_us();
    for (long i = 0; i < n; i++) {
        const char *first = names[i % 8], *city = cities[i % 5];
        int tl = snprintf(token, sizeof token, "%016lx", (unsigned long)(i * 2654435761u));
        int cl = snprintf(code, sizeof code, "SPR%05ld", i % 100000);
        int sl = snprintf(since, sizeof since, "%ld", 2010 + i % 14);
        int rl = snprintf(to, sizeof to, "user%ld@example.net", i);
        int ul = snprintf(uniq, sizeof uniq, "1700000000000-%ld", i);
        struct kv vars[] = {
            {"first_name", 10, first, strlen(first)}, {"token", 5, token, (size_t)tl}, {"code", 4, code, (size_t)cl},
            {"member_since", 12, since, (size_t)sl},  {"city", 4, city, strlen(city)},
        };
        struct tpl_render_ctx rc = {.to = to,
                                    .tolen = (size_t)rl,
                                    .vars = vars,
                                    .nvars = 5,
                                    .uniq = uniq,
                                    .uniqlen = (size_t)ul,
                                    .now = 1700000000 + i / 100000};
        vbuf_reset(&out);
        if (tpl_message_render(m, &rc, &out, err, sizeof err) < 0) {
            fprintf(stderr, "render: %s\n", err);
            return 1;
        }
        bytes += vbuf_len(&out);
    }
    uint64_t us = clock_mono_us() - t0;
    double secs = (double)us / 1e6;
    printf("template: %zu bytes (text %zu + html %zu), 5 variables\n", sizeof text_tpl + sizeof html_tpl - 2,
           sizeof text_tpl - 1, sizeof html_tpl - 1);
    printf("rendered %ld messages in %.3f s, average message %zu bytes, %.1f MB/s\n", n, secs, bytes / (size_t)n,
           (double)bytes / secs / 1e6);
    printf("render_msgs_per_sec=%.0f\n", (double)n / secs);
    vbuf_free(&out);
    tpl_message_free(m);
    return 0;
}
