// Small configs shared by the tests.
#pragma once

#include "ips/config.h"
#include "ips/model.h"

namespace ips::test {

// A feature-bag model small enough to train in seconds: F-d features, projector to D.
inline Config tiny_bag_config(int64_t N = 32, int64_t M = 4, int64_t I = 8, int H = 2, int n_token = 1) {
    Config c;
    c.model.is_image = false;
    c.model.n_chan_in = 8;
    c.model.D = 16;
    c.model.H = H;
    c.model.D_k = 8;
    c.model.D_v = 8;
    c.model.D_inner = 32;
    c.model.n_token = n_token;
    c.data.N = N;
    c.select.M = M;
    c.select.I = I;
    c.train.B = 4;
    c.train.B_seq = 4;
    c.model.n_class = 2;
    c.train.n_epoch = 2;
    c.train.n_epoch_warmup = 0;
    c.select.shuffle = false;
    c.model.dropout = 0;
    c.model.attn_dropout = 0;
    c.model.use_pos = false;
    c.model.tasks = {Task{0, "label", ActFn::softmax, Metric::accuracy}};
    return c;
}

// The net a config describes, with the current random state (tests seed before when they care).
inline IPSNet net_of(const Config& c) { return IPSNet(c.model, c.compute); }

// Selection of M patches in chunks of I, in grid order (no shuffle).
inline SelectOptions select_options(int64_t M, int64_t I) {
    SelectOptions o;
    o.M = M;
    o.I = I;
    o.shuffle = false;
    return o;
}

}  // namespace ips::test
