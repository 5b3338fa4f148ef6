// Small configs shared by the tests.
#pragma once

#include "ips/config.h"

namespace ips::test {

// A feature-bag model small enough to train in seconds: F-d features, projector to D.
inline Config tiny_bag_config(int64_t N = 32, int64_t M = 4, int64_t I = 8, int H = 2, int n_token = 1) {
    Config c;
    c.is_image = false;
    c.n_chan_in = 8;
    c.D = 16;
    c.H = H;
    c.D_k = 8;
    c.D_v = 8;
    c.D_inner = 32;
    c.n_token = n_token;
    c.N = N;
    c.M = M;
    c.I = I;
    c.B = 4;
    c.B_seq = 4;
    c.n_class = 2;
    c.n_epoch = 2;
    c.n_epoch_warmup = 0;
    c.shuffle = false;
    c.dropout = 0;
    c.attn_dropout = 0;
    c.use_pos = false;
    c.tasks = {Task{0, "label", ActFn::softmax, Metric::accuracy}};
    return c;
}

}  // namespace ips::test
