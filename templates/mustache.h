/*
 * NAME
 *   mustache - logic-less templates over a flat map of string variables
 * SYNOPSIS
 *   struct tpl_names *nm = tpl_names_new();
 *   struct tpl_mustache *t = tpl_mustache_compile(nm, "subject", src, len, err, sizeof err);
 *   struct tpl_value vals[TPL_MAX_NAMES];      // vals[i] = value of name i, .p == NULL when absent
 *   tpl_mustache_render(t, vals, TPL_RENDER_HTML, SIZE_MAX, &out, &bad);
 * DESCRIPTION
 *   Mustache (spec v1.x semantics) restricted to a flat map of strings:
 *   {{name}} (HTML-escaped when rendering with TPL_RENDER_HTML), {{{name}}}
 *   and {{& name}} (raw), {{#name}}..{{/name}} (shown when the variable is
 *   present and non-empty), {{^name}}..{{/name}} (shown when it is absent or
 *   empty), {{! comment }}, {{=<% %>=}} (set delimiters), with the spec's
 *   standalone-line whitespace rules. Names are plain keys: "a.b" is looked
 *   up as the key "a.b" and "." as the key ".". Partials are refused.
 *
 *   A template is compiled once into an op list; rendering walks the ops and
 *   appends straight into the output buffer (no allocation per variable).
 *   Variable names are interned in a tpl_names table shared by all the
 *   templates of one campaign, so the caller resolves each name once per
 *   message into an array of tpl_value indexed by name.
 *
 *   Compile errors read "<field>: line L, column C: <what>" (1-based; the
 *   column counts UTF-8 characters) and point at the offending tag.
 * OWNERSHIP
 *   A compiled template copies its source. It keeps a pointer to the names
 *   table, which must outlive it.
 * THREADS
 *   Compiling mutates the names table: one thread. Compiled templates are
 *   immutable: rendering from several threads at once is safe.
 */
#ifndef VOLLEY_TEMPLATES_MUSTACHE_H
#define VOLLEY_TEMPLATES_MUSTACHE_H

#include <stddef.h>

#include "lib/buf.h"

#define TPL_MAX_NAMES 256       /* distinct variable names per campaign */
#define TPL_NAME_MAX  128       /* bytes in a variable name */
#define TPL_SRC_MAX   (1 << 20) /* bytes in one template */
#define TPL_DEPTH_MAX 32        /* nested sections */

/* render flags */
#define TPL_RENDER_HTML  1 /* {{name}} escapes & < > " ' */
#define TPL_RENDER_NOCTL 2 /* refuse a value containing CR, LF or NUL (header context) */

struct tpl_names;
struct tpl_mustache;

/* a variable's value for one render: p == NULL means absent */
struct tpl_value {
    const char *p;
    size_t n;
};

struct tpl_names *tpl_names_new(void);
void tpl_names_free(struct tpl_names *nm);
/* tpl_names_intern - index of name (added when new), or -E2BIG past TPL_MAX_NAMES */
int tpl_names_intern(struct tpl_names *nm, const char *name, size_t len);
/* tpl_names_find - index of name or -ENOENT */
int tpl_names_find(const struct tpl_names *nm, const char *name, size_t len);
size_t tpl_names_count(const struct tpl_names *nm);
/* tpl_names_get - the name at index i (NUL-terminated), length in *len */
const char *tpl_names_get(const struct tpl_names *nm, size_t i, size_t *len);

/* tpl_mustache_compile - NULL with err "<field>: line L, column C: ..." on a syntax error */
struct tpl_mustache *tpl_mustache_compile(struct tpl_names *nm, const char *field, const char *src, size_t len,
                                          char *err, size_t errlen);
void tpl_mustache_free(struct tpl_mustache *t);
/* tpl_mustache_is_const - the template has no variable or section: it renders the same for everyone */
int tpl_mustache_is_const(const struct tpl_mustache *t);
/* tpl_mustache_uses - the template refers to name index i */
int tpl_mustache_uses(const struct tpl_mustache *t, size_t i);
/*
 * tpl_mustache_render - append the rendering to out, at most max bytes.
 * vals has one entry per name in the table. Returns 0; -EINVAL under
 * TPL_RENDER_NOCTL when a value holds CR, LF or NUL (*badvar is then that
 * name's index); -EMSGSIZE when the rendering would pass max bytes: it
 * stops there, before growing out for the piece that does not fit (an
 * escaped value is measured before room is made for it). On an error out
 * may hold a partial rendering: the caller truncates.
 */
int tpl_mustache_render(const struct tpl_mustache *t, const struct tpl_value *vals, int flags, size_t max, vbuf *out,
                        int *badvar);

#endif
