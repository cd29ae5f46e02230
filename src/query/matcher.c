/*
 * matcher.c: query filter compilation and matching with MongoDB semantics:
 * implicit and operator equality, comparisons with type bracketing,
 * $in/$nin, $exists, $type, $size, $mod, $regex (POSIX regcomp with a
 * PCRE-syntax translation), $elemMatch, $all, $not, $and/$or/$nor, and the
 * array rules of dotted paths.
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
#include <math.h>
#include <pthread.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "query/query.h"
#include "query/query_int.h"

#define MAX_DEPTH 100

enum kind {
    K_AND,
    K_OR,
    K_NOR,
    K_NOT,
    K_TRUE,
    K_FALSE,
    K_CMP,
    K_REGEX,
    K_IN,
    K_EXISTS,
    K_TYPE,
    K_SIZE,
    K_MOD,
    K_ELEM_OBJ,
    K_ELEM_VAL,
};

enum cmp_op { OP_EQ, OP_LT, OP_LTE, OP_GT, OP_GTE };

struct rx
{
    regex_t re;
    char *pattern;
    char *options;
};

/* Type mask bits: BSON type code n (1..19) -> bit n; MinKey, MaxKey,
 * "number" get their own bits. */
#define TYPE_BIT_MINKEY 20
#define TYPE_BIT_MAXKEY 21
#define TYPE_BIT_NUMBER 22

struct node
{
    enum kind kind;
    char *path; /* NULL: the value under test (value context) */
    struct node **kids;
    size_t nkids;
    enum cmp_op op;
    bson_value_t val; /* K_CMP operand (owned) */
    bool has_val;
    struct rx *rxs; /* K_REGEX (one) and K_IN regexes */
    size_t nrx;
    bson_value_t *vals; /* K_IN values (owned) */
    size_t nvals;
    bool exists;
    uint32_t type_mask;
    int64_t n, divisor, remainder;
};

struct qry_matcher
{
    struct node *root;
    bool value_mode; /* compiled by qry_matcher_compile_value */
};

/* ---- node construction --------------------------------------------------- */

static void node_free(struct node *n)
{
    if (!n) {
        return;
    }
    for (size_t i = 0; i < n->nkids; i++) {
        node_free(n->kids[i]);
    }
    free(n->kids);
    free(n->path);
    if (n->has_val) {
        bson_value_destroy(&n->val);
    }
    for (size_t i = 0; i < n->nrx; i++) {
        regfree(&n->rxs[i].re);
        free(n->rxs[i].pattern);
        free(n->rxs[i].options);
    }
    free(n->rxs);
    for (size_t i = 0; i < n->nvals; i++) {
        bson_value_destroy(&n->vals[i]);
    }
    free(n->vals);
    free(n);
}

static struct node *node_new(enum kind k, const char *path)
{
    struct node *n = calloc(1, sizeof *n);
    if (!n) {
        return NULL;
    }
    n->kind = k;
    if (path) {
        n->path = strdup(path);
        if (!n->path) {
            free(n);
            return NULL;
        }
    }
    return n;
}

static int nomem(struct cairn_error *err)
{
    return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory compiling query filter");
}

static int bad(struct cairn_error *err, const char *msg)
{
    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue, "%s", msg);
}

static int add_kid(struct node *parent, struct node *kid, struct cairn_error *err)
{
    struct node **k = realloc(parent->kids, (parent->nkids + 1) * sizeof *k);
    if (!k) {
        node_free(kid);
        return nomem(err);
    }
    parent->kids = k;
    k[parent->nkids++] = kid;
    return 0;
}

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
        return nomem(err);
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
        return nomem(err);
    }
    return 0;
}

/* Adds a compiled regex to node n. */
static int node_add_rx(struct node *n,
                       const char *pattern,
                       const char *options,
                       struct cairn_error *err)
{
    struct rx *nr = realloc(n->rxs, (n->nrx + 1) * sizeof *nr);
    if (!nr) {
        return nomem(err);
    }
    n->rxs = nr;
    int rc = rx_init(&nr[n->nrx], pattern, options ? options : "", err);
    if (rc) {
        return rc;
    }
    n->nrx++;
    return 0;
}

static bool rx_match_value(const struct rx *r, const bson_value_t *v)
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

/* ---- matching -------------------------------------------------------------- */

static bool is_nan_value(const bson_value_t *v)
{
    return qry_is_number(v->value_type) && isnan(qry_number_as_double(v));
}

/* Comparison with MongoDB's type bracketing; v == NULL is a missing field. */
static bool cmp_match(enum cmp_op op, const bson_value_t *v, const bson_value_t *rhs)
{
    int rv = v ? qry_type_rank(v->value_type) : QRY_RANK_UNDEFINED;
    int rr = qry_type_rank(rhs->value_type);
    if (rv != rr) {
        if ((rv == QRY_RANK_UNDEFINED && rr == QRY_RANK_NULL) ||
            (rv == QRY_RANK_NULL && rr == QRY_RANK_UNDEFINED)) {
            return op == OP_EQ || op == OP_LTE || op == OP_GTE;
        }
        if (rhs->value_type == BSON_TYPE_MAXKEY) {
            return op == OP_LT || op == OP_LTE;
        }
        if (rhs->value_type == BSON_TYPE_MINKEY) {
            return op == OP_GT || op == OP_GTE;
        }
        return false;
    }
    if (!v) {
        return op == OP_EQ || op == OP_LTE || op == OP_GTE;
    }
    if (is_nan_value(v) || is_nan_value(rhs)) {
        bool both = is_nan_value(v) && is_nan_value(rhs);
        return (op == OP_EQ || op == OP_LTE || op == OP_GTE) && both;
    }
    int c = qry_cmp(v, rhs);
    switch (op) {
        case OP_EQ:
            return c == 0;
        case OP_LT:
            return c < 0;
        case OP_LTE:
            return c <= 0;
        case OP_GT:
            return c > 0;
        case OP_GTE:
            return c >= 0;
    }
    return false;
}

static uint32_t type_bit(bson_type_t t)
{
    if (t == BSON_TYPE_MINKEY) {
        return 1u << TYPE_BIT_MINKEY;
    }
    if (t == BSON_TYPE_MAXKEY) {
        return 1u << TYPE_BIT_MAXKEY;
    }
    if ((int)t >= 1 && (int)t <= 19) {
        return 1u << (int)t;
    }
    return 0;
}

struct ctx
{
    const uint8_t *doc; /* document context */
    uint32_t len;
    const bson_value_t *val; /* value context (NULL = missing) */
    bool expand;             /* value context: expand an array value */
};

static bool eval(const struct node *n, const struct ctx *c);

static bool match_doc_data(const struct node *n, const uint8_t *data, uint32_t len)
{
    struct ctx c = {data, len, NULL, false};
    return eval(n, &c);
}

static bool array_count(const bson_value_t *v, int64_t *count)
{
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len)) {
        return false;
    }
    int64_t k = 0;
    while (bson_iter_next(&it)) {
        k++;
    }
    *count = k;
    return true;
}

/* $elemMatch: the index of the first element of array `v` that matches, or
 * -1 (also when `v` is missing or not an array). */
static long elem_match_index(const struct node *n, const bson_value_t *v)
{
    if (!v || v->value_type != BSON_TYPE_ARRAY) {
        return -1;
    }
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len)) {
        return -1;
    }
    long i = 0;
    for (; bson_iter_next(&it); i++) {
        const bson_value_t *e = bson_iter_value(&it);
        if (n->kind == K_ELEM_OBJ) {
            if (e->value_type != BSON_TYPE_DOCUMENT && e->value_type != BSON_TYPE_ARRAY) {
                continue;
            }
            if (match_doc_data(n->kids[0], e->value.v_doc.data, e->value.v_doc.data_len)) {
                return i;
            }
        } else {
            struct ctx c = {NULL, 0, e, false};
            if (eval(n->kids[0], &c)) {
                return i;
            }
        }
    }
    return -1;
}

/* Tests one reached value (NULL = missing) against a leaf predicate. */
static bool single(const struct node *n, const bson_value_t *v)
{
    switch (n->kind) {
        case K_CMP:
            return cmp_match(n->op, v, &n->val);
        case K_REGEX:
            return v && rx_match_value(&n->rxs[0], v);
        case K_IN:
            for (size_t i = 0; i < n->nvals; i++) {
                if (cmp_match(OP_EQ, v, &n->vals[i])) {
                    return true;
                }
            }
            if (v) {
                for (size_t i = 0; i < n->nrx; i++) {
                    if (rx_match_value(&n->rxs[i], v)) {
                        return true;
                    }
                }
            }
            return false;
        case K_EXISTS:
            return v != NULL;
        case K_TYPE:
            if (!v) {
                return false;
            }
            if ((n->type_mask & (1u << TYPE_BIT_NUMBER)) && qry_is_number(v->value_type)) {
                return true;
            }
            return (n->type_mask & type_bit(v->value_type)) != 0;
        case K_SIZE: {
            int64_t k;
            return v && v->value_type == BSON_TYPE_ARRAY && array_count(v, &k) && k == n->n;
        }
        case K_MOD: {
            if (!v || !qry_is_number(v->value_type)) {
                return false;
            }
            int64_t x;
            if (v->value_type == BSON_TYPE_INT32) {
                x = v->value.v_int32;
            } else if (v->value_type == BSON_TYPE_INT64) {
                x = v->value.v_int64;
            } else {
                double d = qry_number_as_double(v);
                if (!isfinite(d) || d >= 9223372036854775808.0 || d < -9223372036854775808.0) {
                    return false;
                }
                x = (int64_t)d;
            }
            if (n->divisor == -1) {
                return n->remainder == 0;
            }
            return x % n->divisor == n->remainder;
        }
        case K_ELEM_OBJ:
        case K_ELEM_VAL:
            return elem_match_index(n, v) >= 0;
        default:
            return false;
    }
}

static bool expands(enum kind k)
{
    return k == K_CMP || k == K_REGEX || k == K_IN || k == K_TYPE || k == K_MOD;
}

struct visit_arg
{
    const struct node *n;
    bool matched;
};

static bool visit_cb(void *arg, const bson_iter_t *it, bool array_elem)
{
    (void)array_elem;
    struct visit_arg *va = arg;
    if (single(va->n, it ? bson_iter_value((bson_iter_t *)it) : NULL)) {
        va->matched = true;
        return true;
    }
    return false;
}

static bool eval_leaf(const struct node *n, const struct ctx *c)
{
    if (n->path) {
        if (!c->doc) {
            return false;
        }
        struct visit_arg va = {n, false};
        qry_path_walk(c->doc, c->len, n->path, expands(n->kind), visit_cb, &va);
        return va.matched;
    }
    if (single(n, c->val)) {
        return true;
    }
    if (c->expand && expands(n->kind) && c->val && c->val->value_type == BSON_TYPE_ARRAY) {
        bson_iter_t it;
        if (bson_iter_init_from_data(&it, c->val->value.v_doc.data, c->val->value.v_doc.data_len)) {
            while (bson_iter_next(&it)) {
                if (single(n, bson_iter_value(&it))) {
                    return true;
                }
            }
        }
    }
    return false;
}

static bool eval(const struct node *n, const struct ctx *c)
{
    switch (n->kind) {
        case K_AND:
            for (size_t i = 0; i < n->nkids; i++) {
                if (!eval(n->kids[i], c)) {
                    return false;
                }
            }
            return true;
        case K_OR:
            for (size_t i = 0; i < n->nkids; i++) {
                if (eval(n->kids[i], c)) {
                    return true;
                }
            }
            return false;
        case K_NOR:
            for (size_t i = 0; i < n->nkids; i++) {
                if (eval(n->kids[i], c)) {
                    return false;
                }
            }
            return true;
        case K_NOT:
            return !eval(n->kids[0], c);
        case K_TRUE:
            return true;
        case K_FALSE:
            return false;
        default:
            return eval_leaf(n, c);
    }
}

/* ---- compilation ------------------------------------------------------------ */

static int compile_doc(const uint8_t *data,
                       uint32_t len,
                       int depth,
                       struct node **out,
                       struct cairn_error *err);
static int compile_ops(const char *path,
                       const bson_iter_t *opdoc,
                       int depth,
                       struct node *and_node,
                       struct cairn_error *err);

static bool is_not_supported_path_op(const char *k)
{
    static const char *const ops[] = {
        "$near",        "$nearSphere", "$geoWithin",    "$geoIntersects", "$within",
        "$box",         "$center",     "$centerSphere", "$polygon",       "$maxDistance",
        "$minDistance", "$bitsAllSet", "$bitsAnySet",   "$bitsAllClear",  "$bitsAnyClear",
        "$geometry",    "$jsonSchema", "$text",         "$where",         "$expr"};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        if (strcmp(k, ops[i]) == 0) {
            return true;
        }
    }
    return false;
}

static int not_supported(struct cairn_error *err, const char *op)
{
    return cairn_error_mongo(err, CAIRN_EUNSUPPORTED, MONGO_NotImplemented,
                             "%s is not supported by cairn", op);
}

/* True when a document value is an operator document: its first key starts
 * with '$' and it is not a DBRef-like literal ($ref/$id/$db). */
static bool is_operator_doc(const bson_iter_t *it)
{
    bson_iter_t c;
    if (!BSON_ITER_HOLDS_DOCUMENT(it) || !bson_iter_recurse(it, &c) || !bson_iter_next(&c)) {
        return false;
    }
    const char *k = bson_iter_key(&c);
    if (k[0] != '$') {
        return false;
    }
    return strcmp(k, "$ref") != 0 && strcmp(k, "$id") != 0 && strcmp(k, "$db") != 0;
}

static int check_operand(const char *op, const bson_value_t *v, struct cairn_error *err)
{
    if (v->value_type == BSON_TYPE_UNDEFINED) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue, "cannot compare to undefined");
    }
    (void)op;
    return 0;
}

static int make_cmp(const char *path,
                    enum cmp_op op,
                    const bson_value_t *v,
                    struct node **out,
                    struct cairn_error *err)
{
    int rc = check_operand(NULL, v, err);
    if (rc) {
        return rc;
    }
    struct node *n = node_new(K_CMP, path);
    if (!n) {
        return nomem(err);
    }
    n->op = op;
    bson_value_copy(v, &n->val);
    n->has_val = true;
    *out = n;
    return 0;
}

static int make_regex(const char *path,
                      const char *pattern,
                      const char *options,
                      struct node **out,
                      struct cairn_error *err)
{
    struct node *n = node_new(K_REGEX, path);
    if (!n) {
        return nomem(err);
    }
    int rc = node_add_rx(n, pattern, options, err);
    if (rc) {
        node_free(n);
        return rc;
    }
    *out = n;
    return 0;
}

static int wrap_not(struct node *kid, struct node **out, struct cairn_error *err)
{
    struct node *n = node_new(K_NOT, NULL);
    if (!n) {
        node_free(kid);
        return nomem(err);
    }
    int rc = add_kid(n, kid, err);
    if (rc) {
        node_free(n);
        return rc;
    }
    *out = n;
    return 0;
}

/* Equality condition {path: value} (regex values match as regexes). */
static int compile_equality(const char *path,
                            const bson_iter_t *it,
                            struct node **out,
                            struct cairn_error *err)
{
    if (BSON_ITER_HOLDS_REGEX(it)) {
        const char *opts;
        const char *pat = bson_iter_regex(it, &opts);
        return make_regex(path, pat, opts ? opts : "", out, err);
    }
    return make_cmp(path, OP_EQ, bson_iter_value((bson_iter_t *)it), out, err);
}

static int compile_in(const char *path,
                      const bson_iter_t *it,
                      const char *name,
                      struct node **out,
                      struct cairn_error *err)
{
    if (!BSON_ITER_HOLDS_ARRAY(it)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue, "%s needs an array", name);
    }
    struct node *n = node_new(K_IN, path);
    if (!n) {
        return nomem(err);
    }
    bson_iter_t c;
    int rc = 0;
    if (!bson_iter_recurse(it, &c)) {
        node_free(n);
        return bad(err, "$in needs an array");
    }
    while (bson_iter_next(&c)) {
        if (BSON_ITER_HOLDS_REGEX(&c)) {
            const char *opts;
            const char *pat = bson_iter_regex(&c, &opts);
            rc = node_add_rx(n, pat, opts, err);
            if (rc) {
                break;
            }
            continue;
        }
        if (is_operator_doc(&c)) {
            rc = bad(err, "cannot nest $ under $in");
            break;
        }
        const bson_value_t *v = bson_iter_value(&c);
        rc = check_operand(name, v, err);
        if (rc) {
            break;
        }
        bson_value_t *nv = realloc(n->vals, (n->nvals + 1) * sizeof *nv);
        if (!nv) {
            rc = nomem(err);
            break;
        }
        n->vals = nv;
        bson_value_copy(v, &nv[n->nvals++]);
    }
    if (rc) {
        node_free(n);
        return rc;
    }
    *out = n;
    return 0;
}

struct type_alias
{
    const char *name;
    int code;
};

static const struct type_alias type_aliases[] = {
    {"double", 1},      {"string", 2},     {"object", 3},
    {"array", 4},       {"binData", 5},    {"undefined", 6},
    {"objectId", 7},    {"bool", 8},       {"date", 9},
    {"null", 10},       {"regex", 11},     {"dbPointer", 12},
    {"javascript", 13}, {"symbol", 14},    {"javascriptWithScope", 15},
    {"int", 16},        {"timestamp", 17}, {"long", 18},
    {"decimal", 19},    {"minKey", -1},    {"maxKey", 127},
};

static int type_code_bit(int code, uint32_t *bit)
{
    if (code >= 1 && code <= 19) {
        *bit = 1u << code;
    } else if (code == -1) {
        *bit = 1u << TYPE_BIT_MINKEY;
    } else if (code == 127) {
        *bit = 1u << TYPE_BIT_MAXKEY;
    } else {
        return -1;
    }
    return 0;
}

static int parse_type_one(const bson_iter_t *it, uint32_t *mask, struct cairn_error *err)
{
    if (BSON_ITER_HOLDS_UTF8(it)) {
        const char *s = bson_iter_utf8(it, NULL);
        if (strcmp(s, "number") == 0) {
            *mask |= 1u << TYPE_BIT_NUMBER;
            return 0;
        }
        for (size_t i = 0; i < sizeof type_aliases / sizeof type_aliases[0]; i++) {
            if (strcmp(s, type_aliases[i].name) == 0) {
                uint32_t b = 0;
                (void)type_code_bit(type_aliases[i].code, &b);
                *mask |= b;
                return 0;
            }
        }
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue, "Unknown type name alias: %s",
                                 s);
    }
    if (BSON_ITER_HOLDS_NUMBER(it) || BSON_ITER_HOLDS_DECIMAL128(it)) {
        double d = qry_number_as_double(bson_iter_value((bson_iter_t *)it));
        uint32_t b;
        if (!isfinite(d) || d != floor(d) || d < -1 || d > 127 || type_code_bit((int)d, &b) != 0) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                     "Invalid numerical type code: %g", d);
        }
        *mask |= b;
        return 0;
    }
    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_TypeMismatch,
                             "type must be represented as a number or a string");
}

static int compile_type(const char *path,
                        const bson_iter_t *it,
                        struct node **out,
                        struct cairn_error *err)
{
    uint32_t mask = 0;
    int rc = 0;
    if (BSON_ITER_HOLDS_ARRAY(it)) {
        bson_iter_t c;
        if (bson_iter_recurse(it, &c)) {
            while (rc == 0 && bson_iter_next(&c)) {
                rc = parse_type_one(&c, &mask, err);
            }
        }
    } else {
        rc = parse_type_one(it, &mask, err);
    }
    if (rc) {
        return rc;
    }
    struct node *n = node_new(K_TYPE, path);
    if (!n) {
        return nomem(err);
    }
    n->type_mask = mask;
    *out = n;
    return 0;
}

static bool value_truthy(const bson_value_t *v)
{
    switch (v->value_type) {
        case BSON_TYPE_BOOL:
            return v->value.v_bool;
        case BSON_TYPE_INT32:
        case BSON_TYPE_INT64:
        case BSON_TYPE_DOUBLE:
        case BSON_TYPE_DECIMAL128:
            return qry_number_as_double(v) != 0.0;
        case BSON_TYPE_NULL:
        case BSON_TYPE_UNDEFINED:
            return false;
        default:
            return true;
    }
}

static bool iter_int64(const bson_iter_t *it, int64_t *out, bool *whole)
{
    const bson_value_t *v = bson_iter_value((bson_iter_t *)it);
    *whole = true;
    if (v->value_type == BSON_TYPE_INT32) {
        *out = v->value.v_int32;
        return true;
    }
    if (v->value_type == BSON_TYPE_INT64) {
        *out = v->value.v_int64;
        return true;
    }
    if (v->value_type == BSON_TYPE_DOUBLE || v->value_type == BSON_TYPE_DECIMAL128) {
        double d = qry_number_as_double(v);
        if (!isfinite(d) || d != trunc(d) || d >= 9223372036854775808.0 ||
            d < -9223372036854775808.0) {
            *whole = false;
            *out = 0;
            if (isfinite(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0) {
                *out = (int64_t)d;
            }
            return true;
        }
        *out = (int64_t)d;
        return true;
    }
    return false;
}

static int compile_size(const char *path,
                        const bson_iter_t *it,
                        struct node **out,
                        struct cairn_error *err)
{
    int64_t k;
    bool whole;
    if (!iter_int64(it, &k, &whole)) {
        return bad(err, "$size needs a number");
    }
    if (!whole) {
        return bad(err, "$size must be a whole number");
    }
    if (k < 0) {
        return bad(err, "$size may not be negative");
    }
    struct node *n = node_new(K_SIZE, path);
    if (!n) {
        return nomem(err);
    }
    n->n = k;
    *out = n;
    return 0;
}

static int compile_mod(const char *path,
                       const bson_iter_t *it,
                       struct node **out,
                       struct cairn_error *err)
{
    if (!BSON_ITER_HOLDS_ARRAY(it)) {
        return bad(err, "malformed mod, needs to be an array");
    }
    bson_iter_t c;
    int64_t parts[2];
    int k = 0;
    if (bson_iter_recurse(it, &c)) {
        while (bson_iter_next(&c)) {
            if (k == 2) {
                return bad(err, "malformed mod, too many elements");
            }
            bool whole;
            if (!iter_int64(&c, &parts[k], &whole)) {
                return bad(err, k == 0 ? "malformed mod, divisor not a number"
                                       : "malformed mod, remainder not a number");
            }
            k++;
        }
    }
    if (k < 2) {
        return bad(err, "malformed mod, not enough elements");
    }
    if (parts[0] == 0) {
        return bad(err, "divisor cannot be 0");
    }
    struct node *n = node_new(K_MOD, path);
    if (!n) {
        return nomem(err);
    }
    n->divisor = parts[0];
    n->remainder = parts[1];
    *out = n;
    return 0;
}

/* True for operators valid at the top level of a filter (so that an
 * $elemMatch whose first key is one of them is in object form). */
static bool is_top_level_op(const char *k)
{
    return strcmp(k, "$and") == 0 || strcmp(k, "$or") == 0 || strcmp(k, "$nor") == 0 ||
           strcmp(k, "$where") == 0 || strcmp(k, "$expr") == 0 || strcmp(k, "$text") == 0 ||
           strcmp(k, "$comment") == 0 || strcmp(k, "$jsonSchema") == 0 ||
           strcmp(k, "$alwaysTrue") == 0 || strcmp(k, "$alwaysFalse") == 0;
}

static int compile_elem_match(const char *path,
                              const bson_iter_t *it,
                              int depth,
                              struct node **out,
                              struct cairn_error *err)
{
    if (!BSON_ITER_HOLDS_DOCUMENT(it)) {
        return bad(err, "$elemMatch needs an Object");
    }
    bool value_form = false;
    bson_iter_t c;
    if (bson_iter_recurse(it, &c) && bson_iter_next(&c)) {
        const char *k = bson_iter_key(&c);
        value_form = k[0] == '$' && !is_top_level_op(k) && strcmp(k, "$ref") != 0 &&
                     strcmp(k, "$id") != 0 && strcmp(k, "$db") != 0;
    }
    struct node *n = node_new(value_form ? K_ELEM_VAL : K_ELEM_OBJ, path);
    if (!n) {
        return nomem(err);
    }
    struct node *kid = NULL;
    int rc;
    if (value_form) {
        kid = node_new(K_AND, NULL);
        if (!kid) {
            node_free(n);
            return nomem(err);
        }
        rc = compile_ops(NULL, it, depth + 1, kid, err);
    } else {
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(it, &len, &data);
        rc = compile_doc(data, len, depth + 1, &kid, err);
    }
    if (rc == 0) {
        rc = add_kid(n, kid, err);
        kid = NULL;
    }
    if (rc) {
        node_free(kid);
        node_free(n);
        return rc;
    }
    *out = n;
    return 0;
}

static int compile_all(const char *path,
                       const bson_iter_t *it,
                       int depth,
                       struct node **out,
                       struct cairn_error *err)
{
    if (!BSON_ITER_HOLDS_ARRAY(it)) {
        return bad(err, "$all needs an array");
    }
    struct node *and_node = node_new(K_AND, NULL);
    if (!and_node) {
        return nomem(err);
    }
    bson_iter_t c;
    int rc = 0;
    int n_elem = 0, n_other = 0;
    if (bson_iter_recurse(it, &c)) {
        while (rc == 0 && bson_iter_next(&c)) {
            struct node *kid = NULL;
            bson_iter_t first;
            bool em = false;
            if (BSON_ITER_HOLDS_DOCUMENT(&c) && bson_iter_recurse(&c, &first) &&
                bson_iter_next(&first) && strcmp(bson_iter_key(&first), "$elemMatch") == 0) {
                em = true;
            }
            if (em) {
                if (n_other) {
                    rc = bad(err, "$all/$elemMatch has to be consistent");
                    break;
                }
                n_elem++;
                rc = compile_elem_match(path, &first, depth, &kid, err);
            } else {
                if (n_elem) {
                    rc = bad(err, "$all/$elemMatch has to be consistent");
                    break;
                }
                n_other++;
                if (is_operator_doc(&c)) {
                    rc = bad(err, "no $ expressions in $all");
                    break;
                }
                rc = compile_equality(path, &c, &kid, err);
            }
            if (rc == 0) {
                rc = add_kid(and_node, kid, err);
            }
        }
    }
    if (rc) {
        node_free(and_node);
        return rc;
    }
    if (and_node->nkids == 0) {
        and_node->kind = K_FALSE; /* $all: [] matches nothing */
    }
    *out = and_node;
    return 0;
}

static int compile_not(const char *path,
                       const bson_iter_t *it,
                       int depth,
                       struct node **out,
                       struct cairn_error *err)
{
    struct node *kid = NULL;
    int rc;
    if (BSON_ITER_HOLDS_REGEX(it)) {
        rc = compile_equality(path, it, &kid, err);
    } else if (BSON_ITER_HOLDS_DOCUMENT(it)) {
        bson_iter_t c;
        if (!bson_iter_recurse(it, &c) || !bson_iter_next(&c)) {
            return bad(err, "$not cannot be empty");
        }
        if (bson_iter_key(&c)[0] != '$') {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue, "unknown operator: %s",
                                     bson_iter_key(&c));
        }
        kid = node_new(K_AND, NULL);
        if (!kid) {
            return nomem(err);
        }
        rc = compile_ops(path, it, depth + 1, kid, err);
    } else {
        return bad(err, "$not needs a regex or a document");
    }
    if (rc) {
        node_free(kid);
        return rc;
    }
    return wrap_not(kid, out, err);
}

/* Compiles the operator document `opdoc` ({$gt: 1, $lt: 5, ...}) for `path`
 * (NULL = value context), adding one node per operator to and_node. */
static int compile_ops(const char *path,
                       const bson_iter_t *opdoc,
                       int depth,
                       struct node *and_node,
                       struct cairn_error *err)
{
    if (depth > MAX_DEPTH) {
        return bad(err, "exceeded maximum query tree depth of 100");
    }
    bson_iter_t c;
    if (!bson_iter_recurse(opdoc, &c)) {
        return bad(err, "invalid operator document");
    }
    /* $regex and $options combine into one node. */
    bson_iter_t rx_it, opt_it;
    bool has_rx = false, has_opt = false;
    while (bson_iter_next(&c)) {
        const char *k = bson_iter_key(&c);
        if (strcmp(k, "$regex") == 0) {
            rx_it = c;
            has_rx = true;
        } else if (strcmp(k, "$options") == 0) {
            opt_it = c;
            has_opt = true;
        }
    }
    if (has_opt && !has_rx) {
        return bad(err, "$options needs a $regex");
    }
    bson_iter_recurse(opdoc, &c);
    while (bson_iter_next(&c)) {
        const char *k = bson_iter_key(&c);
        struct node *kid = NULL;
        int rc = 0;
        const bson_value_t *v = bson_iter_value(&c);
        if (k[0] != '$') {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue, "unknown operator: %s", k);
        }
        if (strcmp(k, "$eq") == 0) {
            rc = make_cmp(path, OP_EQ, v, &kid, err);
        } else if (strcmp(k, "$ne") == 0) {
            if (v->value_type == BSON_TYPE_REGEX) {
                return bad(err, "Can't have regex as arg to $ne.");
            }
            rc = make_cmp(path, OP_EQ, v, &kid, err);
            if (rc == 0) {
                rc = wrap_not(kid, &kid, err);
            }
        } else if (strcmp(k, "$lt") == 0 || strcmp(k, "$lte") == 0 || strcmp(k, "$gt") == 0 ||
                   strcmp(k, "$gte") == 0) {
            enum cmp_op op =
                k[1] == 'l' ? (k[3] == 'e' ? OP_LTE : OP_LT) : (k[3] == 'e' ? OP_GTE : OP_GT);
            if (v->value_type == BSON_TYPE_REGEX) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                         "Can't have RegEx as arg to %s", k);
            }
            rc = make_cmp(path, op, v, &kid, err);
        } else if (strcmp(k, "$in") == 0) {
            rc = compile_in(path, &c, "$in", &kid, err);
        } else if (strcmp(k, "$nin") == 0) {
            rc = compile_in(path, &c, "$nin", &kid, err);
            if (rc == 0) {
                rc = wrap_not(kid, &kid, err);
            }
        } else if (strcmp(k, "$exists") == 0) {
            kid = node_new(K_EXISTS, path);
            if (!kid) {
                return nomem(err);
            }
            if (!value_truthy(v)) {
                rc = wrap_not(kid, &kid, err);
            }
        } else if (strcmp(k, "$type") == 0) {
            rc = compile_type(path, &c, &kid, err);
        } else if (strcmp(k, "$size") == 0) {
            rc = compile_size(path, &c, &kid, err);
        } else if (strcmp(k, "$mod") == 0) {
            rc = compile_mod(path, &c, &kid, err);
        } else if (strcmp(k, "$regex") == 0) {
            const char *pat, *opts = "";
            if (BSON_ITER_HOLDS_REGEX(&rx_it)) {
                pat = bson_iter_regex(&rx_it, &opts);
                if (!opts) {
                    opts = "";
                }
                if (has_opt && opts[0]) {
                    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_RegexOptionsTwice,
                                             "options set in both $regex and $options");
                }
            } else if (BSON_ITER_HOLDS_UTF8(&rx_it)) {
                uint32_t plen;
                pat = bson_iter_utf8(&rx_it, &plen);
                if (strlen(pat) != plen) {
                    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_RegexInvalid,
                                             "Regular expression cannot contain an embedded null "
                                             "byte");
                }
            } else {
                return bad(err, "$regex has to be a string");
            }
            if (has_opt) {
                if (!BSON_ITER_HOLDS_UTF8(&opt_it)) {
                    return bad(err, "$options has to be a string");
                }
                opts = bson_iter_utf8(&opt_it, NULL);
            }
            rc = make_regex(path, pat, opts, &kid, err);
        } else if (strcmp(k, "$options") == 0) {
            continue; /* consumed with $regex */
        } else if (strcmp(k, "$elemMatch") == 0) {
            rc = compile_elem_match(path, &c, depth, &kid, err);
        } else if (strcmp(k, "$all") == 0) {
            rc = compile_all(path, &c, depth, &kid, err);
        } else if (strcmp(k, "$not") == 0) {
            rc = compile_not(path, &c, depth, &kid, err);
        } else if (is_not_supported_path_op(k)) {
            return not_supported(err, k);
        } else {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue, "unknown operator: %s", k);
        }
        if (rc) {
            return rc;
        }
        rc = add_kid(and_node, kid, err);
        if (rc) {
            return rc;
        }
    }
    return 0;
}

static int compile_logical(const char *k,
                           const bson_iter_t *it,
                           int depth,
                           struct node **out,
                           struct cairn_error *err)
{
    if (!BSON_ITER_HOLDS_ARRAY(it)) {
        return bad(err, "$and/$or/$nor must be a nonempty array");
    }
    enum kind kind = strcmp(k, "$and") == 0 ? K_AND : (strcmp(k, "$or") == 0 ? K_OR : K_NOR);
    struct node *n = node_new(kind, NULL);
    if (!n) {
        return nomem(err);
    }
    bson_iter_t c;
    int rc = 0;
    if (bson_iter_recurse(it, &c)) {
        while (rc == 0 && bson_iter_next(&c)) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&c)) {
                rc = bad(err, "$or/$and/$nor entries need to be full objects");
                break;
            }
            uint32_t len;
            const uint8_t *data;
            struct node *kid = NULL;
            bson_iter_document(&c, &len, &data);
            rc = compile_doc(data, len, depth + 1, &kid, err);
            if (rc == 0) {
                rc = add_kid(n, kid, err);
            }
        }
    }
    if (rc == 0 && n->nkids == 0) {
        rc = bad(err, "$and/$or/$nor must be a nonempty array");
    }
    if (rc) {
        node_free(n);
        return rc;
    }
    *out = n;
    return 0;
}

static int compile_doc(const uint8_t *data,
                       uint32_t len,
                       int depth,
                       struct node **out,
                       struct cairn_error *err)
{
    if (depth > MAX_DEPTH) {
        return bad(err, "exceeded maximum query tree depth of 100");
    }
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, data, len)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue, "invalid BSON in query filter");
    }
    struct node *root = node_new(K_AND, NULL);
    if (!root) {
        return nomem(err);
    }
    int rc = 0;
    while (rc == 0 && bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        struct node *kid = NULL;
        if (k[0] == '$') {
            if (strcmp(k, "$and") == 0 || strcmp(k, "$or") == 0 || strcmp(k, "$nor") == 0) {
                rc = compile_logical(k, &it, depth, &kid, err);
            } else if (strcmp(k, "$comment") == 0) {
                continue;
            } else if (strcmp(k, "$alwaysTrue") == 0 || strcmp(k, "$alwaysFalse") == 0) {
                const bson_value_t *v = bson_iter_value(&it);
                if (!qry_is_number(v->value_type) || qry_number_as_double(v) != 1.0) {
                    rc = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                           "%s must be an integer value of 1", k);
                    break;
                }
                kid = node_new(k[7] == 'T' ? K_TRUE : K_FALSE, NULL);
                if (!kid) {
                    rc = nomem(err);
                }
            } else if (strcmp(k, "$where") == 0 || strcmp(k, "$expr") == 0 ||
                       strcmp(k, "$text") == 0 || strcmp(k, "$jsonSchema") == 0 ||
                       strcmp(k, "$sampleRate") == 0) {
                rc = not_supported(err, k);
            } else {
                rc = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                       "unknown top level operator: %s", k);
            }
        } else if (is_operator_doc(&it)) {
            struct node *and_node = node_new(K_AND, NULL);
            if (!and_node) {
                rc = nomem(err);
                break;
            }
            rc = compile_ops(k, &it, depth + 1, and_node, err);
            if (rc) {
                node_free(and_node);
            } else if (and_node->nkids == 1) {
                kid = and_node->kids[0];
                and_node->nkids = 0;
                node_free(and_node);
            } else {
                kid = and_node;
            }
        } else {
            rc = compile_equality(k, &it, &kid, err);
        }
        if (rc == 0) {
            rc = add_kid(root, kid, err);
        }
    }
    if (rc) {
        node_free(root);
        return rc;
    }
    *out = root;
    return 0;
}

/* ---- public API ------------------------------------------------------------ */

int qry_matcher_compile(const bson_t *filter, struct qry_matcher **out, struct cairn_error *err)
{
    struct qry_matcher *m = calloc(1, sizeof *m);
    if (!m) {
        return nomem(err);
    }
    int rc = compile_doc(bson_get_data(filter), filter->len, 0, &m->root, err);
    if (rc) {
        free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int qry_matcher_compile_value(const bson_value_t *spec,
                              struct qry_matcher **out,
                              struct cairn_error *err)
{
    struct qry_matcher *m = calloc(1, sizeof *m);
    if (!m) {
        return nomem(err);
    }
    m->value_mode = true;
    /* Wrap the spec as {"": spec} to reuse the iterator-based compilers. */
    bson_t wrap = BSON_INITIALIZER;
    bson_iter_t it;
    int rc = 0;
    if (!bson_append_value(&wrap, "", 0, spec) || !bson_iter_init(&it, &wrap) ||
        !bson_iter_next(&it)) {
        rc = nomem(err);
    } else if (is_operator_doc(&it)) {
        m->root = node_new(K_AND, NULL);
        if (!m->root) {
            rc = nomem(err);
        } else {
            rc = compile_ops(NULL, &it, 1, m->root, err);
        }
    } else {
        rc = compile_equality(NULL, &it, &m->root, err);
    }
    bson_destroy(&wrap);
    if (rc) {
        node_free(m->root);
        free(m);
        return rc;
    }
    *out = m;
    return 0;
}

bool qry_matcher_match_data(const struct qry_matcher *m, const uint8_t *data, uint32_t len)
{
    return match_doc_data(m->root, data, len);
}

bool qry_matcher_match(const struct qry_matcher *m, const bson_t *doc)
{
    return match_doc_data(m->root, bson_get_data(doc), doc->len);
}

bool qry_matcher_match_value(const struct qry_matcher *m, const bson_value_t *v)
{
    if (m->value_mode) {
        struct ctx c = {NULL, 0, v, true};
        return eval(m->root, &c);
    }
    if (v->value_type != BSON_TYPE_DOCUMENT) {
        return false;
    }
    return match_doc_data(m->root, v->value.v_doc.data, v->value.v_doc.data_len);
}

/* ---- the matched array position (mongod's "elemMatchKey") --------------- */

/* True when leaf `n` matches through `elem`: `rest` NULL means `elem` is the
 * reached value itself, else the rest of the path inside document `elem`. */
static bool leaf_matches_in(const struct node *n, const bson_value_t *elem, const char *rest)
{
    if (rest == NULL) {
        if (single(n, elem)) {
            return true;
        }
        if (expands(n->kind) && elem->value_type == BSON_TYPE_ARRAY) {
            bson_iter_t it;
            if (bson_iter_init_from_data(&it, elem->value.v_doc.data, elem->value.v_doc.data_len)) {
                while (bson_iter_next(&it)) {
                    if (single(n, bson_iter_value(&it))) {
                        return true;
                    }
                }
            }
        }
        return false;
    }
    if (elem->value_type != BSON_TYPE_DOCUMENT) {
        return false;
    }
    struct visit_arg va = {n, false};
    qry_path_walk(elem->value.v_doc.data, elem->value.v_doc.data_len, rest, expands(n->kind),
                  visit_cb, &va);
    return va.matched;
}

/* A canonical array index component p[0..len), or -1. */
static long index_component(const char *p, size_t len)
{
    long v = 0;
    if (len == 0 || len > 9 || (len > 1 && p[0] == '0')) {
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return -1;
        }
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

/* For a leaf that matched `data`: the index, in the first array met along
 * its path, of the element it matched through; -1 when no array is on the
 * path or only an array as a whole matched. Elements are tried in order,
 * as mongod's element iterator yields them. */
static long leaf_position(const struct node *n, const uint8_t *data, uint32_t len)
{
    const char *p = n->path;
    bson_iter_t it, child;

    if (!bson_iter_init_from_data(&it, data, len)) {
        return -1;
    }
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t clen = dot ? (size_t)(dot - p) : strlen(p);
        if (!bson_iter_find_w_len(&it, p, (int)clen)) {
            return -1;
        }
        const bson_value_t *v = bson_iter_value(&it);
        if (v->value_type == BSON_TYPE_DOCUMENT && dot) {
            if (!bson_iter_recurse(&it, &child)) {
                return -1;
            }
            it = child;
            p = dot + 1;
            continue;
        }
        if (v->value_type != BSON_TYPE_ARRAY || !bson_iter_recurse(&it, &child)) {
            return -1;
        }
        long i = 0;
        if (!dot) {
            if (n->kind == K_ELEM_OBJ || n->kind == K_ELEM_VAL) {
                return elem_match_index(n, v);
            }
            if (!expands(n->kind) && n->kind != K_EXISTS) {
                return -1;
            }
            for (; bson_iter_next(&child); i++) {
                if (single(n, bson_iter_value(&child))) {
                    return i;
                }
            }
            return -1;
        }
        const char *rest = dot + 1;
        const char *rdot = strchr(rest, '.');
        long want = index_component(rest, rdot ? (size_t)(rdot - rest) : strlen(rest));
        for (; bson_iter_next(&child); i++) {
            const bson_value_t *ev = bson_iter_value(&child);
            if (i == want && leaf_matches_in(n, ev, rdot ? rdot + 1 : NULL)) {
                return i;
            }
            if (ev->value_type == BSON_TYPE_DOCUMENT && leaf_matches_in(n, ev, rest)) {
                return i;
            }
        }
        return -1;
    }
}

/* eval() in document context that also reports the matched array position:
 * in an $and the last child that reports one wins (as mongod's MatchDetails);
 * $or (of more than one clause), $nor and $not report none. */
static bool eval_pos(const struct node *n, const uint8_t *data, uint32_t len, long *pos)
{
    struct ctx c = {data, len, NULL, false};

    switch (n->kind) {
        case K_AND:
            for (size_t i = 0; i < n->nkids; i++) {
                long kp = -1;
                if (!eval_pos(n->kids[i], data, len, &kp)) {
                    return false;
                }
                if (kp >= 0) {
                    *pos = kp;
                }
            }
            return true;
        case K_OR:
            if (n->nkids == 1) {
                return eval_pos(n->kids[0], data, len, pos);
            }
            return eval(n, &c);
        case K_NOR:
        case K_NOT:
        case K_TRUE:
        case K_FALSE:
            return eval(n, &c);
        default:
            if (!eval_leaf(n, &c)) {
                return false;
            }
            if (n->path) {
                long lp = leaf_position(n, data, len);
                if (lp >= 0) {
                    *pos = lp;
                }
            }
            return true;
    }
}

bool qry_matcher_match_pos(const struct qry_matcher *m, const bson_t *doc, long *pos)
{
    *pos = -1;
    if (m->value_mode) {
        return false;
    }
    return eval_pos(m->root, bson_get_data(doc), doc->len, pos);
}

static bool find_id_eq(const struct node *n, bson_value_t *id)
{
    if (n->kind == K_AND) {
        for (size_t i = 0; i < n->nkids; i++) {
            if (find_id_eq(n->kids[i], id)) {
                return true;
            }
        }
        return false;
    }
    if (n->kind == K_CMP && n->op == OP_EQ && n->path && strcmp(n->path, "_id") == 0) {
        bson_type_t t = n->val.value_type;
        if (t == BSON_TYPE_ARRAY || t == BSON_TYPE_REGEX || t == BSON_TYPE_UNDEFINED) {
            return false;
        }
        *id = n->val;
        return true;
    }
    return false;
}

bool qry_matcher_id_equality(const struct qry_matcher *m, bson_value_t *id)
{
    if (m->value_mode) {
        return false;
    }
    return find_id_eq(m->root, id);
}

void qry_matcher_free(struct qry_matcher *m)
{
    if (!m) {
        return;
    }
    node_free(m->root);
    free(m);
}
