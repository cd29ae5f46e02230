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
    X(QueryPlanKilled, 175)                             \
    X(ClientMetadataCannotBeMutated, 186)               \
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
    X(ExceededTimeLimit, 262)                           \
    X(OperationNotSupportedInTransaction, 263)          \
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
    X(OutOfDiskSpace, 14031)

enum cairn_mongo_code {
#define CAIRN__MONGO_ENUM(name, code) MONGO_##name = code,
    CAIRN_MONGO_CODE_MAP(CAIRN__MONGO_ENUM)
#undef CAIRN__MONGO_ENUM
};

/* The codeName of a named code ("BadValue"), or NULL for a code not in
 * the table. Any thread. */
const char *cairn_mongo_code_name(int code);

#endif /* CAIRN_MONGO_CODES_H */
