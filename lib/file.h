/*
 * NAME
 *   file - read a whole file into memory
 * SYNOPSIS
 *   char *text; size_t len;
 *   if (file_read("volley.conf", 0, &text, &len, err, sizeof err) < 0) -> err: "volley.conf: No such file..."
 *   ... free(text);
 * DESCRIPTION
 *   For the files volley reads whole and parses: volley.conf, CAMPAIGN.ini
 *   and the template files it names. The text is NUL-terminated (text[len]
 *   is writable, as lib/ini.h wants) and may hold NUL bytes of its own, so
 *   parsers work on (text, len). A directory is an error (EISDIR), not an
 *   empty file.
 * OWNERSHIP
 *   *text is malloc'd and the caller's to free (NULL on error).
 * THREADS
 *   Any thread.
 */
#ifndef VOLLEY_FILE_H
#define VOLLEY_FILE_H

#include <stddef.h>

/* file_read - 0, or -errno (-EFBIG past max bytes; max 0: no limit) with "PATH: reason" in err */
int file_read(const char *path, size_t max, char **text, size_t *len, char *err, size_t errlen);

#endif
