/*
 * NAME
 *   cli - option parsing shared by the subcommands
 */
#include "cli/cli.h"

#include <getopt.h>

int cli_config_opts(int argc, char **argv, const char *cmd, void (*usage)(FILE *), const char **conf)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int o;
    *conf = CLI_DEFAULT_CONFIG;
    opterr = 0;
    optind = 1;
    /* '+': stop at the first operand, so an address like -x@y is not taken for an option */
    while ((o = getopt_long(argc, argv, "+c:h", opts, NULL)) != -1) {
        switch (o) {
        case 'c':
            *conf = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            fprintf(stderr, "volley %s: bad or incomplete option '%s' (try volley %s --help)\n", cmd, argv[optind - 1],
                    cmd);
            return 2;
        }
    }
    return -1;
}
