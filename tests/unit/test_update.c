/*
 * test_update.c: table-driven tests of update operators, replacements and
 * upsert seeds (src/query/update.c): results, error codes and messages,
 * the modified flag and numeric type promotion.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query/query.h"
#include "test_json.h"

#define NOW_MS 1700000000123LL

struct ucase
{
    const char *name;
    const char *doc;
    const char *upd;
    bool ins;
    const char *want; /* NULL when an error is expected */
    bool mod;
    int code;        /* expected mongo code when want is NULL */
    const char *msg; /* expected message substring, or NULL */
};

static const struct ucase cases[] = {
    /* $set */
    {"set new", "{'_id':1}", "{'$set':{'a':1}}", false, "{'_id':1,'a':1}", true, 0, NULL},
    {"set same", "{'_id':1,'a':1}", "{'$set':{'a':1}}", false, "{'_id':1,'a':1}", false, 0, NULL},
    {"set type change", "{'_id':1,'a':1}", "{'$set':{'a':1.0}}", false, "{'_id':1,'a':1.0}", true,
     0, NULL},
    {"set keeps order", "{'_id':1,'a':1,'b':2}", "{'$set':{'a':5}}", false, "{'_id':1,'a':5,'b':2}",
     true, 0, NULL},
    {"set dotted creates", "{}", "{'$set':{'a.b.c':1}}", false, "{'a':{'b':{'c':1}}}", true, 0,
     NULL},
    {"set dotted existing", "{'_id':1,'a':{'b':1}}", "{'$set':{'a.c':2}}", false,
     "{'_id':1,'a':{'b':1,'c':2}}", true, 0, NULL},
    {"set inside scalar", "{'_id':1,'a':{'b':1}}", "{'$set':{'a.b.c':1}}", false, NULL, false, 28,
     "Cannot create field 'c' in element {b: 1}"},
    {"set array index", "{'_id':1,'a':[1,2,3]}", "{'$set':{'a.1':9}}", false,
     "{'_id':1,'a':[1,9,3]}", true, 0, NULL},
    {"set past end pads", "{'_id':1,'a':[1]}", "{'$set':{'a.3':9}}", false,
     "{'_id':1,'a':[1,null,null,9]}", true, 0, NULL},
    {"set in array doc", "{'_id':1,'a':[{'b':1},{'b':2}]}", "{'$set':{'a.1.b':5}}", false,
     "{'_id':1,'a':[{'b':1},{'b':5}]}", true, 0, NULL},
    {"set field of array", "{'_id':1,'a':[1,2]}", "{'$set':{'a.x':1}}", false, NULL, false, 28,
     "Cannot create field 'x' in element {a: [ 1, 2 ]}"},
    {"set through null", "{'_id':1,'a':null}", "{'$set':{'a.b':1}}", false, NULL, false, 28,
     "Cannot create field 'b' in element {a: null}"},
    {"set new fields sorted", "{'_id':1}", "{'$set':{'b':1,'a':2}}", false, "{'_id':1,'a':2,'b':1}",
     true, 0, NULL},
    {"set subdocument", "{'_id':1}", "{'$set':{'a':{'x':[1,2]}}}", false,
     "{'_id':1,'a':{'x':[1,2]}}", true, 0, NULL},
    {"set empty is a no-op", "{'_id':1}", "{'$set':{}}", false, "{'_id':1}", false, 0, NULL},
    {"set numeric name in doc", "{'_id':1}", "{'$set':{'a.0':1}}", false, "{'_id':1,'a':{'0':1}}",
     true, 0, NULL},
    {"set nested arrays", "{'_id':1,'a':[[1,2]]}", "{'$set':{'a.0.1':5}}", false,
     "{'_id':1,'a':[[1,5]]}", true, 0, NULL},
    {"set replaces subdoc", "{'_id':1,'a':{'b':1,'c':2}}", "{'$set':{'a':{'d':1}}}", false,
     "{'_id':1,'a':{'d':1}}", true, 0, NULL},
    {"set numeric order", "{'_id':1,'a':[]}", "{'$set':{'a.10':1,'a.2':2}}", false,
     "{'_id':1,'a':[null,null,2,null,null,null,null,null,null,null,1]}", true, 0, NULL},
    {"set _id same", "{'_id':1,'a':1}", "{'$set':{'_id':1}}", false, "{'_id':1,'a':1}", false, 0,
     NULL},
    {"set _id other", "{'_id':1}", "{'$set':{'_id':2}}", false, NULL, false, 66,
     "Performing an update on the path '_id' would modify the immutable field '_id'"},
    {"set _id subfield", "{'_id':{'x':1}}", "{'$set':{'_id.x':2}}", false, NULL, false, 66, NULL},
    {"modifier not a doc", "{'_id':1}", "{'$set':5}", false, NULL, false, 9,
     "Modifiers operate on fields but we found type int instead"},
    {"unknown modifier", "{'_id':1}", "{'$foo':{'a':1}}", false, NULL, false, 9,
     "Unknown modifier: $foo. Expected a valid update modifier or pipeline-style update specified "
     "as an array"},
    {"plain key after modifier", "{'_id':1}", "{'$set':{'a':1},'b':1}", false, NULL, false, 9,
     "Unknown modifier: b"},
    {"conflict prefix", "{'_id':1}", "{'$set':{'a':1},'$inc':{'a.b':1}}", false, NULL, false, 40,
     "Updating the path 'a.b' would create a conflict at 'a'"},
    {"conflict reverse", "{'_id':1}", "{'$set':{'a.b':1,'a':1}}", false, NULL, false, 40,
     "Updating the path 'a' would create a conflict at 'a'"},
    {"conflict equal", "{'_id':1}", "{'$set':{'a':1},'$unset':{'a':1}}", false, NULL, false, 40,
     NULL},
    {"siblings do not conflict", "{'_id':1}", "{'$set':{'a.b':1},'$inc':{'a.c':1}}", false,
     "{'_id':1,'a':{'b':1,'c':1}}", true, 0, NULL},
    {"prefix-like names do not conflict", "{'_id':1}", "{'$set':{'a':1,'ab':2}}", false,
     "{'_id':1,'a':1,'ab':2}", true, 0, NULL},
    {"empty path", "{'_id':1}", "{'$set':{'':1}}", false, NULL, false, 56, NULL},
    {"empty component", "{'_id':1}", "{'$set':{'a..b':1}}", false, NULL, false, 56,
     "contains an empty field name"},
    {"positional without a query match", "{'_id':1}", "{'$set':{'a.$':1}}", false, NULL, false, 2,
     "The positional operator did not find the match needed from the query."},
    {"$set dollar field", "{'_id':1}", "{'$set':{'$x':1}}", false, NULL, false, 52, NULL},

    /* $unset */
    {"unset", "{'_id':1,'a':1,'b':2}", "{'$unset':{'a':''}}", false, "{'_id':1,'b':2}", true, 0,
     NULL},
    {"unset missing", "{'_id':1,'b':2}", "{'$unset':{'a':1}}", false, "{'_id':1,'b':2}", false, 0,
     NULL},
    {"unset dotted", "{'_id':1,'a':{'b':1,'c':2}}", "{'$unset':{'a.b':1}}", false,
     "{'_id':1,'a':{'c':2}}", true, 0, NULL},
    {"unset array elem nulls", "{'_id':1,'a':[1,2,3]}", "{'$unset':{'a.1':1}}", false,
     "{'_id':1,'a':[1,null,3]}", true, 0, NULL},
    {"unset through scalar", "{'_id':1,'a':5}", "{'$unset':{'a.b':1}}", false, "{'_id':1,'a':5}",
     false, 0, NULL},
    {"unset _id", "{'_id':1,'a':5}", "{'$unset':{'_id':1}}", false, NULL, false, 66, NULL},
    {"unset missing intermediate", "{'_id':1}", "{'$unset':{'x.y.z':1}}", false, "{'_id':1}", false,
     0, NULL},

    /* $inc */
    {"inc int", "{'_id':1,'a':1}", "{'$inc':{'a':2}}", false, "{'_id':1,'a':3}", true, 0, NULL},
    {"inc int32 overflow to long", "{'_id':1,'a':2147483647}", "{'$inc':{'a':1}}", false,
     "{'_id':1,'a':{'$numberLong':'2147483648'}}", true, 0, NULL},
    {"inc int32 underflow to long", "{'_id':1,'a':-2147483648}", "{'$inc':{'a':-1}}", false,
     "{'_id':1,'a':{'$numberLong':'-2147483649'}}", true, 0, NULL},
    {"inc int by double", "{'_id':1,'a':1}", "{'$inc':{'a':1.5}}", false, "{'_id':1,'a':2.5}", true,
     0, NULL},
    {"inc long", "{'_id':1,'a':{'$numberLong':'5'}}", "{'$inc':{'a':1}}", false,
     "{'_id':1,'a':{'$numberLong':'6'}}", true, 0, NULL},
    {"inc int by long", "{'_id':1,'a':5}", "{'$inc':{'a':{'$numberLong':'1'}}}", false,
     "{'_id':1,'a':{'$numberLong':'6'}}", true, 0, NULL},
    {"inc double", "{'_id':1,'a':1.5}", "{'$inc':{'a':1}}", false, "{'_id':1,'a':2.5}", true, 0,
     NULL},
    {"inc missing", "{'_id':1}", "{'$inc':{'a':5}}", false, "{'_id':1,'a':5}", true, 0, NULL},
    {"inc missing long", "{'_id':1}", "{'$inc':{'a':{'$numberLong':'5'}}}", false,
     "{'_id':1,'a':{'$numberLong':'5'}}", true, 0, NULL},
    {"inc non-numeric field", "{'_id':1,'a':'x'}", "{'$inc':{'a':1}}", false, NULL, false, 14,
     "Cannot apply $inc to a value of non-numeric type. {_id: 1} has the field 'a' of "
     "non-numeric type string"},
    {"inc non-numeric arg", "{'_id':1}", "{'$inc':{'a':'x'}}", false, NULL, false, 14,
     "Cannot increment with non-numeric argument: {a: \"x\"}"},
    {"inc long overflow", "{'_id':1,'a':{'$numberLong':'9223372036854775807'}}", "{'$inc':{'a':1}}",
     false, NULL, false, 2, "Failed to apply $inc"},
    {"inc by zero", "{'_id':1,'a':1}", "{'$inc':{'a':0}}", false, "{'_id':1,'a':1}", false, 0,
     NULL},
    {"inc dotted", "{'_id':1,'a':{'b':1}}", "{'$inc':{'a.b':2}}", false, "{'_id':1,'a':{'b':3}}",
     true, 0, NULL},
    {"inc null", "{'_id':1,'a':null}", "{'$inc':{'a':1}}", false, NULL, false, 14, NULL},
    {"inc array elem", "{'_id':1,'a':[1,2]}", "{'$inc':{'a.1':10}}", false, "{'_id':1,'a':[1,12]}",
     true, 0, NULL},
    {"inc two fields", "{'_id':1,'a':1,'b':1}", "{'$inc':{'a':1,'b':-1}}", false,
     "{'_id':1,'a':2,'b':0}", true, 0, NULL},

    /* $mul */
    {"mul int", "{'_id':1,'a':3}", "{'$mul':{'a':4}}", false, "{'_id':1,'a':12}", true, 0, NULL},
    {"mul int overflow to long", "{'_id':1,'a':65536}", "{'$mul':{'a':65536}}", false,
     "{'_id':1,'a':{'$numberLong':'4294967296'}}", true, 0, NULL},
    {"mul missing int", "{'_id':1}", "{'$mul':{'a':5}}", false, "{'_id':1,'a':0}", true, 0, NULL},
    {"mul missing double", "{'_id':1}", "{'$mul':{'a':2.5}}", false, "{'_id':1,'a':0.0}", true, 0,
     NULL},
    {"mul missing long", "{'_id':1}", "{'$mul':{'a':{'$numberLong':'5'}}}", false,
     "{'_id':1,'a':{'$numberLong':'0'}}", true, 0, NULL},
    {"mul by double", "{'_id':1,'a':2}", "{'$mul':{'a':1.5}}", false, "{'_id':1,'a':3.0}", true, 0,
     NULL},
    {"mul non-numeric arg", "{'_id':1}", "{'$mul':{'a':'x'}}", false, NULL, false, 14,
     "Cannot multiply with non-numeric argument"},
    {"mul long overflow", "{'_id':1,'a':{'$numberLong':'4611686018427387904'}}", "{'$mul':{'a':4}}",
     false, NULL, false, 2, NULL},
    {"mul non-numeric field", "{'_id':1,'a':'s'}", "{'$mul':{'a':2}}", false, NULL, false, 14,
     "Cannot apply $mul to a value of non-numeric type"},
    {"mul by one", "{'_id':1,'a':7}", "{'$mul':{'a':1}}", false, "{'_id':1,'a':7}", false, 0, NULL},

    /* $min / $max */
    {"min lower", "{'_id':1,'a':5}", "{'$min':{'a':3}}", false, "{'_id':1,'a':3}", true, 0, NULL},
    {"min higher", "{'_id':1,'a':5}", "{'$min':{'a':7}}", false, "{'_id':1,'a':5}", false, 0, NULL},
    {"max higher", "{'_id':1,'a':5}", "{'$max':{'a':7}}", false, "{'_id':1,'a':7}", true, 0, NULL},
    {"max missing", "{'_id':1}", "{'$max':{'a':1}}", false, "{'_id':1,'a':1}", true, 0, NULL},
    {"min string above number", "{'_id':1,'a':5}", "{'$min':{'a':'x'}}", false, "{'_id':1,'a':5}",
     false, 0, NULL},
    {"max string above number", "{'_id':1,'a':5}", "{'$max':{'a':'x'}}", false, "{'_id':1,'a':'x'}",
     true, 0, NULL},
    {"min equal other type", "{'_id':1,'a':5}", "{'$min':{'a':5.0}}", false, "{'_id':1,'a':5}",
     false, 0, NULL},
    {"min null below numbers", "{'_id':1,'a':null}", "{'$min':{'a':1}}", false,
     "{'_id':1,'a':null}", false, 0, NULL},
    {"max dotted create", "{'_id':1}", "{'$max':{'a.b':2}}", false, "{'_id':1,'a':{'b':2}}", true,
     0, NULL},

    /* $rename */
    {"rename", "{'_id':1,'a':1,'b':2}", "{'$rename':{'a':'c'}}", false, "{'_id':1,'b':2,'c':1}",
     true, 0, NULL},
    {"rename missing", "{'_id':1,'b':2}", "{'$rename':{'a':'c'}}", false, "{'_id':1,'b':2}", false,
     0, NULL},
    {"rename over existing", "{'_id':1,'a':1,'b':2}", "{'$rename':{'a':'b'}}", false,
     "{'_id':1,'b':1}", true, 0, NULL},
    {"rename same", "{'_id':1}", "{'$rename':{'a':'a'}}", false, NULL, false, 2,
     "The source and target field for $rename must differ"},
    {"rename same path", "{'_id':1}", "{'$rename':{'a':'a.b'}}", false, NULL, false, 2,
     "must not be on the same path"},
    {"rename non-string", "{'_id':1}", "{'$rename':{'a':1}}", false, NULL, false, 2,
     "The 'to' field for $rename must be a string: a: 1"},
    {"rename out of subdoc", "{'_id':1,'a':{'b':1}}", "{'$rename':{'a.b':'c'}}", false,
     "{'_id':1,'a':{},'c':1}", true, 0, NULL},
    {"rename from array", "{'_id':1,'a':[{'b':1}]}", "{'$rename':{'a.0.b':'c'}}", false, NULL,
     false, 2, "The source field cannot be an array element"},
    {"rename into array", "{'_id':1,'a':1,'b':[1]}", "{'$rename':{'a':'b.0'}}", false, NULL, false,
     2, "The destination field cannot be an array element"},
    {"rename into new subdoc", "{'_id':1,'a':1}", "{'$rename':{'a':'x.y'}}", false,
     "{'_id':1,'x':{'y':1}}", true, 0, NULL},
    {"rename conflicts with set", "{'_id':1}", "{'$rename':{'a':'b'},'$set':{'b':1}}", false, NULL,
     false, 40, NULL},
    {"rename into scalar", "{'_id':1,'a':1,'b':5}", "{'$rename':{'a':'b.c'}}", false, NULL, false,
     28, NULL},

    /* $push */
    {"push", "{'_id':1,'a':[1]}", "{'$push':{'a':2}}", false, "{'_id':1,'a':[1,2]}", true, 0, NULL},
    {"push missing", "{'_id':1}", "{'$push':{'a':2}}", false, "{'_id':1,'a':[2]}", true, 0, NULL},
    {"push non-array", "{'_id':1,'a':1}", "{'$push':{'a':2}}", false, NULL, false, 2,
     "The field 'a' must be an array but is of type int in document {_id: 1}"},
    {"push array value", "{'_id':1,'a':[]}", "{'$push':{'a':[1,2]}}", false,
     "{'_id':1,'a':[[1,2]]}", true, 0, NULL},
    {"push each", "{'_id':1,'a':[1]}", "{'$push':{'a':{'$each':[2,3]}}}", false,
     "{'_id':1,'a':[1,2,3]}", true, 0, NULL},
    {"push position 0", "{'_id':1,'a':[1]}", "{'$push':{'a':{'$each':[2,3],'$position':0}}}", false,
     "{'_id':1,'a':[2,3,1]}", true, 0, NULL},
    {"push position -1", "{'_id':1,'a':[1,2,3]}", "{'$push':{'a':{'$each':[9],'$position':-1}}}",
     false, "{'_id':1,'a':[1,2,9,3]}", true, 0, NULL},
    {"push position past end", "{'_id':1,'a':[1]}", "{'$push':{'a':{'$each':[9],'$position':10}}}",
     false, "{'_id':1,'a':[1,9]}", true, 0, NULL},
    {"push slice -2", "{'_id':1,'a':[1,2]}", "{'$push':{'a':{'$each':[3],'$slice':-2}}}", false,
     "{'_id':1,'a':[2,3]}", true, 0, NULL},
    {"push slice 2", "{'_id':1,'a':[1,2]}", "{'$push':{'a':{'$each':[3],'$slice':2}}}", false,
     "{'_id':1,'a':[1,2]}", false, 0, NULL},
    {"push slice 0", "{'_id':1,'a':[1,2]}", "{'$push':{'a':{'$each':[3],'$slice':0}}}", false,
     "{'_id':1,'a':[]}", true, 0, NULL},
    {"push sort asc", "{'_id':1,'a':[3,1]}", "{'$push':{'a':{'$each':[2],'$sort':1}}}", false,
     "{'_id':1,'a':[1,2,3]}", true, 0, NULL},
    {"push sort desc", "{'_id':1,'a':[3,1]}", "{'$push':{'a':{'$each':[2],'$sort':-1}}}", false,
     "{'_id':1,'a':[3,2,1]}", true, 0, NULL},
    {"push sort by field", "{'_id':1,'a':[{'x':3},{'x':1}]}",
     "{'$push':{'a':{'$each':[{'x':2}],'$sort':{'x':1}}}}", false,
     "{'_id':1,'a':[{'x':1},{'x':2},{'x':3}]}", true, 0, NULL},
    {"push sort and slice", "{'_id':1,'a':[{'x':3},{'x':1}]}",
     "{'$push':{'a':{'$each':[{'x':2}],'$sort':{'x':-1},'$slice':2}}}", false,
     "{'_id':1,'a':[{'x':3},{'x':2}]}", true, 0, NULL},
    {"push each not array", "{'_id':1}", "{'$push':{'a':{'$each':1}}}", false, NULL, false, 2,
     "The argument to $each in $push must be an array"},
    {"push slice not number", "{'_id':1}", "{'$push':{'a':{'$each':[1],'$slice':'x'}}}", false,
     NULL, false, 2, "$slice"},
    {"push unknown clause", "{'_id':1}", "{'$push':{'a':{'$each':[1],'$foo':1}}}", false, NULL,
     false, 2, "Unrecognized clause in $push: $foo"},
    {"push bad sort", "{'_id':1}", "{'$push':{'a':{'$each':[1],'$sort':2}}}", false, NULL, false, 2,
     "The $sort is invalid"},
    {"push modifier without each", "{'_id':1}", "{'$push':{'a':{'$slice':1}}}", false, NULL, false,
     52, NULL},
    {"push empty each", "{'_id':1,'a':[1]}", "{'$push':{'a':{'$each':[]}}}", false,
     "{'_id':1,'a':[1]}", false, 0, NULL},
    {"push dotted create", "{'_id':1}", "{'$push':{'a.b':1}}", false, "{'_id':1,'a':{'b':[1]}}",
     true, 0, NULL},
    {"push doc value", "{'_id':1,'a':[]}", "{'$push':{'a':{'x':1}}}", false,
     "{'_id':1,'a':[{'x':1}]}", true, 0, NULL},

    /* $addToSet */
    {"addToSet present", "{'_id':1,'a':[1,2]}", "{'$addToSet':{'a':2}}", false,
     "{'_id':1,'a':[1,2]}", false, 0, NULL},
    {"addToSet new", "{'_id':1,'a':[1,2]}", "{'$addToSet':{'a':3}}", false, "{'_id':1,'a':[1,2,3]}",
     true, 0, NULL},
    {"addToSet each dedup", "{'_id':1,'a':[1,2]}", "{'$addToSet':{'a':{'$each':[2,3,3,4]}}}", false,
     "{'_id':1,'a':[1,2,3,4]}", true, 0, NULL},
    {"addToSet missing", "{'_id':1}", "{'$addToSet':{'a':5}}", false, "{'_id':1,'a':[5]}", true, 0,
     NULL},
    {"addToSet non-array", "{'_id':1,'a':'x'}", "{'$addToSet':{'a':1}}", false, NULL, false, 2,
     "Cannot apply $addToSet to non-array field. Field named 'a' has non-array type string"},
    {"addToSet numeric equal", "{'_id':1,'a':[1]}", "{'$addToSet':{'a':1.0}}", false,
     "{'_id':1,'a':[1]}", false, 0, NULL},
    {"addToSet doc present", "{'_id':1,'a':[{'b':1}]}", "{'$addToSet':{'a':{'b':1}}}", false,
     "{'_id':1,'a':[{'b':1}]}", false, 0, NULL},
    {"addToSet doc field order matters", "{'_id':1,'a':[{'b':1,'c':2}]}",
     "{'$addToSet':{'a':{'c':2,'b':1}}}", false, "{'_id':1,'a':[{'b':1,'c':2},{'c':2,'b':1}]}",
     true, 0, NULL},
    {"addToSet each not array", "{'_id':1}", "{'$addToSet':{'a':{'$each':5}}}", false, NULL, false,
     2, NULL},

    /* $pull / $pullAll */
    {"pull value", "{'_id':1,'a':[1,2,3,2]}", "{'$pull':{'a':2}}", false, "{'_id':1,'a':[1,3]}",
     true, 0, NULL},
    {"pull condition", "{'_id':1,'a':[1,2,3]}", "{'$pull':{'a':{'$gte':2}}}", false,
     "{'_id':1,'a':[1]}", true, 0, NULL},
    {"pull doc query", "{'_id':1,'a':[{'b':1,'c':1},{'b':2}]}", "{'$pull':{'a':{'b':1}}}", false,
     "{'_id':1,'a':[{'b':2}]}", true, 0, NULL},
    {"pull doc query operator", "{'_id':1,'a':[{'b':1},{'b':2},{'b':3}]}",
     "{'$pull':{'a':{'b':{'$gt':1}}}}", false, "{'_id':1,'a':[{'b':1}]}", true, 0, NULL},
    {"pull missing", "{'_id':1}", "{'$pull':{'a':1}}", false, "{'_id':1}", false, 0, NULL},
    {"pull non-array", "{'_id':1,'a':1}", "{'$pull':{'a':1}}", false, NULL, false, 2,
     "Cannot apply $pull to a non-array value"},
    {"pull no match", "{'_id':1,'a':[1,2]}", "{'$pull':{'a':5}}", false, "{'_id':1,'a':[1,2]}",
     false, 0, NULL},
    {"pull $in", "{'_id':1,'a':[1,2,3,2]}", "{'$pull':{'a':{'$in':[1,3]}}}", false,
     "{'_id':1,'a':[2,2]}", true, 0, NULL},
    {"pull regex", "{'_id':1,'a':['apple','banana']}",
     "{'$pull':{'a':{'$regularExpression':{'pattern':'^a','options':''}}}}", false,
     "{'_id':1,'a':['banana']}", true, 0, NULL},
    {"pull array value", "{'_id':1,'a':[[1,2],1]}", "{'$pull':{'a':[1,2]}}", false,
     "{'_id':1,'a':[1]}", true, 0, NULL},
    {"pull numeric equality", "{'_id':1,'a':[1,2.0]}", "{'$pull':{'a':2}}", false,
     "{'_id':1,'a':[1]}", true, 0, NULL},
    {"pullAll", "{'_id':1,'a':[1,2,3,1]}", "{'$pullAll':{'a':[1,3]}}", false, "{'_id':1,'a':[2]}",
     true, 0, NULL},
    {"pullAll non-array arg", "{'_id':1}", "{'$pullAll':{'a':1}}", false, NULL, false, 2,
     "$pullAll requires an array argument but was given a int"},
    {"pullAll nothing", "{'_id':1,'a':[1]}", "{'$pullAll':{'a':[5]}}", false, "{'_id':1,'a':[1]}",
     false, 0, NULL},

    /* $pop */
    {"pop last", "{'_id':1,'a':[1,2,3]}", "{'$pop':{'a':1}}", false, "{'_id':1,'a':[1,2]}", true, 0,
     NULL},
    {"pop first", "{'_id':1,'a':[1,2,3]}", "{'$pop':{'a':-1}}", false, "{'_id':1,'a':[2,3]}", true,
     0, NULL},
    {"pop empty", "{'_id':1,'a':[]}", "{'$pop':{'a':1}}", false, "{'_id':1,'a':[]}", false, 0,
     NULL},
    {"pop missing", "{'_id':1}", "{'$pop':{'a':1}}", false, "{'_id':1}", false, 0, NULL},
    {"pop bad arg", "{'_id':1}", "{'$pop':{'a':2}}", false, NULL, false, 9,
     "$pop expects 1 or -1, found: 2"},
    {"pop non-array", "{'_id':1,'a':1}", "{'$pop':{'a':1}}", false, NULL, false, 14,
     "Path 'a' contains an element of non-array type 'int'"},
    {"pop double arg", "{'_id':1,'a':[1,2]}", "{'$pop':{'a':-1.0}}", false, "{'_id':1,'a':[2]}",
     true, 0, NULL},

    /* $currentDate */
    {"currentDate true", "{'_id':1}", "{'$currentDate':{'d':true}}", false,
     "{'_id':1,'d':{'$date':{'$numberLong':'1700000000123'}}}", true, 0, NULL},
    {"currentDate timestamp", "{'_id':1}", "{'$currentDate':{'t':{'$type':'timestamp'}}}", false,
     "{'_id':1,'t':{'$timestamp':{'t':1700000000,'i':1}}}", true, 0, NULL},
    {"currentDate bad arg", "{'_id':1}", "{'$currentDate':{'d':'x'}}", false, NULL, false, 2,
     "is not valid type for $currentDate"},

    /* $setOnInsert */
    {"setOnInsert ignored", "{'_id':1}", "{'$setOnInsert':{'a':1}}", false, "{'_id':1}", false, 0,
     NULL},
    {"setOnInsert inserting", "{'_id':1}", "{'$setOnInsert':{'a':1},'$set':{'b':2}}", true,
     "{'_id':1,'a':1,'b':2}", true, 0, NULL},
    {"setOnInsert _id first", "{'a':1}", "{'$setOnInsert':{'_id':5}}", true, "{'_id':5,'a':1}",
     true, 0, NULL},
    {"setOnInsert conflicts", "{'_id':1}", "{'$setOnInsert':{'a':1},'$set':{'a':2}}", false, NULL,
     false, 40, NULL},

    /* replacement */
    {"replace", "{'_id':1,'a':1}", "{'b':2}", false, "{'_id':1,'b':2}", true, 0, NULL},
    {"replace keeps _id first", "{'_id':1,'a':1}", "{'b':2,'_id':1}", false, "{'_id':1,'b':2}",
     true, 0, NULL},
    {"replace other _id", "{'_id':1,'a':1}", "{'_id':2}", false, NULL, false, 66,
     "After applying the update, the (immutable) field '_id' was found to have been altered to "
     "_id: 2"},
    {"replace identical", "{'_id':1,'a':1}", "{'a':1}", false, "{'_id':1,'a':1}", false, 0, NULL},
    {"replace mixed", "{'_id':1}", "{'a':1,'$set':{'b':1}}", false, NULL, false, 9, NULL},
    {"replace empty", "{'_id':1,'a':1}", "{}", false, "{'_id':1}", true, 0, NULL},
    {"replace without original _id", "{}", "{'a':1,'_id':3}", true, "{'_id':3,'a':1}", true, 0,
     NULL},
};

static void run_case(const struct ucase *c)
{
    bson_t *doc = J(c->doc), *upd = J(c->upd), out;
    struct qry_update *u = NULL;
    struct cairn_error err = {0};
    bool mod = false;
    int rv;

    ck_assert_msg(doc != NULL && upd != NULL, "%s: bad JSON", c->name);
    rv = qry_update_compile(upd, &u, &err);
    if (rv == 0) {
        rv = qry_update_apply(u, doc, c->ins, NOW_MS, &out, &mod, &err);
        if (rv == 0 && c->want != NULL) {
            bson_t *want = J(c->want);
            char *got = bson_as_canonical_extended_json(&out, NULL);
            char *exp = bson_as_canonical_extended_json(want, NULL);
            ck_assert_msg(bson_equal(&out, want), "%s: got %s want %s", c->name, got, exp);
            ck_assert_msg(mod == c->mod, "%s: modified %d want %d", c->name, mod, c->mod);
            bson_free(got);
            bson_free(exp);
            bson_destroy(want);
        } else if (rv == 0) {
            char *got = bson_as_canonical_extended_json(&out, NULL);
            ck_abort_msg("%s: expected error %d, got %s", c->name, c->code, got);
        }
        bson_destroy(&out);
    }
    if (c->want != NULL) {
        ck_assert_msg(rv == 0, "%s: unexpected error %d: %s", c->name, err.mongo_code, err.msg);
    } else {
        ck_assert_msg(rv != 0, "%s: expected an error", c->name);
        ck_assert_msg(err.mongo_code == c->code, "%s: code %d want %d (%s)", c->name,
                      err.mongo_code, c->code, err.msg);
        if (c->msg != NULL) {
            ck_assert_msg(strstr(err.msg, c->msg) != NULL, "%s: message '%s' lacks '%s'", c->name,
                          err.msg, c->msg);
        }
    }
    qry_update_free(u);
    bson_destroy(doc);
    bson_destroy(upd);
}

START_TEST(test_update_table)
{
    run_case(&cases[_i]);
}
END_TEST

START_TEST(test_is_replacement)
{
    bson_t *a = J("{'a':1}"), *b = J("{'$set':{'a':1}}"), *e = J("{}");
    struct qry_update *u;
    struct cairn_error err = {0};

    ck_assert_int_eq(qry_update_compile(a, &u, &err), 0);
    ck_assert(qry_update_is_replacement(u));
    qry_update_free(u);
    ck_assert_int_eq(qry_update_compile(b, &u, &err), 0);
    ck_assert(!qry_update_is_replacement(u));
    qry_update_free(u);
    ck_assert_int_eq(qry_update_compile(e, &u, &err), 0);
    ck_assert(qry_update_is_replacement(u));
    qry_update_free(u);
    bson_destroy(a);
    bson_destroy(b);
    bson_destroy(e);
}
END_TEST

/* A compiled update is reusable: applying twice gives the same result. */
START_TEST(test_update_reuse)
{
    bson_t *upd = J("{'$inc':{'n':1},'$push':{'l':{'$each':[1],'$slice':-2}}}");
    bson_t *doc = J("{'_id':1,'n':1,'l':[7]}"), out1, out2;
    struct qry_update *u;
    struct cairn_error err = {0};
    bool mod;

    ck_assert_int_eq(qry_update_compile(upd, &u, &err), 0);
    ck_assert_int_eq(qry_update_apply(u, doc, false, 0, &out1, &mod, &err), 0);
    ck_assert(mod);
    ck_assert_int_eq(qry_update_apply(u, &out1, false, 0, &out2, &mod, &err), 0);
    {
        bson_t *want = J("{'_id':1,'n':3,'l':[1,1]}");
        ck_assert(bson_equal(&out2, want));
        bson_destroy(want);
    }
    bson_destroy(&out1);
    bson_destroy(&out2);
    qry_update_free(u);
    bson_destroy(upd);
    bson_destroy(doc);
}
END_TEST

struct scase
{
    const char *filter;
    const char *want; /* NULL: error */
    int code;
};

static const struct scase seeds[] = {
    {"{'a':1,'b.c':2,'$and':[{'d':3}]}", "{'a':1,'b':{'c':2},'d':3}", 0},
    {"{'x':{'$eq':5}}", "{'x':5}", 0},
    {"{'x':{'$gt':1}}", "{}", 0},
    {"{'_id':7,'a':1}", "{'_id':7,'a':1}", 0},
    {"{'a':1,'_id':7}", "{'_id':7,'a':1}", 0},
    {"{'$or':[{'a':1}]}", "{'a':1}", 0},
    {"{'$or':[{'a':1},{'b':2}]}", "{}", 0},
    {"{'a':{'$in':[5]}}", "{'a':5}", 0},
    {"{'a':{'$in':[5,6]}}", "{}", 0},
    {"{'a':{'$regularExpression':{'pattern':'x','options':''}}}", "{}", 0},
    {"{'a':{'b':1}}", "{'a':{'b':1}}", 0},
    {"{'a.b':1,'a.c':2}", "{'a':{'b':1,'c':2}}", 0},
    {"{'a':[1,2]}", "{'a':[1,2]}", 0},
    {"{'$nor':[{'a':1}],'b':{'$ne':1}}", "{}", 0},
    {"{'_id':{'$eq':3},'x':{'$eq':1,'$gt':0}}", "{'_id':3,'x':1}", 0},
    {"{'a':1,'a.b':2}", NULL, 54},
    {"{'$and':[{'a':1},{'a':2}]}", NULL, 54},
    {"{}", "{}", 0},
};

START_TEST(test_upsert_seed)
{
    const struct scase *c = &seeds[_i];
    bson_t *f = J(c->filter), out;
    struct cairn_error err = {0};
    int rv = qry_upsert_seed(f, &out, &err);

    if (c->want != NULL) {
        bson_t *want = J(c->want);
        char *got = bson_as_canonical_extended_json(&out, NULL);
        ck_assert_msg(rv == 0, "%s: error %s", c->filter, err.msg);
        ck_assert_msg(bson_equal(&out, want), "%s: got %s want %s", c->filter, got, c->want);
        bson_free(got);
        bson_destroy(want);
    } else {
        ck_assert_msg(rv != 0 && err.mongo_code == c->code, "%s: rv %d code %d", c->filter, rv,
                      err.mongo_code);
    }
    bson_destroy(&out);
    bson_destroy(f);
}
END_TEST

/* Upsert flow: seed, then apply with inserting=true. */
START_TEST(test_upsert_flow)
{
    bson_t *f = J("{'_id':4,'k':'x'}"), *upd = J("{'$inc':{'n':1},'$setOnInsert':{'c':0}}"), seed,
           out;
    struct qry_update *u;
    struct cairn_error err = {0};
    bool mod;
    bson_t *want = J("{'_id':4,'k':'x','c':0,'n':1}");

    ck_assert_int_eq(qry_upsert_seed(f, &seed, &err), 0);
    ck_assert_int_eq(qry_update_compile(upd, &u, &err), 0);
    ck_assert_int_eq(qry_update_apply(u, &seed, true, 0, &out, &mod, &err), 0);
    ck_assert(bson_equal(&out, want));
    bson_destroy(&out);
    bson_destroy(&seed);
    bson_destroy(want);
    qry_update_free(u);
    bson_destroy(f);
    bson_destroy(upd);
}
END_TEST

/* {$type: ...} documents cannot be written in libbson's JSON (legacy binary). */
START_TEST(test_currentdate_type)
{
    static const struct
    {
        const char *type;
        int code;
    } t[] = {{"date", 0}, {"timestamp", 0}, {"foo", 2}};

    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        bson_t upd = BSON_INITIALIZER, cd, d, out;
        bson_t *doc = J("{'_id':1,'d':1}");
        struct qry_update *u = NULL;
        struct cairn_error err = {0};
        bool mod = false;
        bson_iter_t it;
        int rv;

        bson_append_document_begin(&upd, "$currentDate", -1, &cd);
        bson_append_document_begin(&cd, "d", -1, &d);
        bson_append_utf8(&d, "$type", -1, t[i].type, -1);
        bson_append_document_end(&cd, &d);
        bson_append_document_end(&upd, &cd);
        rv = qry_update_compile(&upd, &u, &err);
        if (t[i].code != 0) {
            ck_assert_int_ne(rv, 0);
            ck_assert_int_eq(err.mongo_code, t[i].code);
        } else {
            ck_assert_int_eq(rv, 0);
            ck_assert_int_eq(qry_update_apply(u, doc, false, NOW_MS, &out, &mod, &err), 0);
            ck_assert(mod);
            ck_assert(bson_iter_init_find(&it, &out, "d"));
            if (t[i].type[0] == 'd') {
                ck_assert(BSON_ITER_HOLDS_DATE_TIME(&it));
                ck_assert_int_eq(bson_iter_date_time(&it), NOW_MS);
            } else {
                uint32_t ts, inc;
                ck_assert(BSON_ITER_HOLDS_TIMESTAMP(&it));
                bson_iter_timestamp(&it, &ts, &inc);
                ck_assert_uint_eq(ts, (uint32_t)(NOW_MS / 1000));
            }
            bson_destroy(&out);
        }
        qry_update_free(u);
        bson_destroy(&upd);
        bson_destroy(doc);
    }
}
END_TEST

/* Large and hostile inputs: many fields stay fast, deep nesting and long
 * paths are refused with errors instead of exhausting the stack. */
START_TEST(test_update_limits)
{
    enum { N = 20000 };
    bson_t set = BSON_INITIALIZER, unset = BSON_INITIALIZER, s1, s2, empty = BSON_INITIALIZER;
    bson_t out1, out2, deep = BSON_INITIALIZER, *deepupd;
    struct qry_update *u1, *u2, *u3;
    struct cairn_error err = {0};
    char key[32], *path;
    bool mod;
    size_t pl = 0;

    bson_append_document_begin(&set, "$set", -1, &s1);
    bson_append_document_begin(&unset, "$unset", -1, &s2);
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "f%d", i);
        bson_append_int32(&s1, key, -1, i);
        bson_append_int32(&s2, key, -1, 1);
    }
    bson_append_document_end(&set, &s1);
    bson_append_document_end(&unset, &s2);
    ck_assert_int_eq(qry_update_compile(&set, &u1, &err), 0);
    ck_assert_int_eq(qry_update_apply(u1, &empty, false, 0, &out1, &mod, &err), 0);
    ck_assert(mod);
    ck_assert_int_eq(bson_count_keys(&out1), N);
    ck_assert_int_eq(qry_update_compile(&unset, &u2, &err), 0);
    ck_assert_int_eq(qry_update_apply(u2, &out1, false, 0, &out2, &mod, &err), 0);
    ck_assert(mod);
    ck_assert(bson_empty(&out2));
    bson_destroy(&out1);
    bson_destroy(&out2);
    qry_update_free(u1);
    qry_update_free(u2);

    /* a path of 300 components */
    path = malloc(300 * 2 + 1);
    for (int i = 0; i < 300; i++) {
        path[pl++] = 'a';
        path[pl++] = '.';
    }
    path[pl - 1] = '\0';
    bson_append_document_begin(&deep, "$set", -1, &s1);
    bson_append_int32(&s1, path, -1, 1);
    bson_append_document_end(&deep, &s1);
    ck_assert_int_ne(qry_update_compile(&deep, &u3, &err), 0);
    ck_assert_int_eq(err.mongo_code, 2);
    free(path);
    bson_destroy(&deep);

    /* a value nested 300 deep */
    {
        bson_t *inner = bson_new(), *upd = bson_new(), sd;
        bson_append_int32(inner, "x", -1, 1);
        for (int i = 0; i < 300; i++) {
            bson_t *outer = bson_new();
            bson_append_document(outer, "x", -1, inner);
            bson_destroy(inner);
            inner = outer;
        }
        bson_append_document_begin(upd, "$set", -1, &sd);
        bson_append_document(&sd, "v", -1, inner);
        bson_append_document_end(upd, &sd);
        ck_assert_int_eq(qry_update_compile(upd, &u3, &err), 0);
        ck_assert_int_ne(qry_update_apply(u3, &empty, false, 0, &out1, &mod, &err), 0);
        ck_assert_int_eq(err.mongo_code, 15);
        bson_destroy(&out1);
        qry_update_free(u3);
        deepupd = inner;
        /* and as the document itself */
        ck_assert_int_eq(qry_update_compile(upd, &u3, &err), 0);
        ck_assert_int_ne(qry_update_apply(u3, deepupd, false, 0, &out1, &mod, &err), 0);
        bson_destroy(&out1);
        qry_update_free(u3);
        bson_destroy(inner);
        bson_destroy(upd);
    }
    bson_destroy(&set);
    bson_destroy(&unset);
    bson_destroy(&empty);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("update");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_add_loop_test(tc, test_update_table, 0, (int)(sizeof cases / sizeof cases[0]));
    tcase_add_test(tc, test_is_replacement);
    tcase_add_test(tc, test_update_reuse);
    tcase_add_loop_test(tc, test_upsert_seed, 0, (int)(sizeof seeds / sizeof seeds[0]));
    tcase_add_test(tc, test_upsert_flow);
    tcase_add_test(tc, test_currentdate_type);
    tcase_add_test(tc, test_update_limits);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
