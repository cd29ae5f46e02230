/*
 * test_pipeline.c: unit tests of the aggregation pipeline and expression
 * language (src/query/pipeline*.c, src/query/expr*.c). Table-driven: each
 * case is a pipeline, an input array and either the exact expected output
 * (compared as canonical extended JSON, so BSON types matter) or the
 * MongoDB error code expected at compile or run time. JSON in the tables
 * uses single quotes, turned into double quotes before parsing.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query/expr.h"
#include "query/query.h"

struct pcase
{
    const char *name;
    const char *pipeline; /* JSON array */
    const char *input;    /* JSON array of documents */
    const char *expected; /* JSON array of documents, or NULL when `code` is set */
    int code;             /* expected mongo_code, 0 = success */
};

/* clang-format off */
static const struct pcase cases[] = {
    /* ---- $match -------------------------------------------------------- */
    {"match gt", "[{'$match':{'a':{'$gt':1}}}]",
     "[{'_id':1,'a':1},{'_id':2,'a':2},{'_id':3,'a':3}]",
     "[{'_id':2,'a':2},{'_id':3,'a':3}]", 0},
    {"match empty", "[{'$match':{}}]", "[{'a':1},{'a':2}]", "[{'a':1},{'a':2}]", 0},
    {"match then project", "[{'$match':{'t':'x'}},{'$project':{'_id':0,'v':1}}]",
     "[{'_id':1,'t':'x','v':1},{'_id':2,'t':'y','v':2},{'_id':3,'t':'x','v':3}]",
     "[{'v':1},{'v':3}]", 0},
    {"match bad filter", "[{'$match':5}]", "[]", NULL, 15959},
    {"match unknown operator", "[{'$match':{'a':{'$foo':1}}}]", "[]", NULL, 2},

    /* ---- $group ------------------------------------------------------- */
    {"group sum", "[{'$group':{'_id':'$k','n':{'$sum':1},'t':{'$sum':'$v'}}}]",
     "[{'k':'a','v':1},{'k':'b','v':2},{'k':'a','v':3}]",
     "[{'_id':'a','n':2,'t':4},{'_id':'b','n':1,'t':2}]", 0},
    {"group numeric keys equal", "[{'$group':{'_id':'$k','n':{'$sum':1}}}]",
     "[{'k':1},{'k':1.0},{'k':{'$numberLong':'1'}},{'k':2}]",
     "[{'_id':1,'n':3},{'_id':2,'n':1}]", 0},
    {"group null and missing", "[{'$group':{'_id':'$k','n':{'$sum':1}}}]",
     "[{'k':null},{},{'k':1}]", "[{'_id':null,'n':2},{'_id':1,'n':1}]", 0},
    {"group avg", "[{'$group':{'_id':null,'a':{'$avg':'$v'},'b':{'$avg':'$w'}}}]",
     "[{'v':1},{'v':2,'w':'x'},{'v':'s'}]", "[{'_id':null,'a':1.5,'b':null}]", 0},
    {"group min max", "[{'$group':{'_id':0,'lo':{'$min':'$v'},'hi':{'$max':'$v'},'z':{'$min':'$z'}}}]",
     "[{'v':3},{'v':null},{'v':1},{}]", "[{'_id':0,'lo':1,'hi':3,'z':null}]", 0},
    {"group min max types", "[{'$group':{'_id':0,'lo':{'$min':'$v'},'hi':{'$max':'$v'}}}]",
     "[{'v':'a'},{'v':5},{'v':{'x':1}}]", "[{'_id':0,'lo':5,'hi':{'x':1}}]", 0},
    {"group push addToSet",
     "[{'$group':{'_id':0,'p':{'$push':'$v'},'s':{'$addToSet':'$v'}}}]",
     "[{'v':1},{'v':null},{},{'v':1.0},{'v':[1]}]",
     "[{'_id':0,'p':[1,null,1.0,[1]],'s':[1,null,[1]]}]", 0},
    {"group first last", "[{'$group':{'_id':0,'f':{'$first':'$v'},'l':{'$last':'$v'},'m':{'$first':'$m'}}}]",
     "[{'v':1},{'v':2},{'v':3}]", "[{'_id':0,'f':1,'l':3,'m':null}]", 0},
    {"group count accumulator", "[{'$group':{'_id':'$k','c':{'$count':{}}}}]",
     "[{'k':1},{'k':1},{'k':2}]", "[{'_id':1,'c':2},{'_id':2,'c':1}]", 0},
    {"group sum int overflow to long", "[{'$group':{'_id':0,'s':{'$sum':'$v'}}}]",
     "[{'v':2147483647},{'v':1}]", "[{'_id':0,'s':{'$numberLong':'2147483648'}}]", 0},
    {"group sum long overflow to double", "[{'$group':{'_id':0,'s':{'$sum':'$v'}}}]",
     "[{'v':{'$numberLong':'9223372036854775807'}},{'v':1}]",
     "[{'_id':0,'s':9.2233720368547758e18}]", 0},
    {"group sum long stays long", "[{'$group':{'_id':0,'s':{'$sum':'$v'}}}]",
     "[{'v':{'$numberLong':'5'}},{'v':1}]", "[{'_id':0,'s':{'$numberLong':'6'}}]", 0},
    {"group sum double", "[{'$group':{'_id':0,'s':{'$sum':'$v'}}}]",
     "[{'v':1},{'v':2.5}]", "[{'_id':0,'s':3.5}]", 0},
    {"group sum ignores non-numeric", "[{'$group':{'_id':0,'s':{'$sum':'$v'}}}]",
     "[{'v':'a'},{'v':null},{}]", "[{'_id':0,'s':0}]", 0},
    {"group document key", "[{'$group':{'_id':{'a':'$a','b':'$b'},'n':{'$sum':1}}}]",
     "[{'a':1,'b':2},{'a':1,'b':2.0},{'a':1}]",
     "[{'_id':{'a':1,'b':2},'n':2},{'_id':{'a':1},'n':1}]", 0},
    {"group expression key", "[{'$group':{'_id':{'$mod':['$v',2]},'n':{'$sum':'$v'}}}]",
     "[{'v':1},{'v':2},{'v':3},{'v':4}]", "[{'_id':1,'n':4},{'_id':0,'n':6}]", 0},
    {"group sum of expression", "[{'$group':{'_id':null,'t':{'$sum':{'$multiply':['$p','$q']}}}}]",
     "[{'p':2,'q':3},{'p':4,'q':5}]", "[{'_id':null,'t':26}]", 0},
    {"count_documents pipeline",
     "[{'$match':{'x':{'$gte':2}}},{'$skip':1},{'$limit':2},{'$group':{'_id':1,'n':{'$sum':1}}}]",
     "[{'x':1},{'x':2},{'x':3},{'x':4},{'x':5}]", "[{'_id':1,'n':2}]", 0},
    {"count_documents empty", "[{'$match':{}},{'$group':{'_id':1,'n':{'$sum':1}}}]", "[]", "[]", 0},
    {"group no id", "[{'$group':{'n':{'$sum':1}}}]", "[]", NULL, 15955},
    {"group unknown accumulator", "[{'$group':{'_id':0,'n':{'$foo':1}}}]", "[]", NULL, 15952},
    {"group accumulator not object", "[{'$group':{'_id':0,'n':1}}]", "[]", NULL, 40234},
    {"group two accumulators", "[{'$group':{'_id':0,'n':{'$sum':1,'$avg':1}}}]", "[]", NULL, 40238},
    {"group dotted field", "[{'$group':{'_id':0,'a.b':{'$sum':1}}}]", "[]", NULL, 40235},
    {"group array argument", "[{'$group':{'_id':0,'n':{'$sum':[1,2]}}}]", "[]", NULL, 40237},
    {"group not object", "[{'$group':1}]", "[]", NULL, 15947},

    /* ---- $count ------------------------------------------------------- */
    {"count", "[{'$count':'n'}]", "[{},{},{}]", "[{'n':3}]", 0},
    {"count empty", "[{'$count':'n'}]", "[]", "[]", 0},
    {"count after match", "[{'$match':{'a':1}},{'$count':'c'}]", "[{'a':1},{'a':2},{'a':1}]",
     "[{'c':2}]", 0},
    {"count not string", "[{'$count':1}]", "[]", NULL, 40156},
    {"count dollar", "[{'$count':'$n'}]", "[]", NULL, 40158},
    {"count dot", "[{'$count':'a.b'}]", "[]", NULL, 40160},

    /* ---- $project ------------------------------------------------------ */
    {"project inclusion", "[{'$project':{'a':1}}]", "[{'_id':1,'b':2,'a':3}]",
     "[{'_id':1,'a':3}]", 0},
    {"project inclusion no id", "[{'$project':{'a':1,'_id':0}}]", "[{'_id':1,'b':2,'a':3}]",
     "[{'a':3}]", 0},
    {"project exclusion", "[{'$project':{'a':0}}]", "[{'_id':1,'b':2,'a':3,'c':4}]",
     "[{'_id':1,'b':2,'c':4}]", 0},
    {"project computed",
     "[{'$project':{'b':'$x.y','c':{'$literal':5},'d':{'$add':['$a',1]}}}]",
     "[{'_id':1,'a':2,'x':{'y':'z'}}]", "[{'_id':1,'b':'z','c':5,'d':3}]", 0},
    {"project computed string literal", "[{'$project':{'_id':0,'s':'hello','t':true}}]",
     "[{'_id':1}]", "[{'s':'hello'}]", 0},
    {"project nested inclusion with arrays", "[{'$project':{'_id':0,'a.b':1}}]",
     "[{'a':[{'b':1,'c':2},{'c':3},5]}]", "[{'a':[{'b':1},{}]}]", 0},
    {"project nested exclusion", "[{'$project':{'a.b':0}}]",
     "[{'_id':1,'a':{'b':1,'c':2},'d':3}]", "[{'_id':1,'a':{'c':2},'d':3}]", 0},
    {"project subdocument form", "[{'$project':{'a':{'b':1}}}]",
     "[{'_id':1,'a':{'b':1,'c':2}}]", "[{'_id':1,'a':{'b':1}}]", 0},
    {"project nested computed", "[{'$project':{'_id':0,'a':{'x':'$v'}}}]",
     "[{'v':7}]", "[{'a':{'x':7}}]", 0},
    {"project root", "[{'$project':{'_id':0,'r':'$$ROOT','c':'$$CURRENT.a'}}]",
     "[{'_id':1,'a':2}]", "[{'r':{'_id':1,'a':2},'c':2}]", 0},
    {"project missing omitted", "[{'$project':{'b':'$nope','c':'$$REMOVE'}}]",
     "[{'_id':1,'a':2}]", "[{'_id':1}]", 0},
    {"project only id", "[{'$project':{'_id':1}}]", "[{'_id':1,'a':2}]", "[{'_id':1}]", 0},
    {"project exclude only id", "[{'$project':{'_id':0}}]", "[{'_id':1,'a':2}]", "[{'a':2}]", 0},
    {"project inclusion then exclusion", "[{'$project':{'a':1,'b':0}}]", "[]", NULL, 31254},
    {"project exclusion then inclusion", "[{'$project':{'a':0,'b':1}}]", "[]", NULL, 31253},
    {"project empty", "[{'$project':{}}]", "[]", NULL, 51272},
    {"project expression in exclusion", "[{'$project':{'a':0,'b':'$c'}}]", "[]", NULL, 31252},
    {"project path collision", "[{'$project':{'a':1,'a.b':1}}]", "[]", NULL, 31250},
    {"project not object", "[{'$project':1}]", "[]", NULL, 15969},
    {"project dollar field", "[{'$project':{'$a':1}}]", "[]", NULL, 16410},

    /* ---- $addFields / $set / $unset ------------------------------------- */
    {"addFields append and replace", "[{'$addFields':{'c':{'$add':['$a','$b']},'a':0}}]",
     "[{'_id':1,'a':1,'b':2}]", "[{'_id':1,'a':0,'b':2,'c':3}]", 0},
    {"set dotted", "[{'$set':{'a.c':5}}]", "[{'_id':1,'a':{'b':1}}]",
     "[{'_id':1,'a':{'b':1,'c':5}}]", 0},
    {"set nested merge", "[{'$set':{'a':{'c':5}}}]", "[{'_id':1,'a':{'b':1},'z':1}]",
     "[{'_id':1,'a':{'b':1,'c':5},'z':1}]", 0},
    {"set over scalar", "[{'$set':{'a.c':5}}]", "[{'_id':1,'a':3}]",
     "[{'_id':1,'a':{'c':5}}]", 0},
    {"addFields remove", "[{'$addFields':{'a':'$$REMOVE'}}]", "[{'_id':1,'a':1,'b':2}]",
     "[{'_id':1,'b':2}]", 0},
    {"addFields not object", "[{'$addFields':1}]", "[]", NULL, 40272},
    {"unset string", "[{'$unset':'a'}]", "[{'_id':1,'a':1,'b':2}]", "[{'_id':1,'b':2}]", 0},
    {"unset array", "[{'$unset':['a','b.c']}]", "[{'_id':1,'a':1,'b':{'c':1,'d':2}}]",
     "[{'_id':1,'b':{'d':2}}]", 0},
    {"unset bad", "[{'$unset':1}]", "[]", NULL, 31002},
    {"unset bad element", "[{'$unset':['a',1]}]", "[]", NULL, 31120},

    /* ---- $sort / $skip / $limit ------------------------------------------ */
    {"sort asc stable", "[{'$sort':{'a':1}}]",
     "[{'_id':1,'a':2},{'_id':2,'a':1},{'_id':3,'a':2},{'_id':4,'a':1}]",
     "[{'_id':2,'a':1},{'_id':4,'a':1},{'_id':1,'a':2},{'_id':3,'a':2}]", 0},
    {"sort desc missing", "[{'$sort':{'a':-1}}]", "[{'_id':1},{'_id':2,'a':5},{'_id':3,'a':'s'}]",
     "[{'_id':3,'a':'s'},{'_id':2,'a':5},{'_id':1}]", 0},
    {"sort two keys", "[{'$sort':{'a':1,'b':-1}}]",
     "[{'a':1,'b':1},{'a':0,'b':1},{'a':1,'b':2}]",
     "[{'a':0,'b':1},{'a':1,'b':2},{'a':1,'b':1}]", 0},
    {"sort then limit", "[{'$sort':{'a':-1}},{'$limit':2}]", "[{'a':1},{'a':3},{'a':2}]",
     "[{'a':3},{'a':2}]", 0},
    {"sort empty", "[{'$sort':{}}]", "[]", NULL, 15976},
    {"sort not object", "[{'$sort':1}]", "[]", NULL, 15973},
    {"sort bad direction", "[{'$sort':{'a':2}}]", "[]", NULL, 2},
    {"skip", "[{'$skip':2}]", "[{'a':1},{'a':2},{'a':3}]", "[{'a':3}]", 0},
    {"skip zero", "[{'$skip':0}]", "[{'a':1}]", "[{'a':1}]", 0},
    {"limit", "[{'$limit':2}]", "[{'a':1},{'a':2},{'a':3}]", "[{'a':1},{'a':2}]", 0},
    {"limit long", "[{'$limit':{'$numberLong':'1'}}]", "[{'a':1},{'a':2}]", "[{'a':1}]", 0},
    {"skip then limit", "[{'$skip':1},{'$limit':1}]", "[{'a':1},{'a':2},{'a':3}]",
     "[{'a':2}]", 0},
    {"limit zero", "[{'$limit':0}]", "[]", NULL, 15958},
    {"limit string", "[{'$limit':'x'}]", "[]", NULL, 15957},
    {"limit fraction", "[{'$limit':1.5}]", "[]", NULL, 2},
    {"skip negative", "[{'$skip':-1}]", "[]", NULL, 15956},
    {"skip string", "[{'$skip':'a'}]", "[]", NULL, 15972},

    /* ---- $unwind -------------------------------------------------------- */
    {"unwind", "[{'$unwind':'$a'}]", "[{'_id':1,'a':[1,2],'b':0}]",
     "[{'_id':1,'a':1,'b':0},{'_id':1,'a':2,'b':0}]", 0},
    {"unwind drops missing null empty", "[{'$unwind':'$a'}]",
     "[{'_id':1},{'_id':2,'a':null},{'_id':3,'a':[]},{'_id':4,'a':[7]}]",
     "[{'_id':4,'a':7}]", 0},
    {"unwind preserve", "[{'$unwind':{'path':'$a','preserveNullAndEmptyArrays':true}}]",
     "[{'_id':1},{'_id':2,'a':null},{'_id':3,'a':[]},{'_id':4,'a':[7]}]",
     "[{'_id':1},{'_id':2,'a':null},{'_id':3},{'_id':4,'a':7}]", 0},
    {"unwind index", "[{'$unwind':{'path':'$a','includeArrayIndex':'i'}}]",
     "[{'_id':1,'a':['x','y']},{'_id':2,'a':5}]",
     "[{'_id':1,'a':'x','i':{'$numberLong':'0'}},{'_id':1,'a':'y','i':{'$numberLong':'1'}},"
     "{'_id':2,'a':5,'i':null}]", 0},
    {"unwind scalar", "[{'$unwind':'$a'}]", "[{'_id':1,'a':5},{'_id':2,'a':{'x':1}}]",
     "[{'_id':1,'a':5},{'_id':2,'a':{'x':1}}]", 0},
    {"unwind nested", "[{'$unwind':'$a.b'}]", "[{'_id':1,'a':{'b':[1,2],'c':3}}]",
     "[{'_id':1,'a':{'b':1,'c':3}},{'_id':1,'a':{'b':2,'c':3}}]", 0},
    {"unwind then group", "[{'$unwind':'$tags'},{'$group':{'_id':'$tags','n':{'$sum':1}}},{'$sort':{'_id':1}}]",
     "[{'tags':['a','b']},{'tags':['b']},{'tags':[]}]",
     "[{'_id':'a','n':1},{'_id':'b','n':2}]", 0},
    {"unwind no dollar", "[{'$unwind':'a'}]", "[]", NULL, 28818},
    {"unwind bad type", "[{'$unwind':5}]", "[]", NULL, 15981},
    {"unwind no path", "[{'$unwind':{}}]", "[]", NULL, 28812},
    {"unwind bad option", "[{'$unwind':{'path':'$a','foo':1}}]", "[]", NULL, 28811},
    {"unwind index dollar", "[{'$unwind':{'path':'$a','includeArrayIndex':'$i'}}]", "[]", NULL, 28822},
    {"unwind preserve not bool", "[{'$unwind':{'path':'$a','preserveNullAndEmptyArrays':1}}]", "[]", NULL, 28809},

    /* ---- $replaceRoot / $replaceWith / $sortByCount ------------------------- */
    {"replaceRoot", "[{'$replaceRoot':{'newRoot':'$a'}}]", "[{'_id':1,'a':{'x':1}}]",
     "[{'x':1}]", 0},
    {"replaceWith doc expr", "[{'$replaceWith':{'x':'$a.b','y':1}}]", "[{'a':{'b':2}}]",
     "[{'x':2,'y':1}]", 0},
    {"replaceRoot not object", "[{'$replaceRoot':{'newRoot':'$a'}}]", "[{'a':1}]", NULL, 40228},
    {"replaceRoot no newRoot", "[{'$replaceRoot':{}}]", "[]", NULL, 40231},
    {"sortByCount", "[{'$sortByCount':'$k'}]", "[{'k':'a'},{'k':'b'},{'k':'b'}]",
     "[{'_id':'b','count':2},{'_id':'a','count':1}]", 0},

    /* ---- pipeline errors --------------------------------------------------- */
    {"stage two fields", "[{'$match':{},'$limit':1}]", "[]", NULL, 40323},
    {"stage no fields", "[{}]", "[]", NULL, 40323},
    {"stage not object", "[1]", "[]", NULL, 14},
    {"unknown stage", "[{'$foo':{}}]", "[]", NULL, 40324},
    {"lookup unsupported", "[{'$lookup':{'from':'x'}}]", "[]", NULL, 238},
    {"facet unsupported", "[{'$facet':{}}]", "[]", NULL, 238},
    {"empty pipeline", "[]", "[{'a':1}]", "[{'a':1}]", 0},

    /* ---- expressions ------------------------------------------------------- */
    {"field path through arrays", "[{'$project':{'_id':0,'v':'$a.b'}}]",
     "[{'a':[{'b':1},{'b':2},{'c':3},4,[{'b':5}]]}]", "[{'v':[1,2]}]", 0},
    {"field path deep arrays", "[{'$project':{'_id':0,'v':'$a.b.c'}}]",
     "[{'a':[{'b':[{'c':1},{'c':2}]},{'b':{'c':3}}]}]", "[{'v':[[1,2],3]}]", 0},
    {"array expression missing to null", "[{'$project':{'_id':0,'v':['$a','$nope',3]}}]",
     "[{'a':1}]", "[{'v':[1,null,3]}]", 0},
    {"literal", "[{'$project':{'_id':0,'v':{'$literal':'$a'},'w':{'$literal':{'$add':1}}}}]",
     "[{'a':1}]", "[{'v':'$a','w':{'$add':1}}]", 0},
    {"add", "[{'$project':{'_id':0,'i':{'$add':[1,2]},'l':{'$add':[1,{'$numberLong':'2'}]},"
     "'d':{'$add':[1,2.5]},'n':{'$add':[1,null]},'m':{'$add':[1,'$nope']},'e':{'$add':[]}}}]",
     "[{}]", "[{'i':3,'l':{'$numberLong':'3'},'d':3.5,'n':null,'m':null,'e':0}]", 0},
    {"add overflow", "[{'$project':{'_id':0,'v':{'$add':[2147483647,1]}}}]", "[{}]",
     "[{'v':{'$numberLong':'2147483648'}}]", 0},
    {"add date", "[{'$project':{'_id':0,'v':{'$add':['$d',1000]}}}]",
     "[{'d':{'$date':{'$numberLong':'1000'}}}]", "[{'v':{'$date':{'$numberLong':'2000'}}}]", 0},
    {"add string error", "[{'$project':{'v':{'$add':[1,'a']}}}]", "[{}]", NULL, 16554},
    {"add two dates error", "[{'$project':{'v':{'$add':['$d','$d']}}}]",
     "[{'d':{'$date':{'$numberLong':'1000'}}}]", NULL, 16612},
    {"subtract", "[{'$project':{'_id':0,'a':{'$subtract':[5,7]},'b':{'$subtract':[5.5,1]},"
     "'c':{'$subtract':['$d','$e']},'f':{'$subtract':['$d',500]}}}]",
     "[{'d':{'$date':{'$numberLong':'3000'}},'e':{'$date':{'$numberLong':'1000'}}}]",
     "[{'a':-2,'b':4.5,'c':{'$numberLong':'2000'},'f':{'$date':{'$numberLong':'2500'}}}]", 0},
    /* fuzz: date arithmetic leaving int64 was signed overflow (UB) */
    {"add date overflow", "[{'$project':{'v':{'$add':['$d',{'$numberLong':'-9223372036854775808'}]}}}]",
     "[{'d':{'$date':{'$numberLong':'-9223372036854775803'}}}]", NULL, 15},
    {"add date huge double", "[{'$project':{'v':{'$add':['$d',1e300]}}}]",
     "[{'d':{'$date':{'$numberLong':'0'}}}]", NULL, 15},
    {"subtract dates overflow", "[{'$project':{'v':{'$subtract':['$d','$e']}}}]",
     "[{'d':{'$date':{'$numberLong':'9223372036854775807'}},'e':{'$date':{'$numberLong':'-1'}}}]",
     NULL, 15},
    {"subtract date number overflow", "[{'$project':{'v':{'$subtract':['$d',1]}}}]",
     "[{'d':{'$date':{'$numberLong':'-9223372036854775808'}}}]", NULL, 15},
    {"subtract arity", "[{'$project':{'v':{'$subtract':[1]}}}]", "[]", NULL, 16020},
    /* fuzz: 4x growth per stage used to exhaust memory; 16 MiB + 16 KiB cap */
    {"concat result too large", "["
     "{'$set':{'s':{'$concat':['$s','$s','$s','$s']}}},"
     "{'$set':{'s':{'$concat':['$s','$s','$s','$s']}}},"
     "{'$set':{'s':{'$concat':['$s','$s','$s','$s']}}},"
     "{'$set':{'s':{'$concat':['$s','$s','$s','$s']}}},"
     "{'$set':{'s':{'$concat':['$s','$s','$s','$s']}}},"
     "{'$set':{'s':{'$concat':['$s','$s','$s','$s']}}},"
     "{'$set':{'s':{'$concat':['$s','$s','$s','$s']}}},"
     "{'$set':{'s':{'$concat':['$s','$s','$s','$s']}}},"
     "{'$set':{'s':{'$concat':['$s','$s','$s','$s']}}},"
     "{'$set':{'s':{'$concat':['$s','$s','$s','$s']}}},"
     "{'$set':{'s':{'$concat':['$s','$s','$s','$s']}}},"
     "{'$set':{'s':{'$concat':['$s','$s','$s','$s']}}}" "]",
     "[{'s':'abcd'}]", NULL, 10334},
    {"concatArrays result too large", "["
     "{'$set':{'c':{'$concatArrays':['$c','$c','$c','$c']}}},"
     "{'$set':{'c':{'$concatArrays':['$c','$c','$c','$c']}}},"
     "{'$set':{'c':{'$concatArrays':['$c','$c','$c','$c']}}},"
     "{'$set':{'c':{'$concatArrays':['$c','$c','$c','$c']}}},"
     "{'$set':{'c':{'$concatArrays':['$c','$c','$c','$c']}}},"
     "{'$set':{'c':{'$concatArrays':['$c','$c','$c','$c']}}},"
     "{'$set':{'c':{'$concatArrays':['$c','$c','$c','$c']}}},"
     "{'$set':{'c':{'$concatArrays':['$c','$c','$c','$c']}}},"
     "{'$set':{'c':{'$concatArrays':['$c','$c','$c','$c']}}},"
     "{'$set':{'c':{'$concatArrays':['$c','$c','$c','$c']}}},"
     "{'$set':{'c':{'$concatArrays':['$c','$c','$c','$c']}}}" "]",
     "[{'c':[1]}]", NULL, 10334},
    {"array expression too large", "["
     "{'$set':{'c':['$c','$c','$c','$c']}},"
     "{'$set':{'c':['$c','$c','$c','$c']}},"
     "{'$set':{'c':['$c','$c','$c','$c']}},"
     "{'$set':{'c':['$c','$c','$c','$c']}},"
     "{'$set':{'c':['$c','$c','$c','$c']}},"
     "{'$set':{'c':['$c','$c','$c','$c']}},"
     "{'$set':{'c':['$c','$c','$c','$c']}},"
     "{'$set':{'c':['$c','$c','$c','$c']}},"
     "{'$set':{'c':['$c','$c','$c','$c']}},"
     "{'$set':{'c':['$c','$c','$c','$c']}},"
     "{'$set':{'c':['$c','$c','$c','$c']}},"
     "{'$set':{'c':['$c','$c','$c','$c']}}" "]",
     "[{'c':'abcd'}]", NULL, 10334},
    {"subtract type error", "[{'$project':{'v':{'$subtract':['a',1]}}}]", "[{}]", NULL, 16556},
    {"multiply", "[{'$project':{'_id':0,'a':{'$multiply':[2,3,4]},'b':{'$multiply':[2,1.5]},"
     "'c':{'$multiply':[65536,65536]}}}]",
     "[{}]", "[{'a':24,'b':3.0,'c':{'$numberLong':'4294967296'}}]", 0},
    {"multiply type error", "[{'$project':{'v':{'$multiply':[2,'x']}}}]", "[{}]", NULL, 16555},
    {"divide", "[{'$project':{'_id':0,'a':{'$divide':[6,3]},'b':{'$divide':[1,4]}}}]", "[{}]",
     "[{'a':2.0,'b':0.25}]", 0},
    {"divide by zero", "[{'$project':{'v':{'$divide':[1,0]}}}]", "[{}]", NULL, 2},
    {"divide type error", "[{'$project':{'v':{'$divide':[1,'a']}}}]", "[{}]", NULL, 16609},
    {"mod", "[{'$project':{'_id':0,'a':{'$mod':[7,3]},'b':{'$mod':[-7,3]},'c':{'$mod':[7.5,2]}}}]",
     "[{}]", "[{'a':1,'b':-1,'c':1.5}]", 0},
    {"mod by zero", "[{'$project':{'v':{'$mod':[1,0]}}}]", "[{}]", NULL, 16610},
    {"abs ceil floor", "[{'$project':{'_id':0,'a':{'$abs':-5},'b':{'$abs':-2.5},"
     "'c':{'$ceil':1.2},'d':{'$floor':-1.2},'e':{'$ceil':4},'n':{'$abs':null}}}]",
     "[{}]", "[{'a':5,'b':2.5,'c':2.0,'d':-2.0,'e':4,'n':null}]", 0},
    {"abs type error", "[{'$project':{'v':{'$abs':'x'}}}]", "[{}]", NULL, 28765},
    {"round", "[{'$project':{'_id':0,'a':{'$round':2.5},'b':{'$round':3.5},"
     "'c':{'$round':[1.2345,2]},'d':{'$round':[1234,-2]},'e':{'$round':[1250,-2]},'f':{'$round':7}}}]",
     "[{}]", "[{'a':2.0,'b':4.0,'c':1.23,'d':1200,'e':1200,'f':7}]", 0},
    {"comparisons",
     "[{'$project':{'_id':0,'eq':{'$eq':[1,1.0]},'ne':{'$ne':['a','b']},'gt':{'$gt':['a',5]},"
     "'gte':{'$gte':[2,2]},'lt':{'$lt':[null,0]},'lte':{'$lte':[3,2]},"
     "'c1':{'$cmp':[1,2]},'c2':{'$cmp':['b','a']},'c3':{'$cmp':[4,4.0]},"
     "'m':{'$eq':['$nope',null]}}}]",
     "[{}]",
     "[{'eq':true,'ne':true,'gt':true,'gte':true,'lt':true,'lte':false,'c1':-1,'c2':1,'c3':0,'m':false}]",
     0},
    {"compare arity", "[{'$project':{'v':{'$eq':[1]}}}]", "[]", NULL, 16020},
    {"and or not",
     "[{'$project':{'_id':0,'a':{'$and':[1,'x',[]]},'b':{'$and':[1,0]},'c':{'$or':[null,false,'$nope']},"
     "'d':{'$or':[0,2]},'e':{'$not':[0]},'f':{'$not':'$x'},'g':{'$and':[]}}}]",
     "[{'x':true}]", "[{'a':true,'b':false,'c':false,'d':true,'e':true,'f':false,'g':true}]", 0},
    {"cond",
     "[{'$project':{'_id':0,'a':{'$cond':[{'$gt':['$v',1]},'big','small']},"
     "'b':{'$cond':{'if':'$f','then':1,'else':2}}}}]",
     "[{'v':5,'f':false},{'v':0}]", "[{'a':'big','b':2},{'a':'small','b':2}]", 0},
    {"cond missing else", "[{'$project':{'v':{'$cond':{'if':1,'then':2}}}}]", "[]", NULL, 17082},
    {"cond bad param", "[{'$project':{'v':{'$cond':{'if':1,'then':2,'else':3,'x':1}}}}]", "[]", NULL, 17083},
    {"cond arity", "[{'$project':{'v':{'$cond':[1,2]}}}]", "[]", NULL, 16020},
    {"ifNull", "[{'$project':{'_id':0,'a':{'$ifNull':['$x','d']},'b':{'$ifNull':['$y','d']},"
     "'c':{'$ifNull':['$n','$m',3]}}}]",
     "[{'x':null,'y':0}]", "[{'a':'d','b':0,'c':3}]", 0},
    {"concat", "[{'$project':{'_id':0,'a':{'$concat':['x','-','$s']},'b':{'$concat':['x','$nope']},"
     "'c':{'$concat':[]}}}]",
     "[{'s':'y'}]", "[{'a':'x-y','b':null,'c':''}]", 0},
    {"concat type error", "[{'$project':{'v':{'$concat':['x',1]}}}]", "[{}]", NULL, 16702},
    {"toLower toUpper", "[{'$project':{'_id':0,'l':{'$toLower':'$s'},'u':{'$toUpper':'$s'},"
     "'n':{'$toUpper':null},'i':{'$toLower':5}}}]",
     "[{'s':'MiXeD 1'}]", "[{'l':'mixed 1','u':'MIXED 1','n':'','i':'5'}]", 0},
    {"substr", "[{'$project':{'_id':0,'a':{'$substr':['hello',1,3]},'b':{'$substrBytes':['hello',2,-1]},"
     "'c':{'$substr':['hello',10,2]},'d':{'$substrBytes':[null,0,1]}}}]",
     "[{}]", "[{'a':'ell','b':'llo','c':'','d':''}]", 0},
    {"substr utf8 error", "[{'$project':{'v':{'$substrBytes':['\\u00e9',1,1]}}}]", "[{}]", NULL,
     28656},
    /* NaN length is the rest of the string (mongod: coerceToLong gives a
     * negative number); it used to be cast to size_t (UB, a 2^63 malloc). */
    {"substr NaN length", "[{'$project':{'_id':0,'a':{'$substrBytes':['hello',1,'$n']}}}]",
     "[{'n':{'$numberDouble':'NaN'}}]", "[{'a':'ello'}]", 0},
    {"strLenBytes", "[{'$project':{'_id':0,'a':{'$strLenBytes':'abc'},'b':{'$strLenBytes':'\\u00e9'}}}]",
     "[{}]", "[{'a':3,'b':2}]", 0},
    {"strLenBytes error", "[{'$project':{'v':{'$strLenBytes':5}}}]", "[{}]", NULL, 34473},
    {"size", "[{'$project':{'_id':0,'n':{'$size':'$a'},'e':{'$size':[[]]}}}]", "[{'a':[1,2,3]}]",
     "[{'n':3,'e':0}]", 0},
    {"size error", "[{'$project':{'n':{'$size':'$a'}}}]", "[{}]", NULL, 17124},
    {"arrayElemAt", "[{'$project':{'_id':0,'a':{'$arrayElemAt':['$x',0]},'b':{'$arrayElemAt':['$x',-1]},"
     "'c':{'$arrayElemAt':['$x',9]},'d':{'$arrayElemAt':['$nope',0]}}}]",
     "[{'x':[10,20,30]}]", "[{'a':10,'b':30,'d':null}]", 0},
    {"arrayElemAt not array", "[{'$project':{'v':{'$arrayElemAt':['x',0]}}}]", "[{}]", NULL, 28689},
    {"arrayElemAt bad index", "[{'$project':{'v':{'$arrayElemAt':[[1],1.5]}}}]", "[{}]", NULL, 28691},
    {"in", "[{'$project':{'_id':0,'a':{'$in':[2,'$x']},'b':{'$in':[2.0,[1,2]]},'c':{'$in':['z','$x']}}}]",
     "[{'x':[1,2,3]}]", "[{'a':true,'b':true,'c':false}]", 0},
    {"in not array", "[{'$project':{'v':{'$in':[1,'$nope']}}}]", "[{}]", NULL, 40081},
    {"isArray concatArrays", "[{'$project':{'_id':0,'a':{'$isArray':'$x'},'b':{'$isArray':[1]},"
     "'c':{'$concatArrays':['$x',[4]]}}}]",
     "[{'x':[1,2]}]", "[{'a':true,'b':false,'c':[1,2,4]}]", 0},
    {"toString", "[{'$project':{'_id':0,'a':{'$toString':5},'b':{'$toString':1.5},'c':{'$toString':true},"
     "'d':{'$toString':'$o'},'e':{'$toString':null},'f':{'$toString':2.0},"
     "'g':{'$toString':'$d'}}}]",
     "[{'o':{'$oid':'5f0000000000000000000001'},'d':{'$date':{'$numberLong':'1500'}}}]",
     "[{'a':'5','b':'1.5','c':'true','d':'5f0000000000000000000001','e':null,'f':'2',"
     "'g':'1970-01-01T00:00:01.500Z'}]", 0},
    {"toInt toDouble toLong", "[{'$project':{'_id':0,'a':{'$toInt':'42'},'b':{'$toInt':3.9},"
     "'c':{'$toDouble':'2.5'},'d':{'$toDouble':3},'e':{'$toLong':'7'},'f':{'$toInt':true},"
     "'g':{'$toInt':null},'h':{'$toBool':0}}}]",
     "[{}]", "[{'a':42,'b':3,'c':2.5,'d':3.0,'e':{'$numberLong':'7'},'f':1,'g':null,'h':false}]", 0},
    {"sum avg min max expressions",
     "[{'$project':{'_id':0,'s':{'$sum':'$a'},'t':{'$sum':[1,2.5,'x']},'v':{'$avg':'$a'},"
     "'lo':{'$min':'$a'},'hi':{'$max':['$n',4,2]},'e':{'$avg':[]},'m':{'$min':'$nope'}}}]",
     "[{'a':[3,1,'z',2],'n':null}]",
     "[{'s':6,'t':3.5,'v':2.0,'lo':1,'hi':4,'e':null,'m':null}]", 0},
    {"mergeObjects", "[{'$replaceWith':{'$mergeObjects':[{'a':1,'b':1},'$d',null]}}]",
     "[{'d':{'b':2,'c':3}}]", "[{'a':1,'b':2,'c':3}]", 0},
    {"mergeObjects error", "[{'$replaceWith':{'$mergeObjects':[{'a':1},5]}}]", "[{}]", NULL,
     40400},
    {"trunc toBool", "[{'$project':{'_id':0,'a':{'$trunc':-2.7},'b':{'$trunc':[1.99,1]},"
     "'c':{'$toBool':'x'},'d':{'$toBool':null}}}]",
     "[{}]", "[{'a':-2.0,'b':1.9,'c':true,'d':null}]", 0},
    {"toInt bad string", "[{'$project':{'v':{'$toInt':'abc'}}}]", "[{}]", NULL, 241},
    {"toInt overflow", "[{'$project':{'v':{'$toInt':{'$numberLong':'3000000000'}}}}]", "[{}]", NULL, 241},
    {"toDouble bad", "[{'$project':{'v':{'$toDouble':'1x'}}}]", "[{}]", NULL, 241},
    {"unknown operator", "[{'$project':{'v':{'$foo':1}}}]", "[]", NULL, 168},
    {"operator with two fields", "[{'$project':{'v':{'$add':[1],'$sub':1}}}]", "[]", NULL, 15983},
    {"undefined variable", "[{'$project':{'v':'$$foo'}}]", "[]", NULL, 17276},
    {"bare dollar", "[{'$project':{'v':'$'}}]", "[]", NULL, 16872},
    {"empty path component", "[{'$project':{'v':'$a..b'}}]", "[]", NULL, 15998},
    {"dotted name in object expression", "[{'$group':{'_id':{'x':{'a.b':1}}}}]",
     "[]", NULL, 16412},
    {"expression in group key and match", "[{'$match':{'a':{'$gte':0}}},"
     "{'$group':{'_id':{'$cond':[{'$gte':['$a',10]},'big','small']},'s':{'$sum':'$a'},"
     "'avg':{'$avg':'$a'}}},{'$sort':{'_id':1}}]",
     "[{'a':1},{'a':20},{'a':3},{'a':-1},{'a':30}]",
     "[{'_id':'big','s':50,'avg':25.0},{'_id':'small','s':4,'avg':2.0}]", 0},
};
/* clang-format on */

static char *dq(const char *s)
{
    char *c = strdup(s);
    for (char *p = c; *p; p++) {
        if (*p == '\'') {
            *p = '"';
        }
    }
    return c;
}

/* Parses "{"v": <json>}" and returns it. */
static bson_t *wrap(const char *json)
{
    char *q = dq(json);
    size_t n = strlen(q) + 16;
    char *w = malloc(n);
    bson_error_t e;
    snprintf(w, n, "{\"v\": %s}", q);
    bson_t *b = bson_new_from_json((const uint8_t *)w, -1, &e);
    if (!b) {
        fprintf(stderr, "bad test JSON: %s: %s\n", w, e.message);
    }
    free(q);
    free(w);
    return b;
}

static void get_array(const bson_t *w, bson_t *arr)
{
    bson_iter_t it;
    const uint8_t *data;
    uint32_t len;
    ck_assert(bson_iter_init_find(&it, w, "v") && BSON_ITER_HOLDS_ARRAY(&it));
    bson_iter_array(&it, &len, &data);
    ck_assert(bson_init_static(arr, data, len));
}

struct src
{
    bson_iter_t it;
    int calls;
    int fail_at; /* 0 = never */
};

static int src_next(void *arg, bson_t *doc, struct cairn_error *err)
{
    struct src *s = arg;
    const uint8_t *data;
    uint32_t len;
    s->calls++;
    if (s->fail_at && s->calls == s->fail_at) {
        cairn_error_mongo(err, CAIRN_EIO, 1, "source failed");
        return -1;
    }
    if (!bson_iter_next(&s->it)) {
        return 0;
    }
    bson_iter_document(&s->it, &len, &data);
    bson_init_static(doc, data, len);
    return 1;
}

static char *out_json(bson_t **docs, size_t n)
{
    bson_t w = BSON_INITIALIZER, arr;
    bson_append_array_begin(&w, "v", 1, &arr);
    for (size_t i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "%zu", i);
        bson_append_document(&arr, key, -1, docs[i]);
    }
    bson_append_array_end(&w, &arr);
    char *j = bson_as_canonical_extended_json(&w, NULL);
    bson_destroy(&w);
    return j;
}

static void free_out(bson_t **docs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bson_destroy(docs[i]);
    }
    free(docs);
}

START_TEST(test_case)
{
    const struct pcase *c = &cases[_i];
    struct cairn_error err = {0};
    struct qry_pipeline *p = NULL;
    bson_t *pw = wrap(c->pipeline), *iw = wrap(c->input);
    bson_t parr, iarr;
    ck_assert_msg(pw && iw, "case %s: bad JSON", c->name);
    get_array(pw, &parr);
    get_array(iw, &iarr);
    int rv = qry_pipeline_compile(&parr, &p, &err);
    if (rv == 0) {
        struct src s = {0};
        bson_t **out = NULL;
        size_t n = 0;
        ck_assert(bson_iter_init(&s.it, &iarr));
        rv = qry_pipeline_run(p, src_next, &s, &out, &n, &err);
        if (rv == 0) {
            ck_assert_msg(c->code == 0, "case %s: expected error %d, got success", c->name,
                          c->code);
            bson_t *ew = wrap(c->expected);
            ck_assert_msg(ew != NULL, "case %s: bad expected JSON", c->name);
            char *got = out_json(out, n);
            char *want = bson_as_canonical_extended_json(ew, NULL);
            ck_assert_msg(strcmp(got, want) == 0, "case %s:\n got  %s\n want %s", c->name, got,
                          want);
            bson_free(got);
            bson_free(want);
            bson_destroy(ew);
            free_out(out, n);
        } else {
            ck_assert(out == NULL && n == 0);
        }
        qry_pipeline_free(p);
    } else {
        ck_assert(p == NULL);
    }
    if (rv != 0) {
        ck_assert_msg(c->code != 0, "case %s: unexpected error %d: %s", c->name, err.mongo_code,
                      err.msg);
        ck_assert_msg(err.mongo_code == c->code, "case %s: expected code %d, got %d (%s)", c->name,
                      c->code, err.mongo_code, err.msg);
        ck_assert_msg(err.msg[0] != '\0', "case %s: empty error message", c->name);
    }
    bson_destroy(pw);
    bson_destroy(iw);
}
END_TEST

static struct qry_pipeline *compile_json(const char *json)
{
    struct cairn_error err = {0};
    struct qry_pipeline *p = NULL;
    bson_t *w = wrap(json), arr;
    get_array(w, &arr);
    ck_assert_msg(qry_pipeline_compile(&arr, &p, &err) == 0, "compile: %s", err.msg);
    bson_destroy(w);
    return p;
}

struct gen
{
    int i, n;
    bson_t cur;
    bool have;
    int mod;
};

static int gen_next(void *arg, bson_t *doc, struct cairn_error *err)
{
    struct gen *g = arg;
    if (g->have) {
        bson_destroy(&g->cur);
        g->have = false;
    }
    if (g->i >= g->n) {
        return 0;
    }
    bson_init(&g->cur);
    g->have = true;
    BSON_APPEND_INT32(&g->cur, "_id", g->i);
    if (g->i % 2) {
        BSON_APPEND_INT32(&g->cur, "k", g->i % g->mod);
    } else {
        BSON_APPEND_DOUBLE(&g->cur, "k", (double)(g->i % g->mod));
    }
    BSON_APPEND_INT32(&g->cur, "v", g->i);
    g->i++;
    /* a view, valid until the next call */
    bson_init_static(doc, bson_get_data(&g->cur), g->cur.len);
    return 1;
}

static void check_big_group(int mod)
{
    struct qry_pipeline *p = compile_json(
        "[{'$group':{'_id':'$k','n':{'$sum':1},'s':{'$sum':'$v'},'lo':{'$min':'$v'}}},"
        "{'$sort':{'_id':1}}]");
    struct gen g = {0, 10000, BSON_INITIALIZER, false, mod};
    struct cairn_error err = {0};
    bson_t **out = NULL;
    size_t n = 0;
    ck_assert_int_eq(qry_pipeline_run(p, gen_next, &g, &out, &n, &err), 0);
    ck_assert_uint_eq(n, (size_t)mod);
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        bson_iter_t it;
        ck_assert(bson_iter_init_find(&it, out[i], "_id"));
        ck_assert_int_eq((int)bson_iter_as_int64(&it), (int)i);
        ck_assert(bson_iter_init_find(&it, out[i], "n"));
        ck_assert_int_eq(bson_iter_int32(&it), 10000 / mod);
        ck_assert(bson_iter_init_find(&it, out[i], "lo"));
        ck_assert_int_eq(bson_iter_int32(&it), (int)i);
        ck_assert(bson_iter_init_find(&it, out[i], "s"));
        total += bson_iter_as_int64(&it);
    }
    ck_assert_int_eq(total, (int64_t)9999 * 10000 / 2);
    free_out(out, n);
    qry_pipeline_free(p);
}

START_TEST(test_group_10000)
{
    check_big_group(100);
    check_big_group(10000);
}
END_TEST

START_TEST(test_leading_match)
{
    struct qry_pipeline *p = compile_json("[{'$match':{'a':5}},{'$limit':1}]");
    const bson_t *f = qry_pipeline_leading_match(p);
    ck_assert_ptr_nonnull(f);
    char *j = bson_as_relaxed_extended_json(f, NULL);
    ck_assert_str_eq(j, "{ \"a\" : 5 }");
    bson_free(j);
    qry_pipeline_free(p);
    p = compile_json("[{'$limit':1},{'$match':{'a':5}}]");
    ck_assert_ptr_null(qry_pipeline_leading_match(p));
    qry_pipeline_free(p);
}
END_TEST

/* A $sort first, or right after the leading $match, is the leading sort
 * (a later one is not); once the input is declared in its order the $sort
 * passes documents through, so a $limit after it ends the run early. */
START_TEST(test_leading_sort)
{
    struct qry_pipeline *p = compile_json("[{'$match':{'a':5}},{'$sort':{'v':1}}]");
    const bson_t *s = qry_pipeline_leading_sort(p);
    ck_assert_ptr_nonnull(s);
    char *j = bson_as_relaxed_extended_json(s, NULL);
    ck_assert_str_eq(j, "{ \"v\" : 1 }");
    bson_free(j);
    qry_pipeline_free(p);
    p = compile_json("[{'$limit':1},{'$sort':{'v':1}}]");
    ck_assert_ptr_null(qry_pipeline_leading_sort(p));
    qry_pipeline_free(p);
    p = compile_json("[{'$match':{'a':5}},{'$match':{'b':1}},{'$sort':{'v':1}}]");
    ck_assert_ptr_null(qry_pipeline_leading_sort(p));
    qry_pipeline_free(p);
    p = compile_json("[{'$sortByCount':'$k'}]");
    ck_assert_ptr_null(qry_pipeline_leading_sort(p));
    qry_pipeline_free(p);

    /* The generator yields v ascending: declared sorted, 3 documents are
     * pulled (and a few more at most), not all 100000. */
    p = compile_json("[{'$sort':{'v':1}},{'$limit':3}]");
    qry_pipeline_set_sorted_input(p);
    struct gen g = {0, 100000, BSON_INITIALIZER, false, 7};
    struct cairn_error err = {0};
    bson_t **out = NULL;
    size_t n = 0;
    ck_assert_int_eq(qry_pipeline_run(p, gen_next, &g, &out, &n, &err), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_le(g.i, 4);
    bson_iter_t it;
    ck_assert(bson_iter_init_find(&it, out[2], "v"));
    ck_assert_int_eq(bson_iter_int32(&it), 2);
    if (g.have) {
        bson_destroy(&g.cur);
    }
    free_out(out, n);
    qry_pipeline_free(p);
}
END_TEST

START_TEST(test_limit_stops_source)
{
    struct qry_pipeline *p = compile_json("[{'$match':{'v':{'$gte':10}}},{'$limit':3}]");
    struct gen g = {0, 100000, BSON_INITIALIZER, false, 7};
    struct cairn_error err = {0};
    bson_t **out = NULL;
    size_t n = 0;
    ck_assert_int_eq(qry_pipeline_run(p, gen_next, &g, &out, &n, &err), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_le(g.i, 14);
    if (g.have) {
        bson_destroy(&g.cur);
    }
    free_out(out, n);
    qry_pipeline_free(p);
}
END_TEST

/* The output a run holds is bounded: an $unwind that multiplies documents
 * fails with 292 once the held output passes the limit, instead of growing
 * without bound; under the limit the same pipeline succeeds. */
START_TEST(test_result_limit)
{
    struct qry_pipeline *p = compile_json(
        "[{'$set':{'x':[1,2,3,4,5,6,7,8,9,10],'pad':'0123456789012345678901234567890123456789'}},"
        "{'$unwind':'$x'}]");
    ck_assert_uint_eq(QRY_PIPELINE_RESULT_LIMIT, (size_t)512 * 1024 * 1024);
    qry_pipeline_set_result_limit(p, 64 * 1024);
    struct gen g = {0, 1000, BSON_INITIALIZER, false, 7};
    struct cairn_error err = {0};
    bson_t **out = NULL;
    size_t n = 0;
    ck_assert_int_ne(qry_pipeline_run(p, gen_next, &g, &out, &n, &err), 0);
    ck_assert_int_eq(err.mongo_code, 292);
    ck_assert_ptr_null(out);
    if (g.have) {
        bson_destroy(&g.cur);
    }
    ck_assert_int_lt(g.i, 1000); /* stopped early, not after the whole input */
    struct gen g2 = {0, 10, BSON_INITIALIZER, false, 7};
    ck_assert_int_eq(qry_pipeline_run(p, gen_next, &g2, &out, &n, &err), 0);
    ck_assert_uint_eq(n, 100);
    if (g2.have) {
        bson_destroy(&g2.cur);
    }
    free_out(out, n);
    qry_pipeline_free(p);
}
END_TEST

START_TEST(test_source_error)
{
    struct qry_pipeline *p = compile_json("[{'$sort':{'a':1}}]");
    bson_t *w = wrap("[{'a':2},{'a':1},{'a':0}]"), arr;
    struct src s = {0};
    struct cairn_error err = {0};
    bson_t **out = NULL;
    size_t n = 0;
    get_array(w, &arr);
    bson_iter_init(&s.it, &arr);
    s.fail_at = 3;
    ck_assert_int_ne(qry_pipeline_run(p, src_next, &s, &out, &n, &err), 0);
    ck_assert_ptr_null(out);
    ck_assert_uint_eq(n, 0);
    ck_assert_str_eq(err.msg, "source failed");
    bson_destroy(w);
    qry_pipeline_free(p);
}
END_TEST

START_TEST(test_expr_api)
{
    struct cairn_error err = {0};
    struct qry_expr *e = NULL;
    bson_t *w = wrap("{'$add':['$a',{'$multiply':['$b',2]}]}");
    bson_iter_t it;
    ck_assert(bson_iter_init_find(&it, w, "v"));
    ck_assert_int_eq(qry_expr_compile(bson_iter_value(&it), &e, &err), 0);
    bson_t *doc = BCON_NEW("a", BCON_INT32(1), "b", BCON_DOUBLE(1.5));
    bson_value_t v;
    ck_assert_int_eq(qry_expr_eval(e, doc, &v, &err), 0);
    ck_assert_int_eq(v.value_type, BSON_TYPE_DOUBLE);
    ck_assert(v.value.v_double == 4.0);
    bson_t o = BSON_INITIALIZER;
    ck_assert_int_eq(qry_expr_append(e, doc, &o, "x", -1, &err), 0);
    ck_assert_int_eq((int)bson_count_keys(&o), 1);
    bson_destroy(&o);
    qry_expr_free(e);
    bson_destroy(doc);
    bson_destroy(w);
    ck_assert_str_eq(qry_type_name(BSON_TYPE_EOD), "missing");
    bson_value_t m = {.value_type = BSON_TYPE_EOD}, nl = {.value_type = BSON_TYPE_NULL};
    ck_assert_int_lt(qry_value_cmp(&m, &nl), 0);
    ck_assert_int_eq(qry_value_cmp(&m, &m), 0);
    ck_assert(!qry_value_truthy(&m));
}
END_TEST

/* $type cannot be written in libbson's JSON (it reads {"$type": ...} as
 * legacy binary), so this case builds its pipeline with BCON. */
START_TEST(test_type_operator)
{
    bson_t *pl =
        BCON_NEW("0", "{", "$project", "{", "_id", BCON_INT32(0), "a", "{", "$type", BCON_INT32(1),
                 "}", "b", "{", "$type", "$s", "}", "c", "{", "$type", "$nope", "}", "d", "{",
                 "$type", "[", "[", BCON_INT32(1), "]", "]", "}", "e", "{", "$type", BCON_INT64(1),
                 "}", "f", "{", "$type", BCON_NULL, "}", "g", "{", "$type", "{", "x", BCON_INT32(1),
                 "}", "}", "h", "{", "$type", BCON_DOUBLE(1.5), "}", "i", "{", "$type",
                 BCON_BOOL(true), "}", "j", "{", "$type", "[", "$$ROOT", "]", "}", "}", "}");
    struct qry_pipeline *p = NULL;
    struct cairn_error err = {0};
    ck_assert_msg(qry_pipeline_compile(pl, &p, &err) == 0, "%s", err.msg);
    bson_t *w = wrap("[{'s':'x'}]"), arr;
    struct src s = {0};
    bson_t **out = NULL;
    size_t n = 0;
    get_array(w, &arr);
    bson_iter_init(&s.it, &arr);
    ck_assert_int_eq(qry_pipeline_run(p, src_next, &s, &out, &n, &err), 0);
    ck_assert_uint_eq(n, 1);
    char *j = bson_as_relaxed_extended_json(out[0], NULL);
    ck_assert_str_eq(j,
                     "{ \"a\" : \"int\", \"b\" : \"string\", \"c\" : \"missing\", "
                     "\"d\" : \"array\", \"e\" : \"long\", \"f\" : \"null\", "
                     "\"g\" : \"object\", \"h\" : \"double\", \"i\" : \"bool\", "
                     "\"j\" : \"object\" }");
    bson_free(j);
    free_out(out, n);
    bson_destroy(w);
    bson_destroy(pl);
    qry_pipeline_free(p);
}
END_TEST

static Suite *pipeline_suite(void)
{
    Suite *s = suite_create("pipeline");
    TCase *tc = tcase_create("cases");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_case, 0, (int)(sizeof cases / sizeof cases[0]));
    tcase_add_test(tc, test_group_10000);
    tcase_add_test(tc, test_leading_match);
    tcase_add_test(tc, test_leading_sort);
    tcase_add_test(tc, test_limit_stops_source);
    tcase_add_test(tc, test_source_error);
    tcase_add_test(tc, test_result_limit);
    tcase_add_test(tc, test_expr_api);
    tcase_add_test(tc, test_type_operator);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(pipeline_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
