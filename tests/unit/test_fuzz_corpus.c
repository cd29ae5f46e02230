/*
 * test_fuzz_corpus.c: replays the fuzz corpora (tests/fuzz/corpus/<target>/,
 * seeds and the reproducers of every bug the fuzzers found) through the
 * harnesses tests/fuzz/fuzz_wire.c and fuzz_query.c, one Check loop test
 * per file. A crash, sanitizer report or leak fails the run; the harnesses
 * themselves abort on broken invariants (e.g. a sort order that is not
 * antisymmetric). FUZZ_CORPUS_DIR is set by tests/fuzz/meson.build.
 */
#include <check.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef FUZZ_CORPUS_DIR
#error "FUZZ_CORPUS_DIR must name tests/fuzz/corpus"
#endif

/* The harnesses' LLVMFuzzerTestOneInput, renamed by meson. */
int fuzz_wire_entry(const uint8_t *data, size_t size);
int fuzz_query_entry(const uint8_t *data, size_t size);

struct target
{
    const char *name;
    int (*entry)(const uint8_t *, size_t);
    char **files;
    size_t n;
};

static struct target targets[] = {
    {"wire", fuzz_wire_entry, NULL, 0},
    {"query", fuzz_query_entry, NULL, 0},
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists the regular files of corpus/<name>/ in name order. */
static void list_files(struct target *t)
{
    char dir[1024];
    DIR *d;
    struct dirent *e;

    snprintf(dir, sizeof dir, "%s/%s", FUZZ_CORPUS_DIR, t->name);
    d = opendir(dir);
    if (d == NULL) {
        return;
    }
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        char **nf = realloc(t->files, (t->n + 1) * sizeof *nf);
        if (nf == NULL) {
            break;
        }
        t->files = nf;
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        t->files[t->n] = malloc(len);
        if (t->files[t->n] == NULL) {
            break;
        }
        snprintf(t->files[t->n], len, "%s/%s", dir, e->d_name);
        t->n++;
    }
    closedir(d);
    qsort(t->files, t->n, sizeof *t->files, cmp_str);
}

static void replay(struct target *t, int i)
{
    FILE *f = fopen(t->files[i], "rb");
    uint8_t *buf;
    long len;

    ck_assert_msg(f != NULL, "cannot open %s", t->files[i]);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    len = ftell(f);
    ck_assert_int_ge(len, 0);
    rewind(f);
    /* An exact-size buffer (at least 1 byte for malloc), as libFuzzer gives. */
    buf = malloc(len > 0 ? (size_t)len : 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(fread(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    ck_assert_int_eq(t->entry(buf, (size_t)len), 0);
    free(buf);
}

START_TEST(test_replay_wire)
{
    replay(&targets[0], _i);
}
END_TEST

START_TEST(test_replay_query)
{
    replay(&targets[1], _i);
}
END_TEST

START_TEST(test_corpora_present)
{
    /* An empty or missing corpus would make the loops above vacuous. */
    ck_assert_uint_ge(targets[0].n, 3);
    ck_assert_uint_ge(targets[1].n, 3);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fuzz_corpus");
    TCase *tc = tcase_create("replay");
    SRunner *sr;
    int failed;

    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        list_files(&targets[i]);
    }
    tcase_add_test(tc, test_corpora_present);
    tcase_add_loop_test(tc, test_replay_wire, 0, (int)targets[0].n);
    tcase_add_loop_test(tc, test_replay_query, 0, (int)targets[1].n);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        for (size_t j = 0; j < targets[i].n; j++) {
            free(targets[i].files[j]);
        }
        free(targets[i].files);
    }
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
