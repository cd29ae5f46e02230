/*
 * engine_fixture.h: the Check fixture shared by the engine tests: a fresh
 * engine in its own temporary directory per test (g_e, g_dir), reopened on
 * demand and removed afterwards. Include once per test file, then call
 * engine_fixture_setup("<name>") from the file's setup function.
 */
#ifndef CAIRN_TESTS_ENGINE_FIXTURE_H
#define CAIRN_TESTS_ENGINE_FIXTURE_H

#include <check.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "engine/engine.h"

static char g_dir[64];
static struct eng *g_e;

static inline int engine_fixture_rm_cb(const char *path,
                                       const struct stat *sb,
                                       int flag,
                                       struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Opens the engine in g_dir (fails the test on error). */
static inline void open_db(void)
{
    struct cairn_error err = {0};
    int rv = eng_open(g_dir, &g_e, &err);
    ck_assert_msg(rv == 0, "eng_open: %s", err.msg);
}

/* Makes /tmp/cairn-test-<name>-XXXXXX and opens an engine in it. */
static inline void engine_fixture_setup(const char *name)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/cairn-test-%s-XXXXXX", name);
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    open_db();
}

/* Closes the engine and removes its directory. */
static inline void teardown(void)
{
    eng_close(g_e);
    g_e = NULL;
    nftw(g_dir, engine_fixture_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* Closes and reopens the engine on the same directory (restart). */
static inline void reopen(void)
{
    eng_close(g_e);
    g_e = NULL;
    open_db();
}

#endif /* CAIRN_TESTS_ENGINE_FIXTURE_H */
