/* Regression test for every fuzz finding and seed of the message parser: each file under
 * fuzz/corpus_msg/ is parsed and every accessor is walked. Under ASan+UBSan (CI's second pass) a
 * memory error fails the test; in both builds the parse must succeed and stay self-consistent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tamis/msg.h"

#define SEED_DIR TAMIS_SOURCE_DIR "/fuzz/corpus_msg"

static size_t walk(const tamis_msg_t *m)
{
    size_t touched = 0;
    for (size_t i = 0; i < tamis_msg_header_count(m); i++)
        touched += strlen(tamis_msg_header_at(m, i)->decoded) > 0;
    for (size_t i = 0; i < tamis_msg_body_line_count(m); i++)
        touched += tamis_msg_body_line(m, i).len > 0;
    for (size_t i = 0; i < tamis_msg_rawbody_count(m); i++)
        touched += tamis_msg_rawbody_chunk(m, i).len > 0;
    for (size_t i = 0; i < tamis_msg_part_count(m); i++)
        touched += tamis_msg_part_at(m, i)->type[0] != '\0';
    for (size_t i = 0; i < tamis_msg_uri_string_count(m); i++)
        touched += tamis_msg_uri_string(m, i)[0] != '\0';
    for (size_t i = 0; i < tamis_msg_relay_count(m); i++)
        touched += tamis_msg_relay_at(m, i) != NULL;
    return touched;
}

static void test_every_seed_parses(void **state)
{
    (void)state;
    DIR *d = opendir(SEED_DIR);
    assert_non_null(d);
    size_t files = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", SEED_DIR, e->d_name);
        char *data = NULL;
        size_t len = 0;
        char err[256];
        if (tamis_read_file(path, 16 << 20, &data, &len, err, sizeof err) != 0)
            continue; /* a sub-folder */
        tamis_msg_t *m = NULL;
        int rc = tamis_msg_parse(data, len, NULL, &m, err, sizeof err);
        if (rc != 0)
            fail_msg("%s: %s", e->d_name, err);
        /* the pristine view is never longer than the input */
        assert_true(tamis_msg_pristine(m).len <= len);
        walk(m);
        tamis_msg_free(m);
        free(data);
        files++;
    }
    closedir(d);
    assert_true(files >= 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_seed_parses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
