/*
 * matcher_int.h: the private interface between the files of the query
 * matcher (qry_matcher_* in query.h and query_int.h): the compiled filter,
 * a tree of struct node. Not for use outside src/query.
 *
 *   matcher.c        compiling a filter into the tree; freeing it;
 *                    qry_matcher_id_equality
 *   matcher_eval.c   matching a document or a value against the tree, and
 *                    the matched array position
 *   matcher_regex.c  $regex: the PCRE-to-POSIX translation and its guards,
 *                    compiling and running one regex
 */
#ifndef CAIRN_QUERY_MATCHER_INT_H
#define CAIRN_QUERY_MATCHER_INT_H

#include <bson/bson.h>
#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cairn/cairn.h"
#include "query/query.h"
#include "query/valueset.h"

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
    struct qry_valueset inset; /* K_IN values but regexes (owned copies) */
    bool in_null;              /* K_IN: a null or undefined among them */
    bool exists;
    uint32_t type_mask;
    int64_t n, divisor, remainder;
};

struct qry_matcher
{
    struct node *root;
    bool value_mode; /* compiled by qry_matcher_compile_value */
};

/* ---- matcher.c ---------------------------------------------------------- */

/* Sets `err` to "out of memory compiling query filter" (CAIRN_ENOMEM) and
 * returns its code. */
int mt_nomem(struct cairn_error *err);

/* ---- matcher_regex.c ---------------------------------------------------- */

/* Compiles `pattern` with `options` (NULL = none; the letters i, m, s, x,
 * u) and adds it to n->rxs. Errors (in err, code returned): CAIRN_EINVAL
 * with mongod's code for a bad option or a pattern that does not compile
 * or is refused (too large, stacked quantifiers, back-references),
 * CAIRN_ENOMEM. */
int mt_node_add_rx(struct node *n,
                   const char *pattern,
                   const char *options,
                   struct cairn_error *err);

/* True when `v` matches `r`: a string or symbol the regex finds a match
 * in, or a regex value with the same pattern and options. Reentrant. */
bool mt_rx_match_value(const struct rx *r, const bson_value_t *v);

#endif /* CAIRN_QUERY_MATCHER_INT_H */
