/*
 * msg: a read-only model of one mail message, built with GMime from any input, however malformed.
 *
 * What it offers is what the rule engine and Bayes need, in the forms SpamAssassin presents them
 * (spec-rules.md §3-§4):
 *   - the pristine bytes, the header fields (raw and RFC 2047-decoded to UTF-8),
 *   - the parsed Received chain (no trust decisions: those need configuration and live in rules),
 *   - the rendered body lines (Subject first, paragraphs joined, HTML rendered to text),
 *   - the rawbody chunks (decoded, unrendered text parts), the MIME parts with their own headers,
 *   - the URI list (every canonical variant) and per-URI details (host, domain, anchor text),
 *   - HTML statistics and MIME/parser flags, looked up by name for the eval functions.
 *
 * Ownership: tamis_msg_parse() returns a message the caller frees with tamis_msg_free(). Every
 * pointer and slice returned by an accessor belongs to the message and lives until that call.
 * Strings are NUL-terminated unless they are slices; slices are not NUL-terminated in general.
 *
 * Threads: a parsed message is immutable; any thread may read it. Parsing may run on any thread.
 *
 * Errors: tamis_msg_parse() fails only on TAMIS_ENOMEM or TAMIS_ELIMIT (input larger than
 * max_message_bytes). Malformed MIME never fails: it is parsed as well as it can be and the anomaly
 * is recorded as a parse flag.
 */
#ifndef TAMIS_MSG_H
#define TAMIS_MSG_H

#include "tamis/core.h"

#include <time.h>

typedef struct tamis_msg tamis_msg_t;

/* Compiled redirector_pattern settings (Conf.pm): a URI that one of them matches adds its first
 * capture group (the target URL, when it holds a dot) to the URI list, canonicalised in turn;
 * when none matches, the generic "http..." in the path is taken as before. Immutable once made:
 * any number of parses may share one. */
typedef struct tamis_msg_redirectors tamis_msg_redirectors_t;

/* Compiles patterns (PCRE syntax, inline options such as "(?i)" allowed; matched against bytes).
 * A pattern that does not compile is left out and named in err (the others are kept); returns 0,
 * or TAMIS_ENOMEM. *out is NULL when n is 0. Free with tamis_msg_redirectors_free (NULL: no-op). */
int tamis_msg_redirectors_new(const char *const *patterns, size_t n, tamis_msg_redirectors_t **out,
                              char *err, size_t errlen);
void tamis_msg_redirectors_free(tamis_msg_redirectors_t *r);

/* Named denial-of-service limits, and the parse options that come from configuration. */
typedef struct {
    size_t max_message_bytes;      /* whole input; larger input is refused (default 64 MiB) */
    unsigned max_mime_depth;       /* nesting of multiparts and message/rfc822 (default 20) */
    unsigned max_parts;            /* MIME parts visited (default 1000) */
    size_t max_decoded_bytes;      /* total transfer-decoded bytes kept (default 32 MiB) */
    unsigned max_headers;          /* header fields per header block (default 1000) */
    size_t max_uris;               /* URI strings kept (default 2000) */
    size_t body_part_scan_size;    /* rendered bytes kept per text part (SA default 50000) */
    size_t rawbody_part_scan_size; /* decoded bytes kept per part for rawbody (SA: 500000) */
    /* redirector_pattern list (borrowed: must outlive the parse), NULL = none (default) */
    const tamis_msg_redirectors_t *redirectors;
} tamis_msg_limits_t;

void tamis_msg_limits_default(tamis_msg_limits_t *lim);

/* Parses data (not copied beyond the call: the message keeps its own copy). lim NULL = defaults. */
int tamis_msg_parse(const char *data, size_t len, const tamis_msg_limits_t *lim, tamis_msg_t **out,
                    char *err, size_t errlen);
void tamis_msg_free(tamis_msg_t *m);

/* ---- pristine bytes ------------------------------------------------------------------------- */

/* The whole input as received, after an mbox "From " line (if any) was split off. */
tamis_slice_t tamis_msg_pristine(const tamis_msg_t *m);
/* The header block (without the separating blank line) and the body after it. */
tamis_slice_t tamis_msg_pristine_headers(const tamis_msg_t *m);
tamis_slice_t tamis_msg_pristine_body(const tamis_msg_t *m);
/* The mbox "From " line including its line ending, or an empty slice. */
tamis_slice_t tamis_msg_mbox_from(const tamis_msg_t *m);
/* True when the header block used CRLF line endings. */
bool tamis_msg_uses_crlf(const tamis_msg_t *m);

/* ---- header fields -------------------------------------------------------------------------- */

typedef struct {
    const char *name;    /* as written, e.g. "Subject" */
    const char *raw;     /* bytes after "Name:" and its following blanks, folding kept, final EOL
                            removed */
    const char *decoded; /* unfolded, trimmed, RFC 2047 decoded, converted to UTF-8 (raw 8-bit that
                            is not UTF-8 transcoded by guess); no decoding for the headers SA
                            exempts (Received, Message-ID, Date, Resent-*, MIME-Version, References,
                            In-Reply-To, List-*) */
    tamis_slice_t pristine; /* the whole field: "Name: value\r\n\tfolded\r\n" with its EOLs */
} tamis_header_t;

/* Top-level header fields in message order. Existing X-Spam-* fields are included here; the scan
 * module decides what to drop. */
size_t tamis_msg_header_count(const tamis_msg_t *m);
const tamis_header_t *tamis_msg_header_at(const tamis_msg_t *m, size_t i);
/* First/last field with that name (case-insensitive), or NULL. */
const tamis_header_t *tamis_msg_header_first(const tamis_msg_t *m, const char *name);
const tamis_header_t *tamis_msg_header_last(const tamis_msg_t *m, const char *name);

/* ---- Received chain ------------------------------------------------------------------------- */

typedef struct {
    const char *ip;      /* client IP ("" if none found) */
    const char *rdns;    /* reverse DNS name as the receiving host recorded it ("" if unknown) */
    const char *helo;    /* HELO/EHLO argument ("" if unknown) */
    const char *by;      /* receiving host name */
    const char *ident;   /* ident ("" if none) */
    const char *envfrom; /* envelope sender if recorded ("" if none) */
    const char *id;      /* queue id ("" if none) */
    const char *auth;    /* authentication mechanism token ("" if none), e.g. "esmtpa" style */
    const char *with;    /* protocol, e.g. "ESMTP", "SMTP", "HTTP" */
    time_t date;         /* date after ';', 0 if absent or unparseable */
    bool ip_private;     /* client IP is private/reserved/loopback */
    bool no_rdns;        /* rdns is "" and the MTA's format shows it always looks rDNS up:
                            the client really has none (SA's no_reverse_dns) */
    bool unparseable;    /* the field could not be parsed into a relay */
    bool skipped;        /* SA ignores this field (local delivery, fetchmail, etc.); relays newer
                            than a fetch marker are skipped too when all of them are private or
                            authenticated (SA's restart of the trusted chain, default trust) */
    bool fetch_marker;   /* a POP3/IMAP fetcher line (SA: found_pop_fetcher_sig) */
    bool originating;    /* synthetic relay from an originating-IP header (X-Originating-IP …,
                            the stock originating_ip_headers list), after the Received ones */
    const tamis_header_t *header;
} tamis_relay_t;

/* All Received fields top to bottom (newest first), then the synthetic originating-IP relays. */
size_t tamis_msg_relay_count(const tamis_msg_t *m);
const tamis_relay_t *tamis_msg_relay_at(const tamis_msg_t *m, size_t i);

/* ---- body text ------------------------------------------------------------------------------ */

/* Rendered body lines as body rules see them (spec-rules §3.2): line 0 is the decoded Subject,
 * no line exceeds 2048 bytes. Exactly SpamAssassin's get_decoded_stripped_body_text_array: every
 * line ends with '\n' except the last one, which usually ends with ' ' (the collapsed final
 * newline). Bytes are UTF-8, except that, like Perl, HTML entities U+0080-U+00FF in a 7-bit HTML
 * part stay single Latin-1 bytes when no part of the message was decoded to characters. */
size_t tamis_msg_body_line_count(const tamis_msg_t *m);
tamis_slice_t tamis_msg_body_line(const tamis_msg_t *m, size_t i);
/* The lines Bayes tokenizes (get_visible_rendered_body_text_array): the same lines with the
 * HTML text judged invisible left out (it is in tamis_msg_invisible_text instead). Equal to the
 * body lines when no HTML piece was invisible. */
size_t tamis_msg_visible_line_count(const tamis_msg_t *m);
tamis_slice_t tamis_msg_visible_line(const tamis_msg_t *m, size_t i);
/* The same text without the Subject line, as one buffer (Bayes, previews). */
tamis_slice_t tamis_msg_body_text(const tamis_msg_t *m);
/* Visible and invisible rendered HTML text (invisible: tiny or background-coloured), for Bayes. */
tamis_slice_t tamis_msg_invisible_text(const tamis_msg_t *m);

/* Rawbody chunks (spec-rules §3.3): transfer-decoded text/message parts, no charset conversion. */
size_t tamis_msg_rawbody_count(const tamis_msg_t *m);
tamis_slice_t tamis_msg_rawbody_chunk(const tamis_msg_t *m, size_t i);

/* ---- MIME parts ----------------------------------------------------------------------------- */

typedef struct {
    const char *type;        /* lower-case "type/subtype"; "text/plain" when missing */
    const char *charset;     /* lower-case, "" if none */
    const char *filename;    /* "" if none */
    const char *encoding;    /* lower-case Content-Transfer-Encoding, "" if none */
    const char *disposition; /* lower-case, "" if none */
    unsigned depth;          /* 0 = top-level entity */
    bool is_leaf;
    size_t raw_bytes;      /* encoded body size */
    tamis_slice_t decoded; /* transfer-decoded content (leaf parts; may be truncated by limits) */
    const tamis_header_t *headers; /* this part's own header fields */
    size_t header_count;
} tamis_part_t;

/* All parts in depth-first order, the top-level entity first. */
size_t tamis_msg_part_count(const tamis_msg_t *m);
const tamis_part_t *tamis_msg_part_at(const tamis_msg_t *m, size_t i);

/* ---- URIs ----------------------------------------------------------------------------------- */

enum {
    TAMIS_URI_FROM_TEXT = 1 << 0, /* found in rendered text */
    TAMIS_URI_FROM_HTML = 1 << 1, /* from an HTML attribute */
    TAMIS_URI_UNLINKED = 1 << 2,  /* schemeless text a mail client would not linkify */
    TAMIS_URI_MAILTO = 1 << 3,
    TAMIS_URI_TRUNCATED = 1 << 4,
    TAMIS_URI_FROM_DKIM = 1 << 5, /* a DKIM d= domain, for URIBL lookups only */
};

typedef struct {
    const char *raw;      /* as found */
    const char *host;     /* lower-case host of the canonical form ("" if none) */
    const char *domain;   /* registrable domain of host (public suffix list), or the IP */
    const char *anchor;   /* HTML anchor text ("" if none) */
    const char *html_tag; /* "a", "img", … for HTML URIs; "" otherwise */
    unsigned flags;
    /* canonical variants (raw included), used as the uri rule subjects */
    const char *const *variants;
    size_t variant_count;
} tamis_uri_t;

size_t tamis_msg_uri_count(const tamis_msg_t *m);
const tamis_uri_t *tamis_msg_uri_at(const tamis_msg_t *m, size_t i);
/* The deduplicated union of all variants: what uri rules are matched against, in a stable order. */
size_t tamis_msg_uri_string_count(const tamis_msg_t *m);
const char *tamis_msg_uri_string(const tamis_msg_t *m, size_t i);

/* ---- statistics for eval functions ---------------------------------------------------------- */

/* HTML statistics of the last HTML part by SpamAssassin's names ($pms->{html} in HTMLEval):
 * "html" (1 when an HTML part exists), "length", "html_length", "non_space_len", "ratio",
 * "image_area", "max_size", "min_size", "closed_extra_ratio", "bad_tag_ratio",
 * "non_element_ratio", "obfuscation_ratio", "backhair_count", and the html_test flags
 * "font_low_contrast", "font_invalid_color", "font_face_bad", "form_action_mailto", "embeds". As
 * in SpamAssassin a statistic whose counter never moved is absent. Returns false if absent; *out is
 * then 0. */
bool tamis_msg_html_stat(const tamis_msg_t *m, const char *name, double *out);
/* Was this tag seen in any HTML part? Count of start tags minus end tags (html_tag_balance). */
bool tamis_msg_html_tag_seen(const tamis_msg_t *m, const char *tag);
long tamis_msg_html_tag_balance(const tamis_msg_t *m, const char *tag);
/* Every tag seen (the "inside" table of HTML.pm), for listing: name and balance of entry i. */
size_t tamis_msg_html_tag_count(const tamis_msg_t *m);
const char *tamis_msg_html_tag_at(const tamis_msg_t *m, size_t i, long *balance);
/* Collected HTML text areas for html_text_match: "title", "comment", "anchor", "meta", … ("" if
 * none). */
const char *tamis_msg_html_text(const tamis_msg_t *m, const char *area);

/* MIME counters by SpamAssassin's names, computed as MIMEEval's _check_attachments does
 * (check_for_mime …): "mime_base64_count", "mime_base64_encoded_text", "mime_body_html_count",
 * "mime_body_text_count", "mime_missing_boundary", "mime_multipart_alternative",
 * "mime_multipart_ratio", "mime_qp_count", "mime_qp_bytes", "mime_qp_long_line", "mime_qp_ratio",
 * "mime_ascii_text_illegal", "mime_text_unicode_ratio", "mime_attachment",
 * "mime_bad_iso_charset" ("mime_faraway_charset" stays 0: it needs ok_locales). A parse flag
 * name also answers 1. Parse flags (check_msg_parse_flags): "missing_head_body_separator",
 * "missing_mime_head_body_separator", "missing_mime_headers", "truncated_header",
 * "mime_epilogue_exists", "mimepart_limit_exceeded", "mime_missing_boundary", plus Tamis's own
 * "multipart_without_boundary", "mime_depth_limit", "decoded_bytes_limit", "uri_limit",
 * "header_limit" (more fields than max_headers in one header block; "truncated_header" too).
 * Unknown names give false and 0. */
bool tamis_msg_mime_stat(const tamis_msg_t *m, const char *name, double *out);
bool tamis_msg_parse_flag(const tamis_msg_t *m, const char *name);

#endif
