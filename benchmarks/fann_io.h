/* What the FANN timing programs share: the clock and reading their input. */
#ifndef BPFAST_FANN_IO_H
#define BPFAST_FANN_IO_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <doublefann.h>

static double seconds(clockid_t clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* n doubles from stdin, or exit with status 2 naming the program. */
static double *read_doubles(size_t n, const char *program)
{
    double *p = malloc(n * sizeof *p);
    if (p == NULL || fread(p, sizeof *p, n, stdin) != n) {
        fprintf(stderr, "%s: expected %zu doubles on stdin\n", program, n);
        exit(2);
    }
    return p;
}

/* The weights of ann from stdin, in fann_get_connection_array's order. */
static void read_weights(struct fann *ann, const char *program)
{
    unsigned k, n_con = fann_get_total_connections(ann);
    struct fann_connection *con = malloc(n_con * sizeof *con);
    double *w = read_doubles(n_con, program);
    fann_get_connection_array(ann, con);
    for (k = 0; k < n_con; k++)
        con[k].weight = w[k];
    fann_set_weight_array(ann, con, n_con);
}

#endif
