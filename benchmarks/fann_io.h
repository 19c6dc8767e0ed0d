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

/* A network of logistic sigmoid units trained on the gradient of the MSE, as bpfast's
   sigmoid + mse networks: FANN_SIGMOID is 1/(1+exp(-2 s x)), and steepness s = 0.5 makes
   it the logistic function; the default FANN_ERRORFUNC_TANH steps along
   log((1 + d) / (1 - d)) = 2 atanh(d) for d = t - y instead of d. */
static struct fann *logistic_mse_network(unsigned n_layers, const unsigned *sizes)
{
    struct fann *ann = fann_create_standard_array(n_layers, sizes);
    fann_set_activation_function_hidden(ann, FANN_SIGMOID);
    fann_set_activation_function_output(ann, FANN_SIGMOID);
    fann_set_activation_steepness_hidden(ann, 0.5);
    fann_set_activation_steepness_output(ann, 0.5);
    fann_set_train_error_function(ann, FANN_ERRORFUNC_LINEAR);
    return ann;
}

/* The network whose layer count is argv[first] and whose widths follow it, the last
   arguments; NULL (after printing `usage`) when they are not that. */
static struct fann *network_from_args(int argc, char **argv, int first, const char *usage)
{
    unsigned sizes[64], n_layers, k;
    if (argc <= first || (n_layers = atoi(argv[first])) < 2 || n_layers > 64
            || argc != first + 1 + (int)n_layers) {
        fprintf(stderr, "usage: %s\n", usage);
        return NULL;
    }
    for (k = 0; k < n_layers; k++)
        sizes[k] = atoi(argv[first + 1 + k]);
    return logistic_mse_network(n_layers, sizes);
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

/* What a timing program reads from stdin: the weights of ann, then n_rows rows of inputs
   *X and of targets *Y (row-major). */
static void read_input(struct fann *ann, long n_rows, const char *program, double **X, double **Y)
{
    read_weights(ann, program);
    *X = read_doubles((size_t)n_rows * fann_get_num_input(ann), program);
    *Y = read_doubles((size_t)n_rows * fann_get_num_output(ann), program);
}

#endif
