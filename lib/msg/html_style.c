/*
 * The text style stack of SpamAssassin's HTML.pm (text_style, close_tag, close_table_tag,
 * name_to_rgb, html_font_invisible): font colours, background colours from CSS, sizes, display
 * and visibility, so that rendered text can be classified as invisible the way SpamAssassin does
 * (which also decides some of its whitespace trimming and the font_* HTML tests).
 */
#include "html_style.h"

#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct {
    const char *name;
    unsigned rgb;
} color_t;

/* HTML.pm's %html_color, sorted by name for bsearch. */
static const color_t colors[] = {
    {"aliceblue", 0xf0f8ff},
    {"antiquewhite", 0xfaebd7},
    {"aqua", 0x00ffff},
    {"aquamarine", 0x7fffd4},
    {"azure", 0xf0ffff},
    {"beige", 0xf5f5dc},
    {"bisque", 0xffe4c4},
    {"black", 0x000000},
    {"blanchedalmond", 0xffebcd},
    {"blue", 0x0000ff},
    {"blueviolet", 0x8a2be2},
    {"brown", 0xa52a2a},
    {"burlywood", 0xdeb887},
    {"cadetblue", 0x5f9ea0},
    {"chartreuse", 0x7fff00},
    {"chocolate", 0xd2691e},
    {"coral", 0xff7f50},
    {"cornflowerblue", 0x6495ed},
    {"cornsilk", 0xfff8dc},
    {"crimson", 0xdc143c},
    {"cyan", 0x00ffff},
    {"darkblue", 0x00008b},
    {"darkcyan", 0x008b8b},
    {"darkgoldenrod", 0xb8860b},
    {"darkgray", 0xa9a9a9},
    {"darkgreen", 0x006400},
    {"darkgrey", 0xa9a9a9},
    {"darkkhaki", 0xbdb76b},
    {"darkmagenta", 0x8b008b},
    {"darkolivegreen", 0x556b2f},
    {"darkorange", 0xff8c00},
    {"darkorchid", 0x9932cc},
    {"darkred", 0x8b0000},
    {"darksalmon", 0xe9967a},
    {"darkseagreen", 0x8fbc8f},
    {"darkslateblue", 0x483d8b},
    {"darkslategray", 0x2f4f4f},
    {"darkslategrey", 0x2f4f4f},
    {"darkturquoise", 0x00ced1},
    {"darkviolet", 0x9400d3},
    {"deeppink", 0xff1493},
    {"deepskyblue", 0x00bfff},
    {"dimgray", 0x696969},
    {"dimgrey", 0x696969},
    {"dodgerblue", 0x1e90ff},
    {"firebrick", 0xb22222},
    {"floralwhite", 0xfffaf0},
    {"forestgreen", 0x228b22},
    {"fuchsia", 0xff00ff},
    {"gainsboro", 0xdcdcdc},
    {"ghostwhite", 0xf8f8ff},
    {"gold", 0xffd700},
    {"goldenrod", 0xdaa520},
    {"gray", 0x808080},
    {"green", 0x008000},
    {"greenyellow", 0xadff2f},
    {"grey", 0x808080},
    {"honeydew", 0xf0fff0},
    {"hotpink", 0xff69b4},
    {"indianred", 0xcd5c5c},
    {"indigo", 0x4b0082},
    {"ivory", 0xfffff0},
    {"khaki", 0xf0e68c},
    {"lavender", 0xe6e6fa},
    {"lavenderblush", 0xfff0f5},
    {"lawngreen", 0x7cfc00},
    {"lemonchiffon", 0xfffacd},
    {"lightblue", 0xadd8e6},
    {"lightcoral", 0xf08080},
    {"lightcyan", 0xe0ffff},
    {"lightgoldenrodyellow", 0xfafad2},
    {"lightgray", 0xd3d3d3},
    {"lightgreen", 0x90ee90},
    {"lightgrey", 0xd3d3d3},
    {"lightpink", 0xffb6c1},
    {"lightsalmon", 0xffa07a},
    {"lightseagreen", 0x20b2aa},
    {"lightskyblue", 0x87cefa},
    {"lightslategray", 0x778899},
    {"lightslategrey", 0x778899},
    {"lightsteelblue", 0xb0c4de},
    {"lightyellow", 0xffffe0},
    {"lime", 0x00ff00},
    {"limegreen", 0x32cd32},
    {"linen", 0xfaf0e6},
    {"magenta", 0xff00ff},
    {"maroon", 0x800000},
    {"mediumaquamarine", 0x66cdaa},
    {"mediumblue", 0x0000cd},
    {"mediumorchid", 0xba55d3},
    {"mediumpurple", 0x9370db},
    {"mediumseagreen", 0x3cb371},
    {"mediumslateblue", 0x7b68ee},
    {"mediumspringgreen", 0x00fa9a},
    {"mediumturquoise", 0x48d1cc},
    {"mediumvioletred", 0xc71585},
    {"midnightblue", 0x191970},
    {"mintcream", 0xf5fffa},
    {"mistyrose", 0xffe4e1},
    {"moccasin", 0xffe4b5},
    {"navajowhite", 0xffdead},
    {"navy", 0x000080},
    {"oldlace", 0xfdf5e6},
    {"olive", 0x808000},
    {"olivedrab", 0x6b8e23},
    {"orange", 0xffa500},
    {"orangered", 0xff4500},
    {"orchid", 0xda70d6},
    {"palegoldenrod", 0xeee8aa},
    {"palegreen", 0x98fb98},
    {"paleturquoise", 0xafeeee},
    {"palevioletred", 0xdb7093},
    {"papayawhip", 0xffefd5},
    {"peachpuff", 0xffdab9},
    {"peru", 0xcd853f},
    {"pink", 0xffc0cb},
    {"plum", 0xdda0dd},
    {"powderblue", 0xb0e0e6},
    {"purple", 0x800080},
    {"red", 0xff0000},
    {"rosybrown", 0xbc8f8f},
    {"royalblue", 0x4169e1},
    {"saddlebrown", 0x8b4513},
    {"salmon", 0xfa8072},
    {"sandybrown", 0xf4a460},
    {"seagreen", 0x2e8b57},
    {"seashell", 0xfff5ee},
    {"sienna", 0xa0522d},
    {"silver", 0xc0c0c0},
    {"skyblue", 0x87ceeb},
    {"slateblue", 0x6a5acd},
    {"slategray", 0x708090},
    {"slategrey", 0x708090},
    {"snow", 0xfffafa},
    {"springgreen", 0x00ff7f},
    {"steelblue", 0x4682b4},
    {"tan", 0xd2b48c},
    {"teal", 0x008080},
    {"thistle", 0xd8bfd8},
    {"tomato", 0xff6347},
    {"turquoise", 0x40e0d0},
    {"violet", 0xee82ee},
    {"wheat", 0xf5deb3},
    {"white", 0xffffff},
    {"whitesmoke", 0xf5f5f5},
    {"yellow", 0xffff00},
    {"yellowgreen", 0x9acd32},
};

static int color_cmp(const void *k, const void *e)
{
    return strcmp(k, ((const color_t *)e)->name);
}

static int dec2hex_clamp(long v)
{
    return v < 0 ? 0 : v > 255 ? 255 : (int)v;
}

/* name_to_rgb: "#rrggbb" or "invalid". */
void tamis__name_to_rgb(const char *in, char out[8])
{
    char c[64];
    while (g_ascii_isspace(*in))
        in++;
    size_t n = strlen(in);
    while (n && g_ascii_isspace(in[n - 1]))
        n--;
    if (n >= sizeof(c))
        n = sizeof(c) - 1;
    for (size_t i = 0; i < n; i++)
        c[i] = g_ascii_tolower(in[i]);
    c[n] = '\0';
    const color_t *hit =
        bsearch(c, colors, sizeof(colors) / sizeof(colors[0]), sizeof(colors[0]), color_cmp);
    if (hit) {
        snprintf(out, 8, "#%06x", hit->rgb);
        return;
    }
    int r, g, b;
    if (sscanf(c, "rgb(%d%%, %d%%, %d%%)", &r, &g, &b) == 3) {
        snprintf(out, 8, "#%02x%02x%02x", dec2hex_clamp(r * 255 / 100),
                 dec2hex_clamp(g * 255 / 100), dec2hex_clamp(b * 255 / 100));
        return;
    }
    if (sscanf(c, "rgb(%d, %d, %d)", &r, &g, &b) == 3) {
        snprintf(out, 8, "#%02x%02x%02x", dec2hex_clamp(r), dec2hex_clamp(g), dec2hex_clamp(b));
        return;
    }
    if (c[0] != '#') {
        strcpy(out, "invalid");
        return;
    }
    char h[8];
    size_t k = 0;
    for (size_t i = 1; c[i] && k < 6; i++)
        if (g_ascii_isxdigit(c[i]))
            h[k++] = c[i];
    for (size_t i = 1; c[i]; i++)
        if (!g_ascii_isxdigit(c[i]) && !strchr("#", c[i])) {
            strcpy(out, "invalid");
            return;
        }
    if (k > 3 && k < 6)
        k = 3;
    while (k % 3)
        h[k++] = '0';
    h[k] = '\0';
    if (k == 3)
        snprintf(out, 8, "#%c%c%c%c%c%c", h[0], h[0], h[1], h[1], h[2], h[2]);
    else if (k == 6)
        snprintf(out, 8, "#%.6s", h);
    else
        strcpy(out, "#");
}

void tamis__style_init(tamis__styles_t *s)
{
    memset(s, 0, sizeof(*s));
    s->n = 1;
    strcpy(s->st[0].tag, "default");
    strcpy(s->st[0].fg, "#000000");
    strcpy(s->st[0].bg, "#ffffff");
    s->st[0].size = 3;
    s->basefont = 3;
    s->max_size = s->min_size = 3;
}

static bool stack_has(const tamis__styles_t *s, const char *tag)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->st[i].tag, tag))
            return true;
    return false;
}

static void close_table_tag(tamis__styles_t *s, const char *tag)
{
    if (!stack_has(s, tag))
        return;
    while (s->n > 0) {
        const char *top = s->st[s->n - 1].tag;
        bool td = !strcmp(tag, "td") && (!strcmp(top, "font") || !strcmp(top, "td"));
        bool tr = !strcmp(tag, "tr") &&
                  (!strcmp(top, "font") || !strcmp(top, "td") || !strcmp(top, "tr"));
        if (!td && !tr)
            break;
        s->n--;
    }
}

static void close_tag(tamis__styles_t *s, const char *tag)
{
    if (!stack_has(s, tag))
        return;
    while (s->n > 0) {
        s->n--;
        if (!strcmp(s->st[s->n].tag, tag))
            break;
    }
}

static bool ok_attr(const char *tag, const char *name)
{
    static const char *const ok[][7] = {
        {"basefont", "color", "face", "size", NULL},
        {"body", "text", "bgcolor", "link", "alink", "vlink", "background"},
        {"font", "color", "face", "size", NULL},
        {"marquee", "bgcolor", "background", NULL},
        {"table", "bgcolor", "style", NULL},
        {"td", "bgcolor", "style", NULL},
        {"th", "bgcolor", "style", NULL},
        {"tr", "bgcolor", "style", NULL},
        {"span", "style", NULL},
        {"p", "style", NULL},
        {"div", "style", NULL},
        {"a", "style", NULL},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        if (strcmp(ok[i][0], tag))
            continue;
        for (size_t j = 1; j < 7 && ok[i][j]; j++)
            if (!strcmp(ok[i][j], name))
                return true;
    }
    return false;
}

static void css_color(tamis__style_t *nw, bool bgp, char *v)
{
    char *imp = strstr(v, "!");
    if (imp && !strncmp(imp + 1 + strspn(imp + 1, " \t"), "important", 9)) {
        *imp = '\0';
        size_t l = strlen(v);
        while (l && g_ascii_isspace(v[l - 1]))
            v[--l] = '\0';
    }
    char *dst = bgp ? nw->bg : nw->fg;
    if (strstr(v, "rgb")) {
        long rgb[3] = {0, 0, 0};
        int k = 0;
        char digits[64];
        size_t d = 0;
        for (char *p = v; *p && d < sizeof(digits) - 1; p++)
            if (g_ascii_isdigit(*p) || *p == ',')
                digits[d++] = *p;
        digits[d] = '\0';
        for (char *save = NULL, *t = strtok_r(digits, ",", &save); t && k < 3;
             t = strtok_r(NULL, ",", &save))
            rgb[k++] = atol(t);
        snprintf(dst, 8, "#%02x%02x%02x", dec2hex_clamp(rgb[0]), dec2hex_clamp(rgb[1]),
                 dec2hex_clamp(rgb[2]));
    } else if (!strcmp(v, "inherit")) {
        /* keep */
    } else if (!strcmp(v, "transparent")) {
        strcpy(dst, "transp");
    } else {
        tamis__name_to_rgb(v, dst);
    }
}

/* background: shorthand: the first token of the last layer that is a colour. */
static void css_background(tamis__style_t *nw, const char *v)
{
    const char *layer = strrchr(v, ',');
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", layer ? layer + 1 : v);
    for (char *c = buf; *c; c++)
        *c = g_ascii_tolower(*c);
    for (char *save = NULL, *t = strtok_r(buf, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
        char col[8];
        tamis__name_to_rgb(t, col);
        if (strcmp(col, "invalid")) {
            memcpy(nw->bg, col, 8);
            return;
        }
    }
}

static void parse_style(tamis__style_t *nw, const tamis__style_t *parent, const char *style)
{
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", style);
    for (char *save = NULL, *part = strtok_r(buf, ";", &save); part;
         part = strtok_r(NULL, ";", &save)) {
        while (g_ascii_isspace(*part))
            part++;
        char *colon = strchr(part, ':');
        if (!colon)
            continue;
        char *val = colon + 1;
        while (g_ascii_isspace(*val))
            val++;
        size_t vl = strlen(val);
        while (vl && g_ascii_isspace(val[vl - 1]))
            val[--vl] = '\0';
        size_t kl = (size_t)(colon - part);
        while (kl && g_ascii_isspace(part[kl - 1]))
            kl--;
        for (char *c = val; *c; c++)
            *c = g_ascii_tolower(*c);
        if (kl == 5 && !strncasecmp(part, "color", 5))
            css_color(nw, false, val);
        else if (kl == 16 && !strncasecmp(part, "background-color", 16))
            css_color(nw, true, val);
        else if (kl == 10 && !strncmp(part, "background", 10))
            css_background(nw, val);
        else if (kl == 7 && !strncmp(part, "display", 7))
            nw->display_none = !strcmp(val, "none");
        else if (kl == 10 && !strncmp(part, "visibility", 10))
            nw->hidden = !strcmp(val, "hidden");
    }
    if (!strcmp(nw->bg, "transp"))
        memcpy(nw->bg, parent->bg, 8);
    if (!strcmp(nw->fg, "transp"))
        memcpy(nw->fg, nw->bg, 8);
}

static void apply_attr(tamis__styles_t *s, tamis__style_t *nw, const char *name, const char *v)
{
    if (!strcmp(name, "text") || !strcmp(name, "color")) {
        tamis__name_to_rgb(v, nw->fg);
    } else if (!strcmp(name, "size")) {
        const char *p = v;
        while (g_ascii_isspace(*p))
            p++;
        if ((*p == '+' || *p == '-') && g_ascii_isdigit(p[1]))
            nw->size = s->basefont + atoi(p);
        else if (g_ascii_isdigit(*p))
            nw->size = atoi(p);
    } else if (!strcmp(name, "style")) {
        parse_style(nw, &s->st[s->n - 1], v);
    }
    /* bgcolor: HTML.pm converts the attribute but never stores it in the style */
    if (nw->size > s->max_size)
        s->max_size = nw->size;
    else if (nw->size < s->min_size)
        s->min_size = nw->size;
}

void tamis__style_tag(tamis__styles_t *s, const char *tag, const char *const *atts, int num)
{
    if (!strcmp(tag, "th"))
        tag = "td";
    if (num < 0) {
        if (strcmp(tag, "body"))
            close_tag(s, tag);
        return;
    }
    if (!strcmp(tag, "basefont")) {
        for (int i = 0; atts && atts[i]; i += 2)
            if (!strcasecmp(atts[i], "size") && atts[i + 1]) {
                const char *p = atts[i + 1];
                while (g_ascii_isspace(*p))
                    p++;
                if (g_ascii_isdigit(*p)) {
                    s->basefont = atoi(p);
                    return;
                }
            }
    }
    if (!strcmp(tag, "td") || !strcmp(tag, "tr"))
        close_table_tag(s, tag);
    if (s->n == 0 || s->n >= TAMIS__STYLE_MAX)
        return;
    tamis__style_t nw = s->st[s->n - 1];
    snprintf(nw.tag, sizeof(nw.tag), "%s", tag);
    if (!strcmp(tag, "big"))
        nw.size += 1;
    else if (!strcmp(tag, "small"))
        nw.size -= 1;
    else
        for (int i = 0; atts && atts[i]; i += 2)
            if (ok_attr(tag, atts[i]))
                apply_attr(s, &nw, atts[i], atts[i + 1] ? atts[i + 1] : "");
    s->st[s->n++] = nw;
}

static bool hex_rgb(const char *c, int *r, int *g, int *b)
{
    const char *p = c[0] == '#' ? c + 1 : c;
    if (strlen(p) != 6 || strspn(p, "0123456789abcdef") != 6)
        return false;
    unsigned v = (unsigned)strtoul(p, NULL, 16);
    *r = (int)(v >> 16);
    *g = (int)((v >> 8) & 255);
    *b = (int)(v & 255);
    return true;
}

int tamis__style_invisible(const tamis__styles_t *s, bool *low_contrast, bool *invalid)
{
    if (s->n == 0)
        return 0;
    const tamis__style_t *t = &s->st[s->n - 1];
    size_t fl = strlen(t->fg), bl = strlen(t->bg);
    const char *f6 = fl > 6 ? t->fg + fl - 6 : t->fg, *b6 = bl > 6 ? t->bg + bl - 6 : t->bg;
    if (!strcmp(f6, b6)) {
        *low_contrast = true;
        return 1;
    }
    int r1, g1, b1, r2, g2, b2;
    if (hex_rgb(t->fg, &r1, &g1, &b1) && hex_rgb(t->bg, &r2, &g2, &b2)) {
        double dr = 0.2126 * (r1 - r2), dg = 0.7152 * (g1 - g2), db = 0.0722 * (b1 - b2);
        if (dr * dr + dg * dg + db * db < 144.0) {
            *low_contrast = true;
            return 1;
        }
    }
    if (!strcmp(t->fg, "invalid") || !strcmp(t->bg, "invalid")) {
        *invalid = true;
        return 1;
    }
    return t->size <= 1 || t->display_none || t->hidden;
}
