/*
 * test_matcher.c: unit tests of filter matching (matcher*.c) and the
 * array-aware path walk (path.c): a table of filter / document / expected
 * result, a table of filters that must fail to compile with the MongoDB
 * error code and message, _id point-lookup detection and value matchers.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query/query.h"
#include "query/query_int.h"

struct match_case
{
    const char *filter;
    const char *doc;
    bool want;
};

/* Filters and documents in relaxed/canonical extended JSON. */
static const struct match_case match_cases[] = {
    /* implicit equality */
    {"{}", "{\"a\": 1}", true},
    {"{\"a\": 5}", "{\"a\": 5}", true},
    {"{\"a\": 5}", "{\"a\": 6}", false},
    {"{\"a\": 5}", "{\"a\": 5.0}", true},
    {"{\"a\": 5}", "{\"a\": {\"$numberLong\": \"5\"}}", true},
    {"{\"a\": 5}", "{\"a\": {\"$numberDecimal\": \"5\"}}", true},
    {"{\"a\": 5}", "{\"a\": \"5\"}", false},
    {"{\"a\": 5}", "{\"b\": 5}", false},
    {"{\"a\": 5}", "{\"a\": [1, 5]}", true},
    {"{\"a\": 5}", "{\"a\": [1, 6]}", false},
    {"{\"a\": 5}", "{\"a\": [[5]]}", false},
    {"{\"a\": [1, 5]}", "{\"a\": [1, 5]}", true},
    {"{\"a\": [1, 5]}", "{\"a\": [5, 1]}", false},
    {"{\"a\": [1, 5]}", "{\"a\": [[1, 5], 2]}", true},
    {"{\"a\": [1, 5]}", "{\"a\": 1}", false},
    {"{\"a\": []}", "{\"a\": []}", true},
    {"{\"a\": []}", "{\"a\": [[]]}", true},
    {"{\"a\": []}", "{\"a\": 1}", false},
    {"{\"a\": \"x\", \"b\": 2}", "{\"a\": \"x\", \"b\": 2}", true},
    {"{\"a\": \"x\", \"b\": 2}", "{\"a\": \"x\", \"b\": 3}", false},
    {"{\"a\": {\"b\": 1}}", "{\"a\": {\"b\": 1}}", true},
    {"{\"a\": {\"b\": 1}}", "{\"a\": {\"b\": 1, \"c\": 2}}", false},
    {"{\"a\": {\"b\": 1, \"c\": 2}}", "{\"a\": {\"c\": 2, \"b\": 1}}", false},
    {"{\"a\": {\"b\": 1}}", "{\"a\": [{\"b\": 1}]}", true},
    {"{\"a\": true}", "{\"a\": true}", true},
    {"{\"a\": true}", "{\"a\": 1}", false},
    {"{\"_id\": {\"$oid\": \"5f0000000000000000000001\"}}",
     "{\"_id\": {\"$oid\": \"5f0000000000000000000001\"}}", true},
    {"{\"_id\": {\"$oid\": \"5f0000000000000000000001\"}}",
     "{\"_id\": {\"$oid\": \"5f0000000000000000000002\"}}", false},
    {"{\"d\": {\"$date\": \"2020-01-01T00:00:00Z\"}}",
     "{\"d\": {\"$date\": \"2020-01-01T00:00:00Z\"}}", true},
    {"{\"a\": {\"$ref\": \"c\", \"$id\": 1}}", "{\"a\": {\"$ref\": \"c\", \"$id\": 1}}", true},
    /* null and missing */
    {"{\"a\": null}", "{\"a\": null}", true},
    {"{\"a\": null}", "{}", true},
    {"{\"a\": null}", "{\"a\": 0}", false},
    {"{\"a\": null}", "{\"a\": {\"$undefined\": true}}", true},
    {"{\"a\": null}", "{\"a\": [1, null]}", true},
    {"{\"a\": null}", "{\"a\": [1]}", false},
    {"{\"a.b\": null}", "{\"a\": 1}", true},
    {"{\"a.b\": null}", "{\"a\": {\"b\": 2}}", false},
    {"{\"a.b\": null}", "{\"a\": [{\"b\": 1}, {\"c\": 1}]}", true},
    {"{\"a.b\": null}", "{\"a\": [{\"b\": 1}]}", false},
    {"{\"a\": {\"$eq\": null}}", "{}", true},
    {"{\"a\": {\"$gte\": null}}", "{}", true},
    {"{\"a\": {\"$lte\": null}}", "{\"a\": null}", true},
    {"{\"a\": {\"$gt\": null}}", "{\"a\": null}", false},
    {"{\"a\": {\"$lt\": null}}", "{}", false},
    {"{\"a\": {\"$gt\": null}}", "{\"a\": 5}", false},
    {"{\"a\": {\"$ne\": null}}", "{\"a\": 5}", true},
    {"{\"a\": {\"$ne\": null}}", "{}", false},
    {"{\"a\": {\"$ne\": null}}", "{\"a\": null}", false},
    {"{\"a\": {\"$in\": [null]}}", "{}", true},
    {"{\"a\": {\"$nin\": [null]}}", "{}", false},
    {"{\"a\": {\"$nin\": [null]}}", "{\"a\": 3}", true},
    /* dotted paths */
    {"{\"a.b\": 1}", "{\"a\": {\"b\": 1}}", true},
    {"{\"a.b\": 1}", "{\"a\": {\"b\": 2}}", false},
    {"{\"a.b\": 1}", "{\"a\": [{\"b\": 2}, {\"b\": 1}]}", true},
    {"{\"a.b\": 1}", "{\"a\": [{\"b\": 2}, {\"b\": 3}]}", false},
    {"{\"a.b\": 1}", "{\"a\": [{\"b\": [0, 1]}]}", true},
    {"{\"a.b\": 1}", "{\"a\": [[{\"b\": 1}]]}", false},
    {"{\"a.b\": 1}", "{\"a\": [1, {\"b\": 1}]}", true},
    {"{\"a.b.c\": 1}", "{\"a\": [{\"b\": [{\"c\": 0}, {\"c\": 1}]}]}", true},
    {"{\"a.b.c\": 1}", "{\"a\": {\"b\": {\"c\": 1}}}", true},
    {"{\"a.b.c\": 1}", "{\"a\": {\"b\": 1}}", false},
    {"{\"a.0\": 5}", "{\"a\": [5, 6]}", true},
    {"{\"a.1\": 5}", "{\"a\": [5, 6]}", false},
    {"{\"a.1\": 6}", "{\"a\": [5, 6]}", true},
    {"{\"a.0\": 5}", "{\"a\": {\"0\": 5}}", true},
    {"{\"a.0\": 5}", "{\"a\": [{\"0\": 5}]}", true},
    {"{\"a.0.b\": 1}", "{\"a\": [{\"b\": 1}, {\"b\": 2}]}", true},
    {"{\"a.1.b\": 1}", "{\"a\": [{\"b\": 1}, {\"b\": 2}]}", false},
    {"{\"a.0\": 1}", "{\"a\": [[1, 2]]}", true},
    {"{\"a.0.1\": 2}", "{\"a\": [[1, 2]]}", true},
    {"{\"a.5\": 1}", "{\"a\": [1]}", false},
    {"{\"a.b\": 1}", "{\"a\": 1}", false},
    /* comparisons and type bracketing */
    {"{\"a\": {\"$gt\": 5}}", "{\"a\": 6}", true},
    {"{\"a\": {\"$gt\": 5}}", "{\"a\": 5}", false},
    {"{\"a\": {\"$gte\": 5}}", "{\"a\": 5}", true},
    {"{\"a\": {\"$lt\": 5}}", "{\"a\": 4.5}", true},
    {"{\"a\": {\"$lte\": 5}}", "{\"a\": {\"$numberLong\": \"5\"}}", true},
    {"{\"a\": {\"$gt\": 5}}", "{\"a\": \"6\"}", false},
    {"{\"a\": {\"$lt\": 5}}", "{\"a\": \"4\"}", false},
    {"{\"a\": {\"$gt\": 5}}", "{\"a\": [1, 7]}", true},
    {"{\"a\": {\"$gt\": 5}}", "{\"a\": [1, 2]}", false},
    {"{\"a\": {\"$gt\": 5}}", "{}", false},
    {"{\"a\": {\"$gt\": 5, \"$lt\": 10}}", "{\"a\": 7}", true},
    {"{\"a\": {\"$gt\": 5, \"$lt\": 10}}", "{\"a\": 12}", false},
    {"{\"a\": {\"$gt\": 5, \"$lt\": 10}}", "{\"a\": [2, 12]}", true},
    {"{\"a\": {\"$gt\": \"b\"}}", "{\"a\": \"c\"}", true},
    {"{\"a\": {\"$gt\": \"b\"}}", "{\"a\": \"B\"}", false},
    {"{\"a\": {\"$gt\": \"b\"}}", "{\"a\": 100}", false},
    {"{\"a\": {\"$gte\": {\"$minKey\": 1}}}", "{\"a\": \"x\"}", true},
    {"{\"a\": {\"$gt\": {\"$minKey\": 1}}}", "{\"a\": null}", true},
    {"{\"a\": {\"$lt\": {\"$maxKey\": 1}}}", "{\"a\": {\"b\": 1}}", true},
    {"{\"a\": {\"$lt\": {\"$minKey\": 1}}}", "{\"a\": 1}", false},
    {"{\"a\": {\"$gt\": {\"$maxKey\": 1}}}", "{\"a\": 1}", false},
    {"{\"a\": {\"$gt\": {\"$date\": \"2020-01-01T00:00:00Z\"}}}",
     "{\"a\": {\"$date\": \"2021-01-01T00:00:00Z\"}}", true},
    {"{\"a\": {\"$gt\": {\"$date\": \"2020-01-01T00:00:00Z\"}}}", "{\"a\": 1e15}", false},
    {"{\"a\": {\"$gt\": [1]}}", "{\"a\": [2]}", true},
    {"{\"a\": {\"$lt\": {\"b\": 2}}}", "{\"a\": {\"b\": 1}}", true},
    {"{\"a\": {\"$gt\": 9007199254740992.0}}", "{\"a\": {\"$numberLong\": \"9007199254740993\"}}",
     true},
    {"{\"a\": {\"$eq\": 9007199254740992.0}}", "{\"a\": {\"$numberLong\": \"9007199254740993\"}}",
     false},
    {"{\"a\": {\"$gt\": false}}", "{\"a\": true}", true},
    /* NaN */
    {"{\"a\": {\"$numberDouble\": \"NaN\"}}", "{\"a\": {\"$numberDouble\": \"NaN\"}}", true},
    {"{\"a\": {\"$gt\": {\"$numberDouble\": \"NaN\"}}}", "{\"a\": 1}", false},
    {"{\"a\": {\"$lt\": {\"$numberDouble\": \"NaN\"}}}", "{\"a\": 1}", false},
    {"{\"a\": {\"$lt\": 0}}", "{\"a\": {\"$numberDouble\": \"NaN\"}}", false},
    {"{\"a\": {\"$gte\": {\"$numberDouble\": \"NaN\"}}}", "{\"a\": {\"$numberDouble\": \"NaN\"}}",
     true},
    /* $eq / $ne */
    {"{\"a\": {\"$eq\": 1}}", "{\"a\": 1}", true},
    {"{\"a\": {\"$eq\": [1]}}", "{\"a\": [1]}", true},
    {"{\"a\": {\"$eq\": {\"$gt\": 1}}}", "{\"a\": {\"$gt\": 1}}", true},
    {"{\"a\": {\"$eq\": {\"$regularExpression\": {\"pattern\": \"a\", \"options\": \"\"}}}}",
     "{\"a\": \"a\"}", false},
    {"{\"a\": {\"$eq\": {\"$regularExpression\": {\"pattern\": \"a\", \"options\": \"\"}}}}",
     "{\"a\": {\"$regularExpression\": {\"pattern\": \"a\", \"options\": \"\"}}}", true},
    {"{\"a\": {\"$ne\": 1}}", "{\"a\": 2}", true},
    {"{\"a\": {\"$ne\": 1}}", "{\"a\": 1}", false},
    {"{\"a\": {\"$ne\": 1}}", "{}", true},
    {"{\"a\": {\"$ne\": 1}}", "{\"a\": [1, 2]}", false},
    {"{\"a\": {\"$ne\": 1}}", "{\"a\": [2, 3]}", true},
    {"{\"a.b\": {\"$ne\": 1}}", "{\"a\": [{\"b\": 2}, {\"b\": 1}]}", false},
    /* $in / $nin */
    {"{\"a\": {\"$in\": [1, 2]}}", "{\"a\": 2}", true},
    {"{\"a\": {\"$in\": [1, 2]}}", "{\"a\": 3}", false},
    {"{\"a\": {\"$in\": [1, 2]}}", "{\"a\": [3, 2]}", true},
    {"{\"a\": {\"$in\": []}}", "{\"a\": 1}", false},
    {"{\"a\": {\"$in\": [[1, 2]]}}", "{\"a\": [1, 2]}", true},
    {"{\"a\": {\"$in\": [\"x\", 1]}}", "{\"a\": \"x\"}", true},
    {"{\"a\": {\"$in\": [{\"$regularExpression\": {\"pattern\": \"^ab\", \"options\": \"\"}}]}}",
     "{\"a\": \"abc\"}", true},
    {"{\"a\": {\"$in\": [{\"$regularExpression\": {\"pattern\": \"^ab\", \"options\": \"\"}}]}}",
     "{\"a\": \"cab\"}", false},
    {"{\"a\": {\"$in\": [5, {\"$regularExpression\": {\"pattern\": \"^x\", \"options\": "
     "\"i\"}}]}}",
     "{\"a\": [\"y\", \"Xz\"]}", true},
    {"{\"a\": {\"$nin\": [1, 2]}}", "{\"a\": 3}", true},
    {"{\"a\": {\"$nin\": [1, 2]}}", "{\"a\": 1}", false},
    {"{\"a\": {\"$nin\": [1, 2]}}", "{}", true},
    {"{\"a\": {\"$nin\": [1, 2]}}", "{\"a\": [3, 1]}", false},
    {"{\"a\": {\"$nin\": []}}", "{\"a\": 1}", true},
    /* $exists */
    {"{\"a\": {\"$exists\": true}}", "{\"a\": null}", true},
    {"{\"a\": {\"$exists\": true}}", "{}", false},
    {"{\"a\": {\"$exists\": false}}", "{}", true},
    {"{\"a\": {\"$exists\": false}}", "{\"a\": 1}", false},
    {"{\"a\": {\"$exists\": 1}}", "{\"a\": 1}", true},
    {"{\"a\": {\"$exists\": 0}}", "{\"a\": 1}", false},
    {"{\"a.b\": {\"$exists\": true}}", "{\"a\": [{\"c\": 1}, {\"b\": 1}]}", true},
    {"{\"a.b\": {\"$exists\": true}}", "{\"a\": [{\"c\": 1}]}", false},
    {"{\"a.b\": {\"$exists\": false}}", "{\"a\": [{\"c\": 1}]}", true},
    {"{\"a.b\": {\"$exists\": true}}", "{\"a\": [1, 2]}", false},
    {"{\"a.1\": {\"$exists\": true}}", "{\"a\": [1, 2]}", true},
    {"{\"a.2\": {\"$exists\": true}}", "{\"a\": [1, 2]}", false},
    /* $type */
    {"{\"a\": {\"%type\": \"string\"}}", "{\"a\": \"x\"}", true},
    {"{\"a\": {\"%type\": \"string\"}}", "{\"a\": 1}", false},
    {"{\"a\": {\"%type\": 2}}", "{\"a\": \"x\"}", true},
    {"{\"a\": {\"%type\": \"number\"}}", "{\"a\": 1.5}", true},
    {"{\"a\": {\"%type\": \"number\"}}", "{\"a\": {\"$numberLong\": \"1\"}}", true},
    {"{\"a\": {\"%type\": \"number\"}}", "{\"a\": \"1\"}", false},
    {"{\"a\": {\"%type\": \"int\"}}", "{\"a\": 1}", true},
    {"{\"a\": {\"%type\": \"int\"}}", "{\"a\": 1.0}", false},
    {"{\"a\": {\"%type\": \"double\"}}", "{\"a\": 1.0}", true},
    {"{\"a\": {\"%type\": \"long\"}}", "{\"a\": {\"$numberLong\": \"1\"}}", true},
    {"{\"a\": {\"%type\": \"decimal\"}}", "{\"a\": {\"$numberDecimal\": \"1\"}}", true},
    {"{\"a\": {\"%type\": \"bool\"}}", "{\"a\": false}", true},
    {"{\"a\": {\"%type\": \"null\"}}", "{\"a\": null}", true},
    {"{\"a\": {\"%type\": \"null\"}}", "{}", false},
    {"{\"a\": {\"%type\": \"object\"}}", "{\"a\": {}}", true},
    {"{\"a\": {\"%type\": \"array\"}}", "{\"a\": []}", true},
    {"{\"a\": {\"%type\": \"array\"}}", "{\"a\": {}}", false},
    {"{\"a\": {\"%type\": \"string\"}}", "{\"a\": [1, \"x\"]}", true},
    {"{\"a\": {\"%type\": \"objectId\"}}", "{\"a\": {\"$oid\": \"5f0000000000000000000001\"}}",
     true},
    {"{\"a\": {\"%type\": \"date\"}}", "{\"a\": {\"$date\": \"2020-01-01T00:00:00Z\"}}", true},
    {"{\"a\": {\"%type\": \"regex\"}}",
     "{\"a\": {\"$regularExpression\": {\"pattern\": \"a\", \"options\": \"\"}}}", true},
    {"{\"a\": {\"%type\": \"timestamp\"}}", "{\"a\": {\"$timestamp\": {\"t\": 1, \"i\": 1}}}",
     true},
    {"{\"a\": {\"%type\": \"binData\"}}",
     "{\"a\": {\"$binary\": {\"base64\": \"AA==\", \"subType\": \"00\"}}}", true},
    {"{\"a\": {\"%type\": \"minKey\"}}", "{\"a\": {\"$minKey\": 1}}", true},
    {"{\"a\": {\"%type\": -1}}", "{\"a\": {\"$minKey\": 1}}", true},
    {"{\"a\": {\"%type\": 127}}", "{\"a\": {\"$maxKey\": 1}}", true},
    {"{\"a\": {\"%type\": [\"string\", \"int\"]}}", "{\"a\": 3}", true},
    {"{\"a\": {\"%type\": [\"string\", \"int\"]}}", "{\"a\": true}", false},
    {"{\"a\": {\"%type\": 16.0}}", "{\"a\": 3}", true},
    /* $size */
    {"{\"a\": {\"$size\": 2}}", "{\"a\": [1, 2]}", true},
    {"{\"a\": {\"$size\": 2}}", "{\"a\": [1]}", false},
    {"{\"a\": {\"$size\": 0}}", "{\"a\": []}", true},
    {"{\"a\": {\"$size\": 0}}", "{}", false},
    {"{\"a\": {\"$size\": 1}}", "{\"a\": \"x\"}", false},
    {"{\"a\": {\"$size\": 1}}", "{\"a\": [[1, 2]]}", true},
    {"{\"a\": {\"$size\": 2}}", "{\"a\": [[1, 2]]}", false},
    {"{\"a.b\": {\"$size\": 1}}", "{\"a\": [{\"b\": [1]}, {\"b\": [1, 2]}]}", true},
    {"{\"a\": {\"$size\": 2.0}}", "{\"a\": [1, 2]}", true},
    /* $mod */
    {"{\"a\": {\"$mod\": [4, 1]}}", "{\"a\": 5}", true},
    {"{\"a\": {\"$mod\": [4, 1]}}", "{\"a\": 6}", false},
    {"{\"a\": {\"$mod\": [4, 1]}}", "{\"a\": 5.7}", true},
    {"{\"a\": {\"$mod\": [4, -1]}}", "{\"a\": -5}", true},
    {"{\"a\": {\"$mod\": [4, 1]}}", "{\"a\": \"5\"}", false},
    {"{\"a\": {\"$mod\": [-1, 0]}}", "{\"a\": {\"$numberLong\": \"-9223372036854775808\"}}", true},
    {"{\"a\": {\"$mod\": [2, 0]}}", "{\"a\": [1, 3, 4]}", true},
    /* $regex */
    {"{\"a\": {\"%regex\": \"^ab\"}}", "{\"a\": \"abc\"}", true},
    {"{\"a\": {\"%regex\": \"^ab\"}}", "{\"a\": \"cab\"}", false},
    {"{\"a\": {\"%regex\": \"ab\"}}", "{\"a\": \"cab\"}", true},
    {"{\"a\": {\"%regex\": \"^AB\", \"%options\": \"i\"}}", "{\"a\": \"abc\"}", true},
    {"{\"a\": {\"%regex\": \"^AB\"}}", "{\"a\": \"abc\"}", false},
    {"{\"a\": {\"%regex\": {\"$regularExpression\": {\"pattern\": \"^AB\", \"options\": "
     "\"i\"}}}}",
     "{\"a\": \"abc\"}", true},
    {"{\"a\": {\"%regex\": {\"$regularExpression\": {\"pattern\": \"^AB\", \"options\": \"\"}}, "
     "\"%options\": \"i\"}}",
     "{\"a\": \"abc\"}", true},
    {"{\"a\": {\"%regex\": \"^b\", \"%options\": \"m\"}}", "{\"a\": \"a\\nb\"}", true},
    {"{\"a\": {\"%regex\": \"^b\"}}", "{\"a\": \"a\\nb\"}", false},
    {"{\"a\": {\"%regex\": \"a.b\", \"%options\": \"s\"}}", "{\"a\": \"a\\nb\"}", true},
    {"{\"a\": {\"%regex\": \"a.b\"}}", "{\"a\": \"a\\nb\"}", false},
    {"{\"a\": {\"%regex\": \"a.b\", \"%options\": \"m\"}}", "{\"a\": \"a\\nb\"}", false},
    {"{\"a\": {\"%regex\": \"a.b\", \"%options\": \"ms\"}}", "{\"a\": \"a\\nb\"}", true},
    {"{\"a\": {\"%regex\": \"^b$\", \"%options\": \"ms\"}}", "{\"a\": \"a\\nb\"}", true},
    {"{\"a\": {\"%regex\": \"a.c\"}}", "{\"a\": \"abc\"}", true},
    {"{\"a\": {\"%regex\": \"[^x]b\"}}", "{\"a\": \"a\\nb\"}", true},
    {"{\"a\": {\"%regex\": \"a b # comment\", \"%options\": \"x\"}}", "{\"a\": \"ab\"}", true},
    {"{\"a\": {\"%regex\": \"^\\\\d+$\"}}", "{\"a\": \"123\"}", true},
    /* ordinary repeats stay below the regex expansion limit */
    {"{\"a\": {\"%regex\": \"^((ab)+c){2}x{1000}$\"}}", "{\"a\": \"ababcabcxx\"}", false},
    {"{\"a\": {\"%regex\": \"^(((a)+)+b)+$\"}}", "{\"a\": \"aabab\"}", true},
    {"{\"a\": {\"%regex\": \"^[a-z]{1,20}\\\\d{0,5}$\"}}", "{\"a\": \"abc12\"}", true},
    {"{\"a\": {\"%regex\": \"^\\\\d+$\"}}", "{\"a\": \"12a\"}", false},
    {"{\"a\": {\"%regex\": \"^[\\\\d.]+$\"}}", "{\"a\": \"1.5\"}", true},
    {"{\"a\": {\"%regex\": \"^\\\\w+\\\\s\\\\w+$\"}}", "{\"a\": \"hello world\"}", true},
    {"{\"a\": {\"%regex\": \"a\\\\.b\"}}", "{\"a\": \"axb\"}", false},
    {"{\"a\": {\"%regex\": \"a\\\\.b\"}}", "{\"a\": \"a.b\"}", true},
    {"{\"a\": {\"%regex\": \"^a.*?c$\"}}", "{\"a\": \"abbc\"}", true},
    {"{\"a\": {\"%regex\": \"x\"}}", "{\"a\": 5}", false},
    {"{\"a\": {\"%regex\": \"x\"}}", "{}", false},
    {"{\"a\": {\"%regex\": \"^x\"}}", "{\"a\": [\"a\", \"xy\"]}", true},
    {"{\"a\": {\"%regex\": \"^x\"}}", "{\"a\": {\"$symbol\": \"xy\"}}", true},
    {"{\"a\": {\"$regularExpression\": {\"pattern\": \"^x\", \"options\": \"\"}}}",
     "{\"a\": \"xyz\"}", true},
    {"{\"a\": {\"$regularExpression\": {\"pattern\": \"^x\", \"options\": \"\"}}}",
     "{\"a\": \"yz\"}", false},
    {"{\"a\": {\"$regularExpression\": {\"pattern\": \"^x\", \"options\": \"\"}}}",
     "{\"a\": {\"$regularExpression\": {\"pattern\": \"^x\", \"options\": \"\"}}}", true},
    {"{\"a\": {\"$regularExpression\": {\"pattern\": \"^x\", \"options\": \"i\"}}}",
     "{\"a\": \"XY\"}", true},
    /* $elemMatch */
    {"{\"a\": {\"$elemMatch\": {\"$gt\": 1, \"$lt\": 5}}}", "{\"a\": [0, 3, 9]}", true},
    {"{\"a\": {\"$elemMatch\": {\"$gt\": 1, \"$lt\": 5}}}", "{\"a\": [0, 9]}", false},
    {"{\"a\": {\"$gt\": 1, \"$lt\": 5}}", "{\"a\": [0, 9]}", true},
    {"{\"a\": {\"$elemMatch\": {\"$gt\": 1}}}", "{\"a\": 3}", false},
    {"{\"a\": {\"$elemMatch\": {\"b\": 1, \"c\": 2}}}", "{\"a\": [{\"b\": 1, \"c\": 2}]}", true},
    {"{\"a\": {\"$elemMatch\": {\"b\": 1, \"c\": 2}}}",
     "{\"a\": [{\"b\": 1, \"c\": 3}, {\"b\": 2, \"c\": 2}]}", false},
    {"{\"a.b\": 1, \"a.c\": 2}", "{\"a\": [{\"b\": 1, \"c\": 3}, {\"b\": 2, \"c\": 2}]}", true},
    {"{\"a\": {\"$elemMatch\": {\"b\": {\"$gte\": 2}}}}", "{\"a\": [{\"b\": 1}, {\"b\": 3}]}",
     true},
    {"{\"a\": {\"$elemMatch\": {\"b\": 1}}}", "{\"a\": [1, 2]}", false},
    {"{\"a\": {\"$elemMatch\": {\"$or\": [{\"b\": 1}, {\"c\": 1}]}}}", "{\"a\": [{\"c\": 1}]}",
     true},
    {"{\"a\": {\"$elemMatch\": {\"$elemMatch\": {\"$gt\": 5}}}}", "{\"a\": [[1], [6]]}", true},
    {"{\"a\": {\"$elemMatch\": {\"$in\": [7, 8]}}}", "{\"a\": [1, 8]}", true},
    {"{\"a\": {\"$elemMatch\": {\"$not\": {\"$gt\": 5}}}}", "{\"a\": [6, 7]}", false},
    {"{\"a\": {\"$elemMatch\": {\"$not\": {\"$gt\": 5}}}}", "{\"a\": [6, 2]}", true},
    {"{\"a.b\": {\"$elemMatch\": {\"$eq\": 2}}}", "{\"a\": [{\"b\": [1, 2]}]}", true},
    {"{\"a\": {\"$elemMatch\": {}}}", "{\"a\": [{}]}", true},
    {"{\"a\": {\"$elemMatch\": {}}}", "{\"a\": [1]}", false},
    /* $all */
    {"{\"a\": {\"$all\": [1, 2]}}", "{\"a\": [2, 3, 1]}", true},
    {"{\"a\": {\"$all\": [1, 2]}}", "{\"a\": [2, 3]}", false},
    {"{\"a\": {\"$all\": [1]}}", "{\"a\": 1}", true},
    {"{\"a\": {\"$all\": []}}", "{\"a\": []}", false},
    {"{\"a\": {\"$all\": [[1, 2]]}}", "{\"a\": [1, 2]}", true},
    {"{\"a\": {\"$all\": [[1, 2]]}}", "{\"a\": [[1, 2], 3]}", true},
    {"{\"a\": {\"$all\": [{\"$regularExpression\": {\"pattern\": \"^a\", \"options\": \"\"}}, "
     "\"bc\"]}}",
     "{\"a\": [\"ax\", \"bc\"]}", true},
    {"{\"a\": {\"$all\": [{\"$elemMatch\": {\"b\": 1}}, {\"$elemMatch\": {\"c\": 2}}]}}",
     "{\"a\": [{\"b\": 1}, {\"c\": 2}]}", true},
    {"{\"a\": {\"$all\": [{\"$elemMatch\": {\"b\": 1}}, {\"$elemMatch\": {\"c\": 2}}]}}",
     "{\"a\": [{\"b\": 1}]}", false},
    {"{\"a.b\": {\"$all\": [1, 2]}}", "{\"a\": [{\"b\": 1}, {\"b\": 2}]}", true},
    /* $not */
    {"{\"a\": {\"$not\": {\"$gt\": 5}}}", "{\"a\": 3}", true},
    {"{\"a\": {\"$not\": {\"$gt\": 5}}}", "{\"a\": 7}", false},
    {"{\"a\": {\"$not\": {\"$gt\": 5}}}", "{}", true},
    {"{\"a\": {\"$not\": {\"$gt\": 5}}}", "{\"a\": \"x\"}", true},
    {"{\"a\": {\"$not\": {\"$gt\": 5}}}", "{\"a\": [1, 7]}", false},
    {"{\"a\": {\"$not\": {\"$regularExpression\": {\"pattern\": \"^x\", \"options\": \"\"}}}}",
     "{\"a\": \"xy\"}", false},
    {"{\"a\": {\"$not\": {\"$regularExpression\": {\"pattern\": \"^x\", \"options\": \"\"}}}}",
     "{\"a\": \"yx\"}", true},
    {"{\"a\": {\"$not\": {\"%regex\": \"^x\"}}}", "{\"a\": \"yx\"}", true},
    {"{\"a\": {\"$not\": {\"$gt\": 1, \"$lt\": 5}}}", "{\"a\": 3}", false},
    {"{\"a\": {\"$not\": {\"$gt\": 1, \"$lt\": 5}}}", "{\"a\": 6}", true},
    {"{\"a\": {\"$not\": {\"$size\": 1}}}", "{\"a\": [1, 2]}", true},
    /* logical */
    {"{\"$and\": [{\"a\": 1}, {\"b\": 2}]}", "{\"a\": 1, \"b\": 2}", true},
    {"{\"$and\": [{\"a\": 1}, {\"b\": 2}]}", "{\"a\": 1, \"b\": 3}", false},
    {"{\"$or\": [{\"a\": 1}, {\"b\": 2}]}", "{\"a\": 0, \"b\": 2}", true},
    {"{\"$or\": [{\"a\": 1}, {\"b\": 2}]}", "{\"a\": 0, \"b\": 0}", false},
    {"{\"$nor\": [{\"a\": 1}, {\"b\": 2}]}", "{\"a\": 0, \"b\": 0}", true},
    {"{\"$nor\": [{\"a\": 1}, {\"b\": 2}]}", "{\"a\": 1}", false},
    {"{\"$nor\": [{\"a\": 1}]}", "{}", true},
    {"{\"$or\": [{\"a\": {\"$gt\": 5}}, {\"a\": {\"$lt\": 0}}], \"b\": 1}", "{\"a\": -1, \"b\": 1}",
     true},
    {"{\"$or\": [{\"a\": {\"$gt\": 5}}, {\"a\": {\"$lt\": 0}}], \"b\": 1}", "{\"a\": -1, \"b\": 2}",
     false},
    {"{\"$and\": [{\"$or\": [{\"a\": 1}, {\"a\": 2}]}, {\"$or\": [{\"b\": 1}, {\"b\": 2}]}]}",
     "{\"a\": 2, \"b\": 1}", true},
    {"{\"$and\": [{}]}", "{\"a\": 1}", true},
    {"{\"$or\": [{}]}", "{\"a\": 1}", true},
    {"{\"a\": 1, \"$comment\": \"hello\"}", "{\"a\": 1}", true},
    {"{\"$alwaysFalse\": 1}", "{\"a\": 1}", false},
    {"{\"$alwaysTrue\": 1}", "{\"a\": 1}", true},
    /* misc types */
    {"{\"a\": {\"$binary\": {\"base64\": \"AQI=\", \"subType\": \"00\"}}}",
     "{\"a\": {\"$binary\": {\"base64\": \"AQI=\", \"subType\": \"00\"}}}", true},
    {"{\"a\": {\"$binary\": {\"base64\": \"AQI=\", \"subType\": \"00\"}}}",
     "{\"a\": {\"$binary\": {\"base64\": \"AQI=\", \"subType\": \"05\"}}}", false},
    {"{\"a\": {\"$timestamp\": {\"t\": 5, \"i\": 1}}}",
     "{\"a\": {\"$timestamp\": {\"t\": 5, \"i\": 1}}}", true},
    {"{\"a\": {\"$minKey\": 1}}", "{\"a\": {\"$minKey\": 1}}", true},
    {"{\"a\": {\"$minKey\": 1}}", "{}", false},
    {"{\"a\": \"\"}", "{\"a\": \"\"}", true},
    {"{\"a\": \"x\"}", "{\"a\": {\"$symbol\": \"x\"}}", true},
};

struct error_case
{
    const char *filter;
    int mongo_code;
    const char *msg; /* substring of the message */
};

static const struct error_case error_cases[] = {
    {"{\"a\": {\"$foo\": 1}}", 2, "unknown operator: $foo"},
    {"{\"$foo\": 1}", 2, "unknown top level operator: $foo"},
    {"{\"a\": {\"$gt\": 1, \"b\": 1}}", 2, "unknown operator: b"},
    {"{\"$and\": []}", 2, "$and/$or/$nor must be a nonempty array"},
    {"{\"$or\": []}", 2, "$and/$or/$nor must be a nonempty array"},
    {"{\"$nor\": []}", 2, "$and/$or/$nor must be a nonempty array"},
    {"{\"$and\": {\"a\": 1}}", 2, "must be a nonempty array"},
    {"{\"$or\": [1]}", 2, "entries need to be full objects"},
    {"{\"$and\": [{\"a\": {\"$bad\": 1}}]}", 2, "unknown operator: $bad"},
    {"{\"a\": {\"$in\": 1}}", 2, "$in needs an array"},
    {"{\"a\": {\"$nin\": {\"x\": 1}}}", 2, "$nin needs an array"},
    {"{\"a\": {\"$in\": [{\"$gt\": 1}]}}", 2, "cannot nest $ under $in"},
    {"{\"a\": {\"$size\": \"x\"}}", 2, "$size needs a number"},
    {"{\"a\": {\"$size\": -1}}", 2, "may not be negative"},
    {"{\"a\": {\"$size\": 1.5}}", 2, "whole number"},
    {"{\"a\": {\"%type\": \"strang\"}}", 2, "Unknown type name alias: strang"},
    {"{\"a\": {\"%type\": 99}}", 2, "Invalid numerical type code"},
    {"{\"a\": {\"%type\": {}}}", 14, "type must be represented as a number or a string"},
    {"{\"a\": {\"%regex\": 5}}", 2, "$regex has to be a string"},
    {"{\"a\": {\"%options\": \"i\"}}", 2, "$options needs a $regex"},
    {"{\"a\": {\"%regex\": \"a\", \"%options\": 1}}", 2, "$options has to be a string"},
    {"{\"a\": {\"%regex\": {\"$regularExpression\": {\"pattern\": \"a\", \"options\": \"i\"}}, "
     "\"%options\": \"m\"}}",
     51075, "options set in both"},
    {"{\"a\": {\"%regex\": \"a\", \"%options\": \"z\"}}", 51108, "invalid flag"},
    {"{\"a\": {\"%regex\": \"(\"}}", 51091, "Regular expression is invalid"},
    {"{\"a\": {\"%regex\": \"[a\"}}", 51091, "Regular expression is invalid"},
    /* fuzz: glibc regcomp is exponential in nested / stacked '+' (seconds to minutes) */
    {"{\"a\": {\"%regex\": \"Q++++++++++++++++++++++++++++++++\"}}", 51091, "nothing to repeat"},
    {"{\"a\": {\"%regex\": "
     "\"((((((((((((((((((((((((Q)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+\"}}",
     51091, "too large"},
    {"{\"a\": {\"%regex\": \"((a{100}){100}){100}\"}}", 51091, "too large"},
    {"{\"a\": {\"%regex\": \"((a?)*){2000}\"}}", 51091, "too large"},
    {"{\"a\": {\"%regex\": \"((^)+){20}\"}}", 51091, "too large"},
    {"{\"a\": {\"%regex\": \"((^)*){100}\"}}", 51091, "too large"},
    {"{\"a\": {\"%regex\": \"((((^)+)+)+)+\"}}", 51091, "too large"},
    {"{\"a\": {\"%regex\": \"x(^)+++++\"}}", 51091, "nothing to repeat"},
    /* fuzz review: glibc back-references take minutes on kilobyte subjects */
    {"{\"a\": {\"%regex\": \"^(a*)*\\\\1b$\"}}", 51091, "back-references"},
    {"{\"a\": {\"$elemMatch\": 1}}", 2, "$elemMatch needs an Object"},
    {"{\"a\": {\"$all\": 1}}", 2, "$all needs an array"},
    {"{\"a\": {\"$all\": [{\"$elemMatch\": {\"b\": 1}}, 1]}}", 2, "consistent"},
    {"{\"a\": {\"$all\": [{\"$gt\": 1}]}}", 2, "no $ expressions in $all"},
    {"{\"a\": {\"$not\": 5}}", 2, "$not needs a regex or a document"},
    {"{\"a\": {\"$not\": {}}}", 2, "$not cannot be empty"},
    {"{\"a\": {\"$not\": {\"b\": 1}}}", 2, "unknown operator: b"},
    {"{\"a\": {\"$mod\": [0, 1]}}", 2, "divisor cannot be 0"},
    {"{\"a\": {\"$mod\": [1]}}", 2, "not enough elements"},
    {"{\"a\": {\"$mod\": [1, 2, 3]}}", 2, "too many elements"},
    {"{\"a\": {\"$mod\": 4}}", 2, "malformed mod"},
    {"{\"a\": {\"$ne\": {\"$regularExpression\": {\"pattern\": \"a\", \"options\": \"\"}}}}", 2,
     "Can't have regex as arg to $ne"},
    {"{\"a\": {\"$gt\": {\"$regularExpression\": {\"pattern\": \"a\", \"options\": \"\"}}}}", 2,
     "Can't have RegEx"},
    {"{\"a\": {\"$undefined\": true}}", 2, "cannot compare to undefined"},
    {"{\"$where\": \"this.a == 1\"}", 238, "$where is not supported"},
    {"{\"$expr\": {\"$eq\": [\"$a\", 1]}}", 238, "$expr is not supported"},
    {"{\"$text\": {\"$search\": \"x\"}}", 238, "$text is not supported"},
    {"{\"a\": {\"$near\": [0, 0]}}", 238, "$near is not supported"},
    {"{\"a\": {\"$geoWithin\": {}}}", 238, "not supported"},
    {"{\"$alwaysTrue\": 2}", 2, "$alwaysTrue must be an integer value of 1"},
};

/* Copies `src` into `dst`, renaming keys that start with '%' to start with
 * '$' (libbson's JSON parser reads "$type", "$regex" and "$options" as
 * legacy extended JSON, so the tables spell those operators "%type"...). */
static void fix_keys(const bson_t *src, bson_t *dst)
{
    bson_iter_t it;
    ck_assert(bson_iter_init(&it, src));
    while (bson_iter_next(&it)) {
        char key[64];
        snprintf(key, sizeof key, "%s", bson_iter_key(&it));
        if (key[0] == '%') {
            key[0] = '$';
        }
        if (BSON_ITER_HOLDS_DOCUMENT(&it) || BSON_ITER_HOLDS_ARRAY(&it)) {
            const uint8_t *data;
            uint32_t len;
            bson_t sub, child;
            bool arr = BSON_ITER_HOLDS_ARRAY(&it);
            if (arr) {
                bson_iter_array(&it, &len, &data);
                bson_append_array_begin(dst, key, -1, &child);
            } else {
                bson_iter_document(&it, &len, &data);
                bson_append_document_begin(dst, key, -1, &child);
            }
            ck_assert(bson_init_static(&sub, data, len));
            fix_keys(&sub, &child);
            if (arr) {
                bson_append_array_end(dst, &child);
            } else {
                bson_append_document_end(dst, &child);
            }
        } else {
            bson_append_value(dst, key, -1, bson_iter_value(&it));
        }
    }
}

static bson_t *from_json(const char *json)
{
    bson_error_t e;
    bson_t *b = bson_new_from_json((const uint8_t *)json, -1, &e);
    ck_assert_msg(b != NULL, "bad JSON %s: %s", json, e.message);
    bson_t *out = bson_new();
    fix_keys(b, out);
    bson_destroy(b);
    return out;
}

START_TEST(test_match_table)
{
    const struct match_case *c = &match_cases[_i];
    bson_t *f = from_json(c->filter);
    bson_t *d = from_json(c->doc);
    struct qry_matcher *m = NULL;
    struct cairn_error err = {0};
    int rc = qry_matcher_compile(f, &m, &err);
    ck_assert_msg(rc == 0, "compile %s: %s", c->filter, err.msg);
    bool got = qry_matcher_match(m, d);
    ck_assert_msg(got == c->want, "filter %s on %s: got %d, want %d", c->filter, c->doc, got,
                  c->want);
    qry_matcher_free(m);
    bson_destroy(f);
    bson_destroy(d);
}
END_TEST

START_TEST(test_error_table)
{
    const struct error_case *c = &error_cases[_i];
    bson_t *f = from_json(c->filter);
    struct qry_matcher *m = NULL;
    struct cairn_error err = {0};
    int rc = qry_matcher_compile(f, &m, &err);
    ck_assert_msg(rc != 0, "compile %s should fail", c->filter);
    ck_assert_ptr_null(m);
    ck_assert_msg(err.mongo_code == c->mongo_code, "%s: code %d, want %d (%s)", c->filter,
                  err.mongo_code, c->mongo_code, err.msg);
    ck_assert_msg(strstr(err.msg, c->msg) != NULL, "%s: message '%s' lacks '%s'", c->filter,
                  err.msg, c->msg);
    bson_destroy(f);
}
END_TEST

START_TEST(test_id_equality)
{
    static const struct
    {
        const char *filter;
        const char *id; /* JSON of the expected id, NULL = none */
    } cases[] = {
        {"{\"_id\": 5}", "5"},
        {"{\"_id\": \"x\", \"a\": 1}", "\"x\""},
        {"{\"_id\": {\"$eq\": {\"$oid\": \"5f0000000000000000000001\"}}}",
         "{\"$oid\": \"5f0000000000000000000001\"}"},
        {"{\"$and\": [{\"a\": 1}, {\"_id\": {\"k\": 1}}]}", "{\"k\": 1}"},
        {"{\"_id\": {\"$gt\": 5}}", NULL},
        {"{\"_id\": {\"$in\": [1, 2]}}", NULL},
        {"{\"$or\": [{\"_id\": 1}, {\"_id\": 2}]}", NULL},
        {"{\"_id\": [1, 2]}", NULL},
        {"{\"_id\": {\"$regularExpression\": {\"pattern\": \"a\", \"options\": \"\"}}}", NULL},
        {"{\"a\": 1}", NULL},
        {"{\"_id.x\": 1}", NULL},
        {"{\"_id\": {\"$ne\": 1}}", NULL},
        {"{}", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bson_t *f = from_json(cases[i].filter);
        struct qry_matcher *m = NULL;
        struct cairn_error err = {0};
        ck_assert_int_eq(qry_matcher_compile(f, &m, &err), 0);
        bson_value_t id;
        bool got = qry_matcher_id_equality(m, &id);
        ck_assert_msg(got == (cases[i].id != NULL), "id_equality(%s)", cases[i].filter);
        if (got) {
            char buf[256];
            snprintf(buf, sizeof buf, "{\"v\": %s}", cases[i].id);
            bson_t *w = from_json(buf);
            bson_iter_t it;
            ck_assert(bson_iter_init_find(&it, w, "v"));
            ck_assert_msg(qry_cmp(&id, bson_iter_value(&it)) == 0, "id of %s", cases[i].filter);
            ck_assert_int_eq(id.value_type, bson_iter_type(&it));
            bson_destroy(w);
        }
        qry_matcher_free(m);
        bson_destroy(f);
    }
}
END_TEST

/* Value matchers (for $pull-like uses). */
START_TEST(test_value_matcher)
{
    static const struct
    {
        const char *spec, *value;
        bool want;
    } cases[] = {
        {"{\"$gte\": 6}", "7", true},
        {"{\"$gte\": 6}", "5", false},
        {"{\"$gte\": 6}", "[1, 7]", true},
        {"{\"$in\": [\"a\", \"b\"]}", "\"b\"", true},
        {"5", "5", true},
        {"5", "5.0", true},
        {"5", "6", false},
        {"{\"a\": 1}", "{\"a\": 1}", true},
        {"{\"$regularExpression\": {\"pattern\": \"^a\", \"options\": \"\"}}", "\"abc\"", true},
        {"{\"$regularExpression\": {\"pattern\": \"^a\", \"options\": \"\"}}", "\"bc\"", false},
        {"{\"$elemMatch\": {\"$gt\": 2}}", "[1, 3]", true},
        {"{\"$exists\": true}", "1", true},
        {"{\"%type\": \"string\"}", "1", false},
        {"{\"$not\": {\"$gt\": 2}}", "1", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[256];
        snprintf(buf, sizeof buf, "{\"s\": %s, \"v\": %s}", cases[i].spec, cases[i].value);
        bson_t *d = from_json(buf);
        bson_iter_t s, v;
        ck_assert(bson_iter_init_find(&s, d, "s"));
        ck_assert(bson_iter_init_find(&v, d, "v"));
        struct qry_matcher *m = NULL;
        struct cairn_error err = {0};
        ck_assert_msg(qry_matcher_compile_value(bson_iter_value(&s), &m, &err) == 0, "%s: %s",
                      cases[i].spec, err.msg);
        ck_assert_msg(qry_matcher_match_value(m, bson_iter_value(&v)) == cases[i].want,
                      "spec %s on %s", cases[i].spec, cases[i].value);
        qry_matcher_free(m);
        bson_destroy(d);
    }
    /* a document matcher tests document values as documents */
    bson_t *f = from_json("{\"score\": {\"$gt\": 5}, \"item\": \"B\"}");
    bson_t *d = from_json("{\"x\": {\"score\": 8, \"item\": \"B\", \"z\": 1}, \"y\": 3}");
    struct qry_matcher *m = NULL;
    struct cairn_error err = {0};
    ck_assert_int_eq(qry_matcher_compile(f, &m, &err), 0);
    bson_iter_t it;
    ck_assert(bson_iter_init_find(&it, d, "x"));
    ck_assert(qry_matcher_match_value(m, bson_iter_value(&it)));
    ck_assert(bson_iter_init_find(&it, d, "y"));
    ck_assert(!qry_matcher_match_value(m, bson_iter_value(&it)));
    qry_matcher_free(m);
    bson_destroy(f);
    bson_destroy(d);
}
END_TEST

struct collect
{
    char out[512];
};

static bool collect_cb(void *arg, const bson_iter_t *it, bool array_elem)
{
    struct collect *c = arg;
    char item[64];
    if (!it) {
        snprintf(item, sizeof item, "-");
    } else if (BSON_ITER_HOLDS_INT32(it)) {
        snprintf(item, sizeof item, "%s%d", array_elem ? "e" : "", bson_iter_int32(it));
    } else if (BSON_ITER_HOLDS_ARRAY(it)) {
        snprintf(item, sizeof item, "[]");
    } else {
        snprintf(item, sizeof item, "?");
    }
    if (c->out[0]) {
        strncat(c->out, ",", sizeof c->out - strlen(c->out) - 1);
    }
    strncat(c->out, item, sizeof c->out - strlen(c->out) - 1);
    return false;
}

START_TEST(test_path_walk)
{
    static const struct
    {
        const char *doc, *path;
        bool expand;
        const char *want;
    } cases[] = {
        {"{\"a\": 1}", "a", true, "1"},
        {"{\"a\": 1}", "b", true, "-"},
        {"{\"a\": [1, 2]}", "a", true, "[],e1,e2"},
        {"{\"a\": [1, 2]}", "a", false, "[]"},
        {"{\"a\": [{\"b\": 1}, {\"c\": 1}, {\"b\": [2, 3]}]}", "a.b", true, "1,-,[],e2,e3"},
        {"{\"a\": [1, 2]}", "a.b", true, "-"},
        {"{\"a\": [[1, 2]]}", "a.0", true, "[],e1,e2"},
        {"{\"a\": [5, {\"0\": 6}]}", "a.0", true, "5,6"},
        {"{\"a\": {\"b\": {\"c\": 4}}}", "a.b.c", true, "4"},
        {"{\"a\": 5}", "a.b", true, "-"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bson_t *d = from_json(cases[i].doc);
        struct collect c = {{0}};
        qry_path_walk(bson_get_data(d), d->len, cases[i].path, cases[i].expand, collect_cb, &c);
        ck_assert_msg(strcmp(c.out, cases[i].want) == 0, "walk %s in %s: got %s, want %s",
                      cases[i].path, cases[i].doc, c.out, cases[i].want);
        bson_destroy(d);
    }
}
END_TEST

/* Deeply nested logical operators fail cleanly instead of recursing. */
START_TEST(test_deep_filter)
{
    bson_t *f = from_json("{\"a\": 1}");
    for (int i = 0; i < 300; i++) {
        bson_t arr = BSON_INITIALIZER;
        bson_t *outer = bson_new();
        BSON_APPEND_DOCUMENT(&arr, "0", f);
        BSON_APPEND_ARRAY(outer, "$and", &arr);
        bson_destroy(&arr);
        bson_destroy(f);
        f = outer;
    }
    struct qry_matcher *m = NULL;
    struct cairn_error err = {0};
    ck_assert_int_ne(qry_matcher_compile(f, &m, &err), 0);
    ck_assert_int_eq(err.mongo_code, 2);
    ck_assert_ptr_null(m);
    bson_destroy(f);
}
END_TEST

static Suite *matcher_suite(void)
{
    Suite *s = suite_create("matcher");
    TCase *tc = tcase_create("core");
    tcase_add_loop_test(tc, test_match_table, 0, (int)(sizeof match_cases / sizeof match_cases[0]));
    tcase_add_loop_test(tc, test_error_table, 0, (int)(sizeof error_cases / sizeof error_cases[0]));
    tcase_add_test(tc, test_id_equality);
    tcase_add_test(tc, test_value_matcher);
    tcase_add_test(tc, test_path_walk);
    tcase_add_test(tc, test_deep_filter);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(matcher_suite());
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
