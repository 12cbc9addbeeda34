/*
 * NAME
 *   cmd - the subcommands of the volley binary
 * DESCRIPTION
 *   cli/main.c dispatches `volley <command> ...` to these. Each parses
 *   its own flags (every command has --help), prints a one-line error naming
 *   a bad flag or config value, and returns the process exit status:
 *   0 success, 1 runtime failure, 2 usage or configuration error.
 * THREADS
 *   Called once, from the main thread.
 */
#ifndef VOLLEY_CLI_CMD_H
#define VOLLEY_CLI_CMD_H

int cmd_worker_main(int argc, char **argv); /* cli/worker_cmd.c */
int cmd_push_main(int argc, char **argv);   /* cli/cmd_push.c */
int cmd_status_main(int argc, char **argv); /* cli/cmd_status.c */
int cmd_campaign_main(int argc, char **argv); /* cli/cmd_campaign.c */
int cmd_suppress_main(int argc, char **argv); /* cli/cmd_suppress.c */
int cmd_warmup_main(int argc, char **argv);   /* cli/cmd_warmup.c */
int cmd_check_main(int argc, char **argv);    /* cli/cmd_check.c */
int cmd_events_main(int argc, char **argv);   /* cli/cmd_events.c */
int cmd_inbound_main(int argc, char **argv);  /* cli/cmd_inbound.c */

#endif
