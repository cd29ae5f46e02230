/*
 * mongo_codes.h: the MongoDB error codes Cairn answers with, by name, from
 * one X-macro table (mongod's src/mongo/base/error_codes.yml names). The
 * table generates the MONGO_<Name> constants handlers use and the codeName
 * strings replies carry; no MongoDB code appears as a bare number elsewhere.
 * Numbered assertions of mongod ("Location<N>" codes) are listed in
 * CAIRN_MONGO_LOCATION_MAP with a name saying what they report.
 */
#ifndef CAIRN_MONGO_CODES_H
#define CAIRN_MONGO_CODES_H

/* X(Name, code), sorted by code. */
#define CAIRN_MONGO_CODE_MAP(X)                         \
    X(OK, 0)                                            \
    X(InternalError, 1)                                 \
    X(BadValue, 2)                                      \
    X(NoSuchKey, 4)                                     \
    X(GraphContainsCycle, 5)                            \
    X(HostUnreachable, 6)                               \
    X(HostNotFound, 7)                                  \
    X(UnknownError, 8)                                  \
    X(FailedToParse, 9)                                 \
    X(CannotMutateObject, 10)                           \
    X(UserNotFound, 11)                                 \
    X(UnsupportedFormat, 12)                            \
    X(Unauthorized, 13)                                 \
    X(TypeMismatch, 14)                                 \
    X(Overflow, 15)                                     \
    X(InvalidLength, 16)                                \
    X(ProtocolError, 17)                                \
    X(AuthenticationFailed, 18)                         \
    X(IllegalOperation, 20)                             \
    X(InvalidBSON, 22)                                  \
    X(AlreadyInitialized, 23)                           \
    X(LockTimeout, 24)                                  \
    X(NamespaceNotFound, 26)                            \
    X(IndexNotFound, 27)                                \
    X(PathNotViable, 28)                                \
    X(NonExistentPath, 29)                              \
    X(InvalidPath, 30)                                  \
    X(RoleNotFound, 31)                                 \
    X(CannotCreateCollection, 37)                       \
    X(ConflictingUpdateOperators, 40)                   \
    X(CursorNotFound, 43)                               \
    X(LockBusy, 46)                                     \
    X(NamespaceExists, 48)                              \
    X(MaxTimeMSExpired, 50)                             \
    X(DollarPrefixedFieldName, 52)                      \
    X(InvalidIdField, 53)                               \
    X(NotSingleValueField, 54)                          \
    X(InvalidDBRef, 55)                                 \
    X(EmptyFieldName, 56)                               \
    X(DottedFieldName, 57)                              \
    X(CommandNotFound, 59)                              \
    X(ShardKeyNotFound, 61)                             \
    X(OplogOperationUnsupported, 62)                    \
    X(WriteConcernFailed, 64)                           \
    X(ImmutableField, 66)                               \
    X(CannotCreateIndex, 67)                            \
    X(IndexAlreadyExists, 68)                           \
    X(ShardNotFound, 70)                                \
    X(InvalidOptions, 72)                               \
    X(InvalidNamespace, 73)                             \
    X(NodeNotFound, 74)                                 \
    X(UnknownReplWriteConcern, 79)                      \
    X(IndexOptionsConflict, 85)                         \
    X(IndexKeySpecsConflict, 86)                        \
    X(NetworkTimeout, 89)                               \
    X(CallbackCanceled, 90)                             \
    X(ShutdownInProgress, 91)                           \
    X(InvalidReplicaSetConfig, 93)                      \
    X(NotYetInitialized, 94)                            \
    X(NotSecondary, 95)                                 \
    X(OperationFailed, 96)                              \
    X(UnsatisfiableWriteConcern, 100)                   \
    X(NewReplicaSetConfigurationIncompatible, 103)      \
    X(ConfigurationInProgress, 109)                     \
    X(WriteConflict, 112)                               \
    X(InitialSyncFailure, 113)                          \
    X(CommandNotSupported, 115)                         \
    X(ConflictingOperationInProgress, 117)              \
    X(DocumentValidationFailure, 121)                   \
    X(CommandFailed, 125)                               \
    X(FailedToSatisfyReadPreference, 133)               \
    X(ReadConcernMajorityNotAvailableYet, 134)          \
    X(CappedPositionLost, 136)                          \
    X(CursorInUse, 143)                                 \
    X(ExceededMemoryLimit, 146)                         \
    X(ReadConcernMajorityNotEnabled, 148)               \
    X(StaleEpoch, 150)                                  \
    X(ViewDepthLimitExceeded, 160)                      \
    X(CommandNotSupportedOnView, 166)                   \
    X(OptionNotSupportedOnView, 167)                    \
    X(InvalidPipelineOperator, 168)                     \
    X(CannotIndexParallelArrays, 171)                   \
    X(QueryPlanKilled, 175)                             \
    X(InconsistentReplicaSetNames, 185)                 \
    X(ClientMetadataCannotBeMutated, 186)               \
    X(LinearizableReadConcernError, 187)                \
    X(PrimarySteppedDown, 189)                          \
    X(CannotImplicitlyCreateCollection, 194)            \
    X(InvalidIndexSpecificationOption, 197)             \
    X(NetworkInterfaceExceededTimeLimit, 202)           \
    X(ClusterTimeFailsRateLimiter, 205)                 \
    X(InvalidUUID, 207)                                 \
    X(KeyNotFound, 211)                                 \
    X(IncompleteTransactionHistory, 217)                \
    X(IllegalOpMsgFlag, 223)                            \
    X(TransactionTooOld, 225)                           \
    X(TooManyLocks, 232)                                \
    X(TooManyDocumentSequences, 233)                    \
    X(NoSuchSession, 236)                               \
    X(NotImplemented, 238)                              \
    X(SnapshotTooOld, 239)                              \
    X(DNSRecordTypeMismatch, 240)                       \
    X(ConversionFailure, 241)                           \
    X(TransactionAborted, 244)                          \
    X(SnapshotUnavailable, 246)                         \
    X(StaleDbVersion, 249)                              \
    X(StaleChunkHistory, 250)                           \
    X(NoSuchTransaction, 251)                           \
    X(TransactionCommitted, 256)                        \
    X(TransactionTooLarge, 257)                         \
    X(TooManyLogicalSessions, 261)                      \
    X(ExceededTimeLimit, 262)                           \
    X(OperationNotSupportedInTransaction, 263)          \
    X(TooManyFilesOpen, 264)                            \
    X(FailPointSetFailed, 266)                          \
    X(PreparedTransactionInProgress, 267)               \
    X(MigrationConflict, 272)                           \
    X(IndexBuildAborted, 276)                           \
    X(ChecksumMismatch, 288)                            \
    X(ClientDisconnect, 279)                            \
    X(TransactionExceededLifetimeLimitSeconds, 290)     \
    X(QueryExceededMemoryLimitNoDiskUseAllowed, 292)    \
    X(ShardCannotRefreshDueToLocksHeld, 343)            \
    X(UnsupportedOpQueryCommand, 352)                   \
    X(SocketException, 9001)                            \
    X(LegacyNotPrimary, 10058)                          \
    X(NotWritablePrimary, 10107)                        \
    X(BSONObjectTooLarge, 10334)                        \
    X(DuplicateKey, 11000)                              \
    X(InterruptedAtShutdown, 11600)                     \
    X(Interrupted, 11601)                               \
    X(InterruptedDueToReplStateChange, 11602)           \
    X(BackgroundOperationInProgressForDatabase, 12586)  \
    X(BackgroundOperationInProgressForNamespace, 12587) \
    X(DatabaseDifferCase, 13297)                        \
    X(StaleConfig, 13388)                               \
    X(NotPrimaryNoSecondaryOk, 13435)                   \
    X(NotPrimaryOrSecondary, 13436)                     \
    X(OutOfDiskSpace, 14031)                            \
    X(NotARetryableWriteCommand, 50768)
enum cairn_mongo_code {
#define CAIRN__MONGO_ENUM(name, code) MONGO_##name = code,
    CAIRN_MONGO_CODE_MAP(CAIRN__MONGO_ENUM)
#undef CAIRN__MONGO_ENUM
};

/* Numbered assertions of mongod, which it reports with codeName
 * "Location<N>" (src/net/util.c does the same for any code not in the
 * table above, so no number here may also be a named code). X(Name, code),
 * sorted by code; Name says what the assertion reports, and mongod uses
 * each number for one assertion only. */
#define CAIRN_MONGO_LOCATION_MAP(X)                                                            \
    X(ExpectedObject, 10065) /* a sub-document argument is not one (BSONElement::Obj) */       \
    X(GroupSpecNotObject, 15947)                                                               \
    X(GroupIdTwice, 15948) /* _id given twice, also by $count: "_id" */                        \
    X(GroupUnknownAccumulator, 15952)                                                          \
    X(GroupMissingId, 15955)                                                                   \
    X(SkipNegative, 15956)                                                                     \
    X(LimitNotNumber, 15957)                                                                   \
    X(LimitNotPositive, 15958)                                                                 \
    X(MatchNotObject, 15959)                                                                   \
    X(ProjectNotObject, 15969)                                                                 \
    X(SkipNotNumber, 15972)                                                                    \
    X(SortNotObject, 15973)                                                                    \
    X(SortEmpty, 15976)                                                                        \
    X(UnwindSpecBadType, 15981)       /* $unwind spec neither string nor object */             \
    X(ExpressionNotOneField, 15983)   /* operator object with more than one field */           \
    X(FieldPathEmptyComponent, 15998) /* an empty name between dots */                         \
    X(CannotConvertToString, 16007)                                                            \
    X(ExpressionArgCountExact, 16020) /* wrong arity, operator takes exactly N */              \
    X(SubstrStartNotNumber, 16034)                                                             \
    X(SubstrLengthNotNumber, 16035)                                                            \
    X(GroupDuplicateField, 16406)                                                              \
    X(FieldPathDollarPrefix, 16410) /* a path component starts with '$' */                     \
    X(FieldPathNulByte, 16411)                                                                 \
    X(FieldPathDot, 16412) /* a field name contains '.' */                                     \
    X(AddNotNumeric, 16554)                                                                    \
    X(MultiplyNotNumeric, 16555)                                                               \
    X(SubtractBadTypes, 16556)                                                                 \
    X(DivideNotNumeric, 16609)                                                                 \
    X(ModByZero, 16610)                                                                        \
    X(ModNotNumeric, 16611)                                                                    \
    X(AddTwoDates, 16612) /* $add with more than one date */                                   \
    X(ConcatNotString, 16702)                                                                  \
    X(VariableNameEmpty, 16869)                                                                \
    X(FieldPathDollarOnly, 16872) /* "$" alone as a field path */                              \
    X(CondMissingIf, 17080)                                                                    \
    X(CondMissingThen, 17081)                                                                  \
    X(CondMissingElse, 17082)                                                                  \
    X(CondUnknownParameter, 17083)                                                             \
    X(SizeNotArray, 17124)                                                                     \
    X(DistinctTooBig, 17217)                                                                   \
    X(VariableUndefined, 17276)                                                                \
    X(UpdateResultTooLarge, 17419)    /* the document an update produces is past 16 MiB */     \
    X(KillOpIdNot32Bit, 26823)        /* killOp's op outside the int32 range */                \
    X(SubstrStartMidCharacter, 28656) /* start index on a UTF-8 continuation byte */           \
    X(SubstrEndMidCharacter, 28657)   /* end index inside a UTF-8 character */                 \
    X(ConcatArraysNotArray, 28664)                                                             \
    X(ExpressionArgCountRange, 28667) /* wrong arity, operator takes min..max */               \
    X(AbsOfInt64Min, 28680)                                                                    \
    X(ArrayElemAtNotArray, 28689)                                                              \
    X(ArrayElemAtIndexNotNumber, 28690)                                                        \
    X(ArrayElemAtIndexNotInt32, 28691)                                                         \
    X(ProjectionSliceNotPair, 28724) /* find $slice array not [skip, limit] */                 \
    X(UnaryMathNotNumeric, 28765)    /* $abs $ceil $floor $round $trunc on a non-number */     \
    X(UnwindPathNotString, 28808)                                                              \
    X(UnwindPreserveNotBool, 28809)     /* preserveNullAndEmptyArrays not a boolean */         \
    X(UnwindIndexFieldNotString, 28810) /* includeArrayIndex not a non-empty string */         \
    X(UnwindUnknownOption, 28811)                                                              \
    X(UnwindMissingPath, 28812)                                                                \
    X(UnwindPathNoDollar, 28818)     /* path not prefixed with '$' */                          \
    X(UnwindIndexFieldDollar, 28822) /* includeArrayIndex prefixed with '$' */                 \
    X(UnsetSpecBadType, 31002)       /* $unset neither string nor array */                     \
    X(UnsetSpecEmpty, 31119)                                                                   \
    X(UnsetSpecNotString, 31120)            /* $unset array with a non-string element */       \
    X(ProjectionPathThroughLeaf, 31249)     /* a path extends a field already projected */     \
    X(ProjectionPathCollision, 31250)       /* the same path projected twice */                \
    X(ExclusionProjectionExpression, 31252) /* $project: non-0/1/$meta value when excluding */ \
    X(InclusionInExclusionProjection, 31253)                                                   \
    X(ExclusionInInclusionProjection, 31254)                                                   \
    X(ExclusionProjectionLiteral, 31310) /* find: a literal value when excluding */            \
    X(AwaitableHelloUnpaired, 31368)     /* topologyVersion xor maxAwaitTimeMS in hello */     \
    X(TopologyVersionNegativeCounter, 31372)                                                   \
    X(TopologyVersionCounterAhead, 31382) /* our processId, a counter above ours */            \
    X(StrLenBytesNotString, 34473)                                                             \
    X(InNotArray, 40081)          /* $in's second argument not an array */                     \
    X(SortByCountBadField, 40148) /* neither a '$' path nor an expression object */            \
    X(CountFieldNotString, 40156)                                                              \
    X(CountFieldEmpty, 40157)                                                                  \
    X(CountFieldDollarPrefix, 40158)                                                           \
    X(CountFieldNulByte, 40159)                                                                \
    X(CountFieldDot, 40160)                                                                    \
    X(ReplaceRootNotObject, 40228) /* newRoot evaluated to a non-object */                     \
    X(ReplaceRootSpecNotObject, 40229)                                                         \
    X(ReplaceRootUnknownOption, 40230)                                                         \
    X(ReplaceRootMissingNewRoot, 40231)                                                        \
    X(GroupFieldNotAccumulator, 40234) /* field value not an accumulator object */             \
    X(GroupFieldDot, 40235)                                                                    \
    X(GroupFieldDollarPrefix, 40236)     /* field name looks like an operator */               \
    X(AccumulatorNotUnary, 40237)        /* array argument to a unary accumulator */           \
    X(GroupFieldAccumulatorCount, 40238) /* field object with other than one accumulator */    \
    X(AddFieldsNotObject, 40272)                                                               \
    X(StageNotOneField, 40323) /* stage object with other than one field */                    \
    X(StageUnknown, 40324)                                                                     \
    X(FieldPathEmpty, 40352)                                                                   \
    X(MergeObjectsNotObject, 40400)                                                            \
    X(IdlMissingField, 40414) /* a required command field is missing */                        \
    X(IdlUnknownField, 40415) /* a command sub-document field the command does not know */     \
    X(OpMsgMissingDb, 40571)  /* an OP_MSG body without $db */                                 \
    X(GetMoreSessionNotInCursor, 50736) /* getMore in a session, cursor of none */             \
    X(GetMoreSessionMissing, 50737)     /* getMore without the cursor's lsid */                \
    X(GetMoreSessionMismatch, 50738)    /* getMore in another session than the cursor's */     \
    X(GetMoreTxnNotInCursor, 50739)     /* getMore in a transaction, cursor of none */         \
    X(GetMoreTxnMissing, 50740)         /* getMore without the cursor's txnNumber */           \
    X(GetMoreTxnMismatch, 50741)        /* getMore in another transaction than the cursor's */ \
    X(SubstrStartNegative, 50752)                                                              \
    X(TxnWriteToSystemCollection, 50791) /* a write to system.* inside a transaction */        \
    X(TxnNumberNotAllowed, 50889)        /* txnNumber on a command that takes no session */    \
    X(IdlValueBelowMinimum, 51024) /* IDL {gte: 0}: skip, limit, batchSize, maxAwaitTimeMS */  \
    X(RegexOptionsTwice, 51075)    /* options in both $regex and $options */                   \
    X(RegexInvalid, 51091)                                                                     \
    X(RegexOptionInvalid, 51108)                                                               \
    X(RoundPlaceOutOfRange, 51155) /* $round/$trunc place not an integer in [-20, 100] */      \
    X(ProjectionEmptySubObject, 51270)                                                         \
    X(ProjectionEmpty, 51272)                                                                  \
    X(ExpressionArgCountMin, 1257300) /* wrong arity, operator takes at least N */             \
    X(PipelineTooLong, 7749501)       /* more than 1,000 stages */

enum cairn_mongo_location {
#define CAIRN__MONGO_LOC_ENUM(name, code) MONGO_LOC_##name = code,
    CAIRN_MONGO_LOCATION_MAP(CAIRN__MONGO_LOC_ENUM)
#undef CAIRN__MONGO_LOC_ENUM
};

/* Never called: it exists so that a location number that is also a named
 * code fails to compile (duplicate case label) instead of silently
 * reporting the named codeName. */
static inline int cairn__mongo_code_is_listed(int code)
{
    switch (code) {
#define CAIRN__MONGO_CASE(name, value) case value:
        CAIRN_MONGO_CODE_MAP(CAIRN__MONGO_CASE)
        CAIRN_MONGO_LOCATION_MAP(CAIRN__MONGO_CASE)
#undef CAIRN__MONGO_CASE
        return 1;
        default:
            return 0;
    }
}

/* The codeName of a named code ("BadValue"), or NULL for a code not in
 * the table. Any thread. */
const char *cairn_mongo_code_name(int code);

#endif /* CAIRN_MONGO_CODES_H */
