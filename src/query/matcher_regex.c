/*
 * matcher_regex.c: $regex for the query matcher: compiling a pattern and
 * testing a value against it.
 *
 * Regex notes (POSIX ERE via glibc instead of PCRE): \d \D \w \W \s \S \b
 * and common escapes work, also inside [...]; option x strips whitespace
 * and #-comments; '.' follows PCRE (no newline unless "s"). With "m" (done
 * with REG_NEWLINE), a negated class [^...] also excludes newline, unlike
 * PCRE. Lookaround, \A \z, \Q..\E, inline flags "(?i)" and possessive
 * quantifiers are not supported: regcomp rejects most of them (51091).
 * Matching is a yes/no test, so lazy quantifiers behave like greedy ones.
 * Patterns are compiled and run in a C.UTF-8 locale, as PCRE's UTF mode:
 * '.' and [^...] take one code point, "i" folds non-ASCII letters; \w \d \s
 * stay ASCII-only as in PCRE without UCP (\b and [[:alpha:]] follow the
 * locale, a known difference).
 */
#include <locale.h>
#include <pthread.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "query/matcher_int.h"
#include "query/query.h"
#include "query/query_int.h"

/* ---- regex ---------------------------------------------------------------- */

struct sbuf
{
    char *p;
    size_t len, cap;
    bool oom;
};

static void sb_putc(struct sbuf *b, char c)
{
    if (b->oom) {
        return;
    }
    if (b->len + 2 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 64;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    b->p[b->len++] = c;
    b->p[b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s)
{
    while (*s) {
        sb_putc(b, *s++);
    }
}

static char escape_char(char c)
{
    switch (c) {
        case 'n':
            return '\n';
        case 't':
            return '\t';
        case 'r':
            return '\r';
        case 'f':
            return '\f';
        case 'v':
            return '\v';
        case 'a':
            return '\a';
        case 'e':
            return 27;
        default:
            return c;
    }
}

/* Translates a bracket expression starting after '[' at p; returns the
 * position after the closing ']' or NULL when unterminated. */
static const char *translate_bracket(const char *p, struct sbuf *out)
{
    struct sbuf body = {0};
    bool neg = false, lit_close = false, lit_dash = false, lit_caret = false;
    if (*p == '^') {
        neg = true;
        p++;
    }
    if (*p == ']') { /* a leading ']' is literal */
        lit_close = true;
        p++;
    }
    for (;;) {
        if (*p == '\0') {
            free(body.p);
            return NULL;
        }
        if (*p == ']') {
            p++;
            break;
        }
        if (p[0] == '[' && (p[1] == ':' || p[1] == '.' || p[1] == '=')) {
            char delim = p[1];
            const char *end = p + 2;
            while (*end && !(end[0] == delim && end[1] == ']')) {
                end++;
            }
            if (!*end) {
                free(body.p);
                return NULL;
            }
            for (const char *q = p; q < end + 2; q++) {
                sb_putc(&body, *q);
            }
            p = end + 2;
            continue;
        }
        if (*p == '\\' && p[1]) {
            char c = p[1];
            p += 2;
            switch (c) {
                case 'd':
                    sb_puts(&body, "0-9");
                    break;
                case 'w':
                    sb_puts(&body, "A-Za-z0-9_");
                    break;
                case 's':
                    sb_puts(&body, " \t\n\r\f\v");
                    break;
                case ']':
                    lit_close = true;
                    break;
                case '-':
                    lit_dash = true;
                    break;
                case '^':
                    lit_caret = true;
                    break;
                default:
                    sb_putc(&body, escape_char(c));
                    break;
            }
            continue;
        }
        if (*p == '^' && body.len == 0) { /* '^' not first is literal in both */
            lit_caret = true;
            p++;
            continue;
        }
        sb_putc(&body, *p++);
    }
    sb_putc(out, '[');
    if (neg) {
        sb_putc(out, '^');
    }
    if (lit_close) {
        sb_putc(out, ']');
    }
    if (body.p) {
        sb_puts(out, body.p);
    }
    if (lit_caret) {
        if (!lit_close && body.len == 0 && !lit_dash) {
            /* a class of only '^': write it escaped as a one-char class */
            sb_putc(out, '\\');
        }
        sb_putc(out, '^');
    }
    if (lit_dash) {
        sb_putc(out, '-');
    }
    sb_putc(out, ']');
    if (body.oom) {
        out->oom = true;
    }
    free(body.p);
    return p;
}

/* Translates PCRE-style syntax to glibc ERE. Returns NULL on OOM or an
 * unterminated bracket (then *bad is set). */
/* dot: how to write '.': as is, as "[^\n]", or as "(.|\n)". */
enum dot_mode { DOT_KEEP, DOT_NO_NEWLINE, DOT_ANY };

/* Writes byte c so that ERE reads it literally. */
static void put_literal(struct sbuf *out, char c)
{
    if (c != '\0' && strchr(".[]()*+?{}|^$\\", c)) {
        sb_putc(out, '\\');
    }
    sb_putc(out, c);
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* `multiline`: without it, PCRE's '$' matches at the very end and before a
 * final newline, written as "(\n?\')" (GNU ERE's end-of-buffer anchor). */
static char *translate_regex(const char *pat,
                             bool extended,
                             bool multiline,
                             enum dot_mode dot,
                             bool *bad_pat)
{
    struct sbuf out = {0};
    const char *p = pat;
    *bad_pat = false;
    sb_puts(&out, "");
    while (*p) {
        char c = *p;
        if (extended &&
            (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v')) {
            p++;
            continue;
        }
        if (extended && c == '#') {
            while (*p && *p != '\n') {
                p++;
            }
            continue;
        }
        if (c == '[') {
            const char *np = translate_bracket(p + 1, &out);
            if (!np) {
                free(out.p);
                *bad_pat = true;
                return NULL;
            }
            p = np;
            continue;
        }
        if (c == '\\' && p[1]) {
            char e = p[1];
            p += 2;
            switch (e) {
                case 'A': /* start of subject */
                    sb_puts(&out, "\\`");
                    break;
                case 'z': /* very end of subject */
                    sb_puts(&out, "\\'");
                    break;
                case 'Z': /* end of subject or before a final newline */
                    sb_puts(&out, "(\n?\\')");
                    break;
                case 'Q': { /* literal text up to \E (or the end) */
                    while (*p && !(p[0] == '\\' && p[1] == 'E')) {
                        put_literal(&out, *p++);
                    }
                    if (*p) {
                        p += 2;
                    }
                    break;
                }
                case 'E': /* a stray \E is ignored, as PCRE does */
                    break;
                case 'x': { /* \xHH: one or two hex digits */
                    int v = 0, nd = 0;
                    while (nd < 2 && hex_digit(*p) >= 0) {
                        v = v * 16 + hex_digit(*p++);
                        nd++;
                    }
                    if (v == 0) {
                        free(out.p);
                        *bad_pat = true;
                        return NULL;
                    }
                    if (v >= 0x80) { /* code point U+00HH, as PCRE's UTF mode */
                        sb_putc(&out, (char)(0xC0 | (v >> 6)));
                        sb_putc(&out, (char)(0x80 | (v & 0x3F)));
                    } else {
                        put_literal(&out, (char)v);
                    }
                    break;
                }
                case 'd':
                    sb_puts(&out, "[0-9]");
                    break;
                case 'D':
                    sb_puts(&out, "[^0-9]");
                    break;
                case 'w': /* ASCII only, as PCRE without UCP (glibc's follow the locale) */
                    sb_puts(&out, "[A-Za-z0-9_]");
                    break;
                case 'W':
                    sb_puts(&out, "[^A-Za-z0-9_]");
                    break;
                case 's':
                    sb_puts(&out, "[ \t\n\r\f\v]");
                    break;
                case 'S':
                    sb_puts(&out, "[^ \t\n\r\f\v]");
                    break;
                case 'n':
                case 't':
                case 'r':
                case 'f':
                case 'v':
                case 'a':
                case 'e':
                    sb_putc(&out, escape_char(e));
                    break;
                case '/':
                case '"':
                case '\'':
                case ':':
                case '-':
                case '#':
                case ' ':
                    sb_putc(&out, e);
                    break;
                default:
                    sb_putc(&out, '\\');
                    sb_putc(&out, e);
                    break;
            }
            continue;
        }
        if (c == '(' && p[1] == '?' && p[2] == ':') { /* non-capturing group */
            sb_putc(&out, '(');
            p += 3;
            continue;
        }
        if (c == '$' && !multiline) {
            sb_puts(&out, "(\n?\\')");
            p++;
            continue;
        }
        if (c == '.' && dot == DOT_NO_NEWLINE) {
            sb_puts(&out, "[^\n]");
        } else if (c == '.' && dot == DOT_ANY) {
            sb_puts(&out, "(.|\n)");
        } else {
            sb_putc(&out, c);
        }
        p++;
    }
    if (out.oom) {
        free(out.p);
        return NULL;
    }
    return out.p;
}

/* glibc's regcomp copies the operand of '+' and '{n,m}' and builds epsilon
 * closures over the copies: nested or stacked repeats cost time exponential
 * in their depth ("((((Q)+)+)+...)" 20 deep: half a minute;
 * "Q++++++++++++++++++++++": seconds) and repeats of operands that hold
 * quantifiers cost time polynomial of high degree in the count
 * ("((a?)*){2000}": 12 s). The weighted size below (a group holding q
 * quantifiers weighs (1 + q)^2 times its length) must stay within this
 * many positions, else the pattern is refused (51091) before regcomp. */
#define RX_MAX_EXPANDED 4096
#define RX_MAX_GROUPS 256

/* The number of positions `ere` expands to in glibc (an upper bound,
 * saturating at RX_MAX_EXPANDED + 1). Sets *backref when `ere` holds a
 * back-reference (\1..\9): glibc matches those in time polynomial of high
 * degree in the subject's length (minutes for a few kilobytes). */
static size_t ere_expanded_size(const char *ere, bool *backref, bool *stacked)
{
    size_t total[RX_MAX_GROUPS + 1], last[RX_MAX_GROUPS + 1], nq[RX_MAX_GROUPS + 1];
    bool anch[RX_MAX_GROUPS + 1]; /* the group holds a zero-width assertion */
    bool last_zw = false;         /* the last atom holds one and a repeat */
    size_t depth = 0;
    const size_t cap = RX_MAX_EXPANDED + 1;
    const char *p = ere;
    int quant = 0; /* the previous token: 0 not a repeat, 1 a repeat, 2 one + modifier */

    *backref = false;
    *stacked = false;
    total[0] = last[0] = nq[0] = 0;
    anch[0] = false;
    while (*p) {
        size_t atom = 1, mult = 0;
        bool zw = false;
        char c = *p;
        if (c == '\\' && p[1]) {
            if (p[1] >= '1' && p[1] <= '9') {
                *backref = true;
            }
            if (strchr("`'bB<>", p[1])) {
                anch[depth] = true;
            }
            p += 2;
        } else if (c == '[') {
            p++;
            if (*p == '^') {
                p++;
            }
            if (*p == ']') {
                p++;
            }
            while (*p && *p != ']') {
                if (p[0] == '[' && (p[1] == ':' || p[1] == '.' || p[1] == '=')) {
                    char d = p[1];
                    p += 2;
                    while (*p && !(p[0] == d && p[1] == ']')) {
                        p++;
                    }
                    if (*p) {
                        p++;
                    }
                }
                if (*p) {
                    p++;
                }
            }
            if (*p) {
                p++;
            }
        } else if (c == '(') {
            if (depth == RX_MAX_GROUPS) {
                return cap;
            }
            depth++;
            total[depth] = last[depth] = nq[depth] = 0;
            anch[depth] = false;
            quant = 0;
            p++;
            continue;
        } else if (c == ')' && depth > 0) {
            size_t q = nq[depth] < 64 ? nq[depth] : 64;
            atom = total[depth] ? total[depth] : 1;
            atom = atom < cap ? atom * (1 + q) * (1 + q) : cap;
            depth--;
            nq[depth] += nq[depth + 1];
            anch[depth] = anch[depth] || anch[depth + 1];
            zw = anch[depth + 1] && nq[depth + 1] > 0;
            p++;
        } else if (c == '|') {
            last[depth] = 0;
            quant = 0;
            p++;
            continue;
        } else if (c == '+' || c == '*' || c == '?') {
            mult = c == '+' ? 2 : 1; /* '*' and '?' make no copy */
            p++;
        } else if (c == '{') {
            /* {n}, {n,}, {n,m}: the operand is copied max(n, m) times */
            size_t n = 0;
            p++;
            while (*p && *p != '}') {
                if (*p >= '0' && *p <= '9') {
                    size_t v = 0;
                    while (*p >= '0' && *p <= '9') {
                        v = v < cap ? v * 10 + (size_t)(*p - '0') : cap;
                        p++;
                    }
                    n = v > n ? v : n;
                } else {
                    p++;
                }
            }
            if (*p) {
                p++;
            }
            mult = n + 1;
        } else {
            if (c == '^' || c == '$') {
                anch[depth] = true;
            }
            p++;
        }
        if (mult == 0) {
            total[depth] += atom;
            last[depth] = atom;
            last_zw = zw;
            quant = 0;
        } else if (quant == 1 && (c == '+' || c == '?')) {
            /* PCRE's possessive / lazy modifier: glibc reads a second
             * repeat, which matches the same subjects; no copy */
            quant = 2;
        } else if (quant != 0) {
            /* "a+++", "a**", "(^)+++++": PCRE refuses these (nothing to
             * repeat), and glibc compiles stacked repeats of zero-width
             * operands in super-exponential time */
            *stacked = true;
            return cap;
        } else if (last_zw) {
            /* a repeat of a group holding a zero-width assertion and a
             * repeat ("((^)+){20}", "(a$)+"): glibc needs seconds to hours */
            return cap;
        } else { /* a repeat of the last atom */
            size_t extra = last[depth] * (mult - 1);
            if (last[depth] != 0 && extra / last[depth] != mult - 1) {
                return cap;
            }
            nq[depth]++;
            total[depth] += extra;
            last[depth] += extra;
            quant = 1;
        }
        if (total[depth] > RX_MAX_EXPANDED || last[depth] > RX_MAX_EXPANDED) {
            return cap;
        }
    }
    while (depth > 0) { /* unclosed groups (regcomp will refuse them) */
        total[depth - 1] += total[depth];
        depth--;
    }
    return total[0];
}

static pthread_once_t utf8_once = PTHREAD_ONCE_INIT;
static locale_t utf8_loc; /* (locale_t)0 when C.UTF-8 is missing: bytes then */

static void utf8_init(void)
{
    utf8_loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

/* Switches this thread to the UTF-8 locale; returns the one to restore. */
static locale_t rx_locale_enter(void)
{
    pthread_once(&utf8_once, utf8_init);
    return utf8_loc ? uselocale(utf8_loc) : (locale_t)0;
}

static void rx_locale_leave(locale_t old)
{
    if (old) {
        uselocale(old);
    }
}

static int rx_init(struct rx *r, const char *pattern, const char *options, struct cairn_error *err)
{
    int flags = REG_EXTENDED | REG_NOSUB;
    bool m = false, s = false, x = false;
    memset(r, 0, sizeof *r);
    for (const char *o = options; *o; o++) {
        switch (*o) {
            case 'i':
                flags |= REG_ICASE;
                break;
            case 'm':
                m = true;
                break;
            case 's':
                s = true;
                break;
            case 'x':
                x = true;
                break;
            case 'u':
                break;
            default:
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_RegexOptionInvalid,
                                         "invalid flag in regex options: %c", *o);
        }
    }
    /* "m": anchors at lines (REG_NEWLINE, which also stops '.' at a newline);
     * '.' is rewritten so that it matches a newline only with "s". */
    enum dot_mode dot = s ? (m ? DOT_ANY : DOT_KEEP) : (m ? DOT_KEEP : DOT_NO_NEWLINE);
    if (m) {
        flags |= REG_NEWLINE;
    }
    bool bad_pat;
    char *ere = translate_regex(pattern, x, m, dot, &bad_pat);
    if (!ere) {
        if (bad_pat) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_RegexInvalid,
                                     "Regular expression is invalid: missing terminating ] for "
                                     "character class, or a NUL \\x escape");
        }
        return mt_nomem(err);
    }
    bool backref, stacked;
    size_t expanded = ere_expanded_size(ere, &backref, &stacked);
    if (stacked) {
        free(ere);
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_RegexInvalid,
                                 "Regular expression is invalid: nothing to repeat (a quantifier "
                                 "follows a quantifier)");
    }
    if (expanded > RX_MAX_EXPANDED) {
        free(ere);
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_RegexInvalid,
                                 "Regular expression is invalid: regular expression is too large "
                                 "(nested or repeated quantifiers)");
    }
    if (backref) {
        free(ere);
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_RegexInvalid,
                                 "Regular expression is invalid: back-references are not "
                                 "supported");
    }
    locale_t old = rx_locale_enter();
    int rc = regcomp(&r->re, ere, flags);
    rx_locale_leave(old);
    free(ere);
    if (rc != 0) {
        char msg[128];
        regerror(rc, &r->re, msg, sizeof msg);
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_RegexInvalid,
                                 "Regular expression is invalid: %s", msg);
    }
    r->pattern = strdup(pattern);
    r->options = strdup(options);
    if (!r->pattern || !r->options) {
        regfree(&r->re);
        free(r->pattern);
        free(r->options);
        memset(r, 0, sizeof *r);
        return mt_nomem(err);
    }
    return 0;
}

int mt_node_add_rx(struct node *n,
                   const char *pattern,
                   const char *options,
                   struct cairn_error *err)
{
    struct rx *nr = realloc(n->rxs, (n->nrx + 1) * sizeof *nr);
    if (!nr) {
        return mt_nomem(err);
    }
    n->rxs = nr;
    int rc = rx_init(&nr[n->nrx], pattern, options ? options : "", err);
    if (rc) {
        return rc;
    }
    n->nrx++;
    return 0;
}

bool mt_rx_match_value(const struct rx *r, const bson_value_t *v)
{
    const char *s;
    size_t len;
    if (v->value_type == BSON_TYPE_UTF8) {
        s = v->value.v_utf8.str;
        len = v->value.v_utf8.len;
    } else if (v->value_type == BSON_TYPE_SYMBOL) {
        s = v->value.v_symbol.symbol;
        len = v->value.v_symbol.len;
    } else if (v->value_type == BSON_TYPE_REGEX) {
        return strcmp(v->value.v_regex.regex, r->pattern) == 0 &&
               strcmp(v->value.v_regex.options ? v->value.v_regex.options : "", r->options) == 0;
    } else {
        return false;
    }
    regmatch_t pm[1];
    pm[0].rm_so = 0;
    pm[0].rm_eo = (regoff_t)len;
    locale_t old = rx_locale_enter();
    bool hit = regexec(&r->re, s, 1, pm, REG_STARTEND) == 0;
    rx_locale_leave(old);
    return hit;
}
