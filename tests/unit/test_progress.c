/* mmcv's ProgressBar off a terminal (md_progress on a file): whole lines,
 * one per tenth of the total and one at the end, no carriage returns. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include <mmdet/evaluation.h>

static int read_back(FILE *f, char *buf, size_t n) {
    rewind(f);
    size_t k = fread(buf, 1, n - 1, f);
    buf[k] = 0;
    int lines = 0;
    for (size_t i = 0; i < k; i++) lines += buf[i] == '\n';
    return lines;
}

Test(progress, a_file_gets_a_line_per_tenth) {
    FILE *f = tmpfile();
    cr_assert(f);
    md_progress p;
    md_progress_start(&p, f, 25);
    for (int i = 0; i < 25; i++) md_progress_update(&p, 1);
    md_progress_finish(&p);
    char buf[8192];
    /* tenths are crossed at 3, 5, 8, 10, 13, 15, 18, 20, 23 and 25 */
    cr_expect_eq(read_back(f, buf, sizeof buf), 10, "%s", buf);
    cr_expect(!strchr(buf, '\r'), "%s", buf);
    const char *want[] = { "] 3/25, ", "] 5/25, ", "] 13/25, ", "] 23/25, ", "] 25/25, " };
    for (int k = 0; k < 5; k++) cr_expect(strstr(buf, want[k]), "no %s in %s", want[k], buf);
    cr_expect_null(strstr(buf, "] 4/25, "));
    cr_expect(strstr(buf, "[>>>>") && strstr(buf, "ETA:"), "mmcv's bar text: %s", buf);
    fclose(f);
}

Test(progress, few_tasks_each_get_a_line_and_unknown_totals_end_with_one) {
    FILE *f = tmpfile();
    md_progress p;
    md_progress_start(&p, f, 3);
    for (int i = 0; i < 3; i++) md_progress_update(&p, 1);
    md_progress_finish(&p);
    char buf[4096];
    cr_expect_eq(read_back(f, buf, sizeof buf), 3, "%s", buf);
    fclose(f);
    f = tmpfile();
    md_progress_start(&p, f, 0);
    md_progress_update(&p, 4);
    md_progress_finish(&p);
    cr_expect_eq(read_back(f, buf, sizeof buf), 1, "%s", buf);
    cr_expect(strstr(buf, "completed: 4,"), "%s", buf);
    fclose(f);
}
