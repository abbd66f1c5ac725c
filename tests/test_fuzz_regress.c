/* SPDX-License-Identifier: MIT */
/* test_fuzz_regress.c - replays every saved fuzz input through the fuzz
 * targets (fuzz/targets.c) without libFuzzer, so inputs that once crashed a
 * reader stay fixed, and feeds the whole bad-input corpus (tests/bad/) to
 * every reader. A target abort()s on a violated property (round trip,
 * finite values), which kills this program and fails the run; under
 * `make sanitize` memory errors do the same.
 *
 * What each program does with each bad file (exit status, message naming
 * file and line, no output left) is checked by tests/test_bad_inputs.sh. */
#include <dirent.h>
#include <stdint.h>
#include <string.h>

#include "../fuzz/targets.c"
#include "harness.h"

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, len = 0;
    unsigned char *b = malloc(cap);
    size_t got;
    while (b && (got = fread(b + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            unsigned char *nb = realloc(b, cap *= 2);
            if (!nb) { free(b); b = NULL; }
            else b = nb;
        }
    }
    fclose(f);
    *n = len;
    return b;
}

typedef int (*target_fn)(const uint8_t *, size_t);

/* Replay every regular file of dir through fn; returns the count. */
static int replay_dir(const char *dir, target_fn fn) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int count = 0;
    struct dirent *e;
    /* Sort names so the order (and any failure message) is reproducible. */
    char *names[4096];
    int nn = 0;
    while ((e = readdir(d)) && nn < 4096)
        if (e->d_name[0] != '.' && strcmp(e->d_name, "README.md") != 0) {
            size_t l = strlen(e->d_name) + 1;
            names[nn] = malloc(l);
            memcpy(names[nn++], e->d_name, l);
        }
    closedir(d);
    for (int i = 1; i < nn; i++)
        for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char *t = names[j]; names[j] = names[j - 1]; names[j - 1] = t;
        }
    for (int i = 0; i < nn; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        size_t n = 0;
        unsigned char *buf = slurp(path, &n);
        if (buf) {
            fn(buf, n);
            count++;
            free(buf);
        }
        free(names[i]);
    }
    return count;
}

int main(void) {
    static const struct { const char *name; target_fn fn; } t[] = {
        {"xyz", fuzz_xyz}, {"eann_model", fuzz_eann_model}, {"kqeq_model", fuzz_kqeq_model}};
    int total = 0;
    for (int i = 0; i < 3; i++) {
        char dir[256];
        snprintf(dir, sizeof dir, "fuzz/regress/%s", t[i].name);
        int n = replay_dir(dir, t[i].fn);
        snprintf(dir, sizeof dir, "fuzz/seeds/%s", t[i].name);
        n += replay_dir(dir, t[i].fn);
        /* Every reader must survive every bad-corpus file, whatever its kind. */
        n += replay_dir("tests/bad", t[i].fn);
        printf("%s: replayed %d inputs\n", t[i].name, n);
        CHECK(n > 0, "no inputs found for target %s (run from the repository root)", t[i].name);
        total += n;
    }
    CHECK(total >= 30, "only %d inputs replayed", total);
    return th_done("test_fuzz_regress");
}
