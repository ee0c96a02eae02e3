/*
 * libFuzzer target for lib/msg: parses arbitrary bytes as a mail message and reads every accessor,
 * so that out-of-bounds reads in the model (not only in the parser) are caught by ASan.
 */
#include "tamis/msg.h"

#include <stdint.h>
#include <string.h>

static volatile size_t sink;

static void touch(tamis_slice_t s)
{
    for (size_t i = 0; i < s.len; i++)
        sink += (unsigned char)s.ptr[i];
}

static void touch_str(const char *s)
{
    if (s)
        sink += strlen(s);
}

static void touch_headers(const tamis_header_t *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        touch_str(h[i].name);
        touch_str(h[i].raw);
        touch_str(h[i].decoded);
        touch(h[i].pristine);
    }
}

static void touch_relays(const tamis_msg_t *m)
{
    for (size_t i = 0; i < tamis_msg_relay_count(m); i++) {
        const tamis_relay_t *r = tamis_msg_relay_at(m, i);
        touch_str(r->ip);
        touch_str(r->rdns);
        touch_str(r->helo);
        touch_str(r->by);
        touch_str(r->ident);
        touch_str(r->envfrom);
        touch_str(r->id);
        touch_str(r->auth);
        touch_str(r->with);
    }
}

static void touch_parts_uris(const tamis_msg_t *m)
{
    for (size_t i = 0; i < tamis_msg_part_count(m); i++) {
        const tamis_part_t *p = tamis_msg_part_at(m, i);
        touch_str(p->type);
        touch_str(p->charset);
        touch_str(p->filename);
        touch_str(p->encoding);
        touch_str(p->disposition);
        touch(p->decoded);
        touch_headers(p->headers, p->header_count);
    }
    for (size_t i = 0; i < tamis_msg_uri_count(m); i++) {
        const tamis_uri_t *u = tamis_msg_uri_at(m, i);
        touch_str(u->raw);
        touch_str(u->host);
        touch_str(u->domain);
        touch_str(u->anchor);
        touch_str(u->html_tag);
        for (size_t j = 0; j < u->variant_count; j++)
            touch_str(u->variants[j]);
    }
    for (size_t i = 0; i < tamis_msg_uri_string_count(m); i++)
        touch_str(tamis_msg_uri_string(m, i));
}

static void touch_stats(const tamis_msg_t *m)
{
    static const char *const names[] = {"html",   "image_area",        "obfuscation_ratio",
                                        "length", "mime_base64_count", "mime_qp_ratio",
                                        "nope"};
    double v;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        sink += tamis_msg_html_stat(m, names[i], &v);
        sink += tamis_msg_mime_stat(m, names[i], &v);
        sink += tamis_msg_parse_flag(m, names[i]);
    }
    sink += tamis_msg_html_tag_seen(m, "img") + (size_t)tamis_msg_html_tag_balance(m, "body");
    touch_str(tamis_msg_html_text(m, "title"));
    touch_str(tamis_msg_html_text(m, "comment"));
    touch_str(tamis_msg_html_text(m, "anchor"));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tamis_msg_limits_t lim;
    tamis_msg_limits_default(&lim);
    lim.max_message_bytes = 1 << 20;
    tamis_msg_t *m = NULL;
    if (tamis_msg_parse((const char *)data, size, &lim, &m, NULL, 0) != 0)
        return 0;
    touch(tamis_msg_pristine(m));
    touch(tamis_msg_pristine_headers(m));
    touch(tamis_msg_pristine_body(m));
    touch(tamis_msg_mbox_from(m));
    sink += tamis_msg_uses_crlf(m);
    for (size_t i = 0; i < tamis_msg_header_count(m); i++)
        touch_headers(tamis_msg_header_at(m, i), 1);
    sink += tamis_msg_header_first(m, "subject") != NULL;
    sink += tamis_msg_header_last(m, "received") != NULL;
    touch_relays(m);
    for (size_t i = 0; i < tamis_msg_body_line_count(m); i++)
        touch(tamis_msg_body_line(m, i));
    touch(tamis_msg_body_text(m));
    touch(tamis_msg_invisible_text(m));
    for (size_t i = 0; i < tamis_msg_rawbody_count(m); i++)
        touch(tamis_msg_rawbody_chunk(m, i));
    touch_parts_uris(m);
    touch_stats(m);
    tamis_msg_free(m);
    return 0;
}
