/*
 * NAME
 *   feedback_view - complaint rates and bounce-class rows for the CLI
 */
#include "cli/feedback_view.h"

void feedback_rate(char *b, size_t n, long long complained, long long delivered)
{
    double r = q_complaint_rate(complained, delivered);
    if (r < 0)
        snprintf(b, n, "-");
    else if (r >= Q_COMPLAINT_LIMIT)
        snprintf(b, n, "%.2f%% OVER %.2f%%", 100.0 * r, 100.0 * Q_COMPLAINT_LIMIT);
    else
        snprintf(b, n, "%.2f%%", 100.0 * r);
}

int feedback_print_classes(FILE *f, const char *indent, const char *id, int idw, const struct q_feedback *fb)
{
    int rows = 0;
    for (int st = 0; st < 2; st++) {
        const long long *v = st == 0 ? fb->bounced : fb->deferred;
        for (int c = 0; c < BOUNCE_CLASS_COUNT; c++) {
            if (v[c] == 0)
                continue;
            if (id != NULL)
                fprintf(f, "%s%-*s ", indent, idw, id);
            else
                fputs(indent, f);
            fprintf(f, "%-9s %-17s %10lld\n", st == 0 ? "bounced" : "deferred", bounce_class_name(c), v[c]);
            rows++;
        }
    }
    return rows;
}
