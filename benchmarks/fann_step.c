/* fann_step.c: FANN's fann_train timed inside a C program, for benchmarks/bench.py */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <doublefann.h>

/* bench.py (peers.fann_program) compiles this program once per run against doublefann
   (needs libfann-dev: without it the FANN column is skipped) and starts it once per timed
   block. It sets FANN's weights to the case's initial parameters, times n_steps calls of
   fann_train (one row per call, cycling through the rows) with CLOCK_PROCESS_CPUTIME_ID and
   CLOCK_MONOTONIC, and prints both times and then every connection's weight, for the
   correctness check.

   usage: fann_step n_steps lr n_rows n_layers size_0 ... size_last
   stdin (doubles): the weights in fann_get_connection_array's order, the rows of X, the rows of Y
   stdout: "cpu_seconds wall_seconds" of the n_steps calls, then "from to weight" per connection */

#include "fann_io.h"

int main(int argc, char **argv)
{
    unsigned k;
    long n_steps, n_rows, i, r;
    float lr;
    struct fann *ann = network_from_args(
        argc, argv, 4, "fann_step n_steps lr n_rows n_layers size_0 ... size_last");
    if (ann == NULL)
        return 2;
    n_steps = atol(argv[1]);
    lr = (float)atof(argv[2]);          /* FANN keeps its learning rate as a float */
    n_rows = atol(argv[3]);
    fann_set_learning_rate(ann, lr);
    fann_set_learning_momentum(ann, 0);

    double *X, *Y;
    read_input(ann, n_rows, "fann_step", &X, &Y);
    unsigned n_in = fann_get_num_input(ann), n_out = fann_get_num_output(ann);

    double c0 = seconds(CLOCK_PROCESS_CPUTIME_ID), w0 = seconds(CLOCK_MONOTONIC);
    for (i = 0, r = 0; i < n_steps; i++) {
        fann_train(ann, X + r * n_in, Y + r * n_out);
        if (++r == n_rows)
            r = 0;
    }
    double w1 = seconds(CLOCK_MONOTONIC), c1 = seconds(CLOCK_PROCESS_CPUTIME_ID);

    printf("%.9e %.9e\n", c1 - c0, w1 - w0);
    unsigned n_con = fann_get_total_connections(ann);
    struct fann_connection *con = malloc(n_con * sizeof *con);
    fann_get_connection_array(ann, con);
    for (k = 0; k < n_con; k++)
        printf("%u %u %.17g\n", con[k].from_neuron, con[k].to_neuron, con[k].weight);
    fann_destroy(ann);
    return 0;
}
