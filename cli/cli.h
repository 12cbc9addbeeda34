/*
 * NAME
 *   cli - option parsing shared by the subcommands
 * SYNOPSIS
 *   const char *conf;
 *   int rc = cli_config_opts(argc, argv, "suppress", usage, &conf);
 *   if (rc >= 0) return rc;   // --help printed (0) or a bad option (2)
 *   ... argv[optind ...] are the operands
 * DESCRIPTION
 *   For commands whose only options are -c/--config (default volley.conf)
 *   and -h/--help. Errors are one line naming the option.
 * THREADS
 *   Main thread only (getopt state is global).
 */
#ifndef VOLLEY_CLI_CLI_H
#define VOLLEY_CLI_CLI_H

#include <stdio.h>

#define CLI_DEFAULT_CONFIG "volley.conf"

/* cli_config_opts - -1 to go on with *conf set and optind at the first operand, else the exit status */
int cli_config_opts(int argc, char **argv, const char *cmd, void (*usage)(FILE *), const char **conf);

#endif
