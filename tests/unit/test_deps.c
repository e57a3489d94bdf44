/* scripts/deps.sh --check (what plain `make` runs) names the missing Debian
 * packages and installs nothing: here dpkg-query reports every package
 * missing and apt-get records that it ran. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "testlib.h"

Test(deps, check_names_the_missing_packages_and_installs_nothing) {
    char dir[64], cmd[1024];
    test_tmpdir(dir, sizeof dir, "mmdet_deps");
    snprintf(cmd, sizeof cmd,
             "printf '#!/bin/sh\\nexit 1\\n' > %s/dpkg-query && printf '#!/bin/sh\\ntouch %s/apt-ran\\n' > %s/apt-get && "
             "chmod +x %s/dpkg-query %s/apt-get && PATH=%s:$PATH scripts/deps.sh build --check 2> %s/err",
             dir, dir, dir, dir, dir, dir, dir);
    cr_assert_neq(system(cmd), 0, "--check succeeded with every package missing");
    char path[128], text[4096] = "";
    snprintf(path, sizeof path, "%s/err", dir);
    FILE *f = fopen(path, "r");
    cr_assert(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    cr_assert(strstr(text, "deps: missing packages: build-essential pkg-config libltdl-dev") &&
              strstr(text, "make deps"), "%s", text);
    snprintf(path, sizeof path, "%s/apt-ran", dir);
    cr_assert_neq(access(path, F_OK), 0, "apt-get ran");
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
