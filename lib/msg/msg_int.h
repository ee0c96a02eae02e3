/*
 * Private interface shared by the files of lib/msg. The message object (struct tamis_msg) is built
 * by msg.c in one pass: headers (msg.c), MIME walk and rendering (mime.c, charset.c, html.c),
 * Received chain (received.c), URIs (uri.c). Everything lives in the message's arena.
 */
#ifndef TAMIS_MSG_INT_H
#define TAMIS_MSG_INT_H

#include "tamis/msg.h"

#include <stdbool.h>
#include <stddef.h>

/* A growable array whose storage comes from the arena (old blocks are simply abandoned; growth
 * doubles, so the waste is bounded by the final size). */
typedef struct {
    void *v;
    size_t n, cap;
} tamis__vec_t;

/* Appends one zeroed element of esz bytes and returns it, or NULL on allocation failure. */
void *tamis__vec_push(tamis_arena_t *a, tamis__vec_t *v, size_t esz);

typedef struct {
    const char *name;
    double val;
} tamis__stat_t;

typedef struct {
    const char *name;
    long starts, ends;
} tamis__tag_t;

typedef struct {
    const char *area;
    const char *text; /* arena */
} tamis__area_t;

/* HTML results accumulated over all HTML parts (html.c). */
typedef struct {
    tamis__vec_t stats; /* tamis__stat_t */
    tamis__vec_t tags;  /* tamis__tag_t */
    tamis__vec_t areas; /* tamis__area_t */
} tamis__html_t;

struct tamis_msg {
    tamis_arena_t *arena;
    tamis_msg_limits_t lim;
    char *data; /* the arena copy of the input */
    size_t len;
    tamis_slice_t pristine, phead, pbody, mbox;
    bool crlf;

    tamis__vec_t headers; /* tamis_header_t */
    tamis__vec_t relays;  /* tamis_relay_t */
    tamis__vec_t lines;   /* tamis_slice_t */
    tamis__vec_t vlines;  /* tamis_slice_t: the visible-only lines (Bayes) */
    tamis_slice_t body_text, invisible;
    tamis__vec_t raw;         /* tamis_slice_t */
    tamis__vec_t parts;       /* tamis_part_t */
    tamis__vec_t uris;        /* tamis_uri_t */
    tamis__vec_t uri_strings; /* const char * */
    tamis__html_t html;
    tamis__vec_t mime_stats; /* tamis__stat_t */
    tamis__vec_t flags;      /* const char * */
    size_t decoded_total;    /* transfer-decoded bytes kept so far */
    int oom;                 /* first allocation failure seen (TAMIS_ENOMEM) */
    void *uri_index;         /* uri.c's lookup tables (freed by an arena cleanup) */
};

/* ---- msg.c ---- */
/* Builds a header entry from a name and the bytes after the colon (value may start with blanks and
 * end with an EOL; folding kept). pristine is the whole field. Returns 0 or TAMIS_ENOMEM. */
int tamis__header_make(tamis_msg_t *m, tamis_header_t *h, const char *name, size_t nlen,
                       const char *value, size_t vlen, tamis_slice_t pristine);
void tamis__set_flag(tamis_msg_t *m, const char *name);
void tamis__stat_add(tamis_arena_t *a, tamis__vec_t *v, const char *name, double delta);
void tamis__stat_set(tamis_arena_t *a, tamis__vec_t *v, const char *name, double val);
double tamis__stat_get(const tamis__vec_t *v, const char *name, bool *found);

/* ---- charset.c ---- */
/* SpamAssassin's Node::_normalize: bytes in a declared charset → UTF-8. insist = decode with the
 * declared charset only (RFC 2047 words). Result is arena memory, NUL-terminated. */
char *tamis__normalize(tamis_arena_t *a, const char *in, size_t len, const char *charset,
                       bool insist, size_t *outlen);
/* 7-bit text in this charset is kept as bytes by SpamAssassin (not decoded to characters). */
bool tamis__charset_passthrough(const char *cs);
/* Strict UTF-8 validation as Perl's Encode does it (no surrogates, <= U+10FFFF). */
bool tamis__utf8_valid(const char *s, size_t n);
/* RFC 2047 header decoding as SpamAssassin's Node::_decode_header (input already unfolded). */
char *tamis__decode_header(tamis_arena_t *a, const char *name, const char *v, size_t n);
/* Transfer decodings as Util::qp_decode / Util::base64_decode. Output to buf. */
void tamis__qp_decode(const char *in, size_t n, tamis_buf_t *out);
void tamis__b64_decode(const char *in, size_t n, tamis_buf_t *out);

/* ---- mime.c ---- */
/* Walks the MIME tree (GMime), fills parts, rawbody chunks, body lines, MIME stats. */
int tamis__mime_walk(tamis_msg_t *m);

/* ---- mimestats.c ---- */
typedef struct {
    const char *type;
    size_t bytes;
    bool has_bytes; /* not an attachment */
} tamis__mime_leaf_t;

typedef struct {
    size_t qp_bytes, normal_chars, unicode_chars;
    long qp_count;
    tamis__vec_t leaves; /* tamis__mime_leaf_t */
} tamis__mime_acc_t;

void tamis__mime_stats_init(tamis_msg_t *m);
void tamis__mime_stats_node(tamis_msg_t *m, const tamis_part_t *p);
void tamis__mime_stats_leaf(tamis_msg_t *m, tamis__mime_acc_t *acc, const tamis_part_t *p,
                            const char *raw, size_t n);
void tamis__mime_stats_finish(tamis_msg_t *m, tamis__mime_acc_t *acc);

/* ---- html.c ---- */
/* Renders an HTML part (UTF-8 input) into text (all of it, as rules see it), invisible (the
 * pieces judged invisible) and visible (the others; may be NULL), records statistics in m->html
 * and URIs (with anchor text) through tamis__uri_add_html. */
int tamis__html_render(tamis_msg_t *m, const char *html, size_t len, tamis_buf_t *text,
                       tamis_buf_t *invisible, tamis_buf_t *visible);

/* ---- received.c ---- */
int tamis__received_parse(tamis_msg_t *m);

/* ---- uri.c ---- */
/* Adds a URI found in an HTML attribute (tag lower-case, anchor may be NULL). */
void tamis__uri_add_html(tamis_msg_t *m, const char *raw, size_t len, const char *tag,
                         const char *anchor);
/* Scans the rendered body lines for URIs, then builds the variant list. */
int tamis__uri_finish(tamis_msg_t *m);

#endif
