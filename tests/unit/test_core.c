/* Unit tests for lib/core: arena, buffer, diagnostics, error table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "tamis/core.h"

static int cleanup_calls;
static void count_cleanup(void *p)
{
    (void)p;
    cleanup_calls++;
}

static void test_arena_alloc_and_cleanup(void **state)
{
    (void)state;
    tamis_arena_t *a = tamis_arena_new(64);
    assert_non_null(a);
    char *s = tamis_arena_strdup(a, "hello");
    assert_string_equal(s, "hello");
    /* a request larger than the chunk size gets its own chunk and keeps alignment */
    unsigned char *big = tamis_arena_alloc(a, 1000);
    assert_non_null(big);
    assert_int_equal((uintptr_t)big % 16, 0);
    memset(big, 0xab, 1000);
    char *p = tamis_arena_printf(a, "%d-%s", 42, "x");
    assert_string_equal(p, "42-x");
    assert_string_equal(s, "hello");
    cleanup_calls = 0;
    assert_int_equal(tamis_arena_add_cleanup(a, count_cleanup, NULL), 0);
    assert_int_equal(tamis_arena_add_cleanup(a, count_cleanup, NULL), 0);
    assert_true(tamis_arena_used(a) >= 1000);
    tamis_arena_free(a);
    assert_int_equal(cleanup_calls, 2);
    tamis_arena_free(NULL);
}

static void test_buf_cap_is_sticky(void **state)
{
    (void)state;
    tamis_buf_t b;
    tamis_buf_init(&b, 8);
    assert_int_equal(tamis_buf_puts(&b, "abcd"), 0);
    assert_int_equal(tamis_buf_printf(&b, "%s", "efghij"), TAMIS_ELIMIT);
    assert_int_equal(tamis_buf_puts(&b, "x"), TAMIS_ELIMIT);
    assert_int_equal(b.len, 4);
    assert_string_equal(b.data, "abcd");
    assert_null(tamis_buf_steal(&b, NULL));
    tamis_buf_free(&b);

    /* stealing a buffer nothing was appended to still gives an empty string */
    tamis_buf_init(&b, 0);
    char *empty = tamis_buf_steal(&b, NULL);
    assert_non_null(empty);
    assert_string_equal(empty, "");
    free(empty);

    tamis_buf_init(&b, 0);
    for (int i = 0; i < 1000; i++)
        tamis_buf_printf(&b, "%d,", i);
    assert_int_equal(b.err, 0);
    size_t len;
    char *s = tamis_buf_steal(&b, &len);
    assert_non_null(s);
    assert_int_equal(strlen(s), len);
    assert_memory_equal(s, "0,1,2,", 6);
    free(s);
    assert_null(b.data);
}

static void test_diag_and_errors(void **state)
{
    (void)state;
    tamis_diag_t *d = tamis_diag_new();
    tamis_diag_add(d, TAMIS_DIAG_WARN, "a.cf", 3, "bad %s", "thing");
    tamis_diag_add(d, TAMIS_DIAG_ERROR, NULL, 0, "fatal");
    assert_int_equal(tamis_diag_count(d), 2);
    assert_int_equal(tamis_diag_count_level(d, TAMIS_DIAG_ERROR), 1);
    const tamis_diag_entry_t *e = tamis_diag_at(d, 0);
    assert_string_equal(e->file, "a.cf");
    assert_int_equal(e->line, 3);
    assert_string_equal(e->text, "bad thing");
    assert_null(tamis_diag_at(d, 2));
    tamis_diag_free(d);

    assert_string_equal(tamis_strerror(TAMIS_ENOMEM), "out of memory");
    assert_string_equal(tamis_errname(TAMIS_ELIMIT), "TAMIS_ELIMIT");
    assert_string_equal(tamis_strerror(-999), "unknown error");
    char err[16];
    assert_int_equal(tamis_seterr(err, sizeof(err), TAMIS_EIO, "%s", "a long message here"),
                     TAMIS_EIO);
    assert_int_equal(strlen(err), 15);
}

static void test_read_file_limits(void **state)
{
    (void)state;
    char *data = NULL;
    size_t len = 0;
    char err[256];
    assert_int_equal(tamis_read_file("/nonexistent/x", 10, &data, &len, err, sizeof(err)),
                     TAMIS_EIO);
    assert_non_null(strstr(err, "/nonexistent/x"));
    assert_int_equal(
        tamis_read_file(TAMIS_SOURCE_DIR "/CMakeLists.txt", 10, &data, &len, err, sizeof(err)),
        TAMIS_ELIMIT);
    assert_null(data);
    assert_int_equal(
        tamis_read_file(TAMIS_SOURCE_DIR "/CMakeLists.txt", 0, &data, &len, err, sizeof(err)), 0);
    assert_true(len > 10);
    assert_non_null(strstr(data, "project(tamis"));
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arena_alloc_and_cleanup),
        cmocka_unit_test(test_buf_cap_is_sticky),
        cmocka_unit_test(test_diag_and_errors),
        cmocka_unit_test(test_read_file_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
