/*
 * Private to lib/msg: HTML.pm's text style stack (html_style.c), used by html.c.
 */
#ifndef TAMIS_MSG_HTML_STYLE_H
#define TAMIS_MSG_HTML_STYLE_H

#include <stdbool.h>
#include <stddef.h>

#define TAMIS__STYLE_MAX 256 /* deeper nesting is not tracked (bounded memory) */

typedef struct {
    char tag[16];
    char fg[8], bg[8]; /* "#rrggbb", "invalid", or "transp" while parsing */
    int size;
    bool display_none, hidden;
} tamis__style_t;

typedef struct {
    tamis__style_t st[TAMIS__STYLE_MAX];
    size_t n;
    int basefont, max_size, min_size;
} tamis__styles_t;

void tamis__style_init(tamis__styles_t *s);
/* A start (num 1, atts NULL-terminated name/value pairs) or end (num -1) of a text-style tag. */
void tamis__style_tag(tamis__styles_t *s, const char *tag, const char *const *atts, int num);
/* html_font_invisible for the current style: 1 if text would be invisible. */
int tamis__style_invisible(const tamis__styles_t *s, bool *low_contrast, bool *invalid);
/* name_to_rgb: "#rrggbb" or "invalid". */
void tamis__name_to_rgb(const char *in, char out[8]);

#endif
