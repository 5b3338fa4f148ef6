// The checks fuzz_torch_file and fuzz_torch_pickle run on one torch.save file.
#pragma once

#include "fuzz_util.h"
#include "ips/torch_file.h"

namespace ips_fuzz {

// Walks what torch_file_load returned, touching every tensor; `budget` bounds the walk (a value
// reached twice through the memo is walked twice, as the reader builds it).
inline void ivalue_walk(const c10::IValue& v, int depth, int64_t& budget) {
    if (--budget < 0) return;
    if (depth > 200) fuzz_fail("torch_file_load returned containers nested deeper than its limit");
    if (v.isTensor()) {
        tensor_touch(v.toTensor());
    } else if (v.isGenericDict()) {
        for (const auto& kv : v.toGenericDict()) {
            if (!kv.key().isString()) fuzz_fail("torch_file_load returned a dict key that is not text");
            ivalue_walk(kv.value(), depth + 1, budget);
        }
    } else if (v.isList()) {
        for (const c10::IValue& item : v.toListRef()) ivalue_walk(item, depth + 1, budget);
    } else if (!(v.isNone() || v.isInt() || v.isDouble() || v.isBool() || v.isString())) {
        fuzz_fail("torch_file_load returned a value of kind " + v.tagKind());
    }
}

inline void torch_file_check(const std::string& path) {
    std::string first_key;
    try {
        ips::NamedTensors all = ips::torch_file_read(path);
        for (const auto& [k, t] : all) {
            if (!t.defined()) fuzz_fail("torch_file_read returned an undefined tensor for '" + k + "'");
            tensor_touch(t);
        }
        if (!all.empty()) first_key = all.front().first;
    } catch (const std::exception& e) {
        note(e);
    }
    if (!first_key.empty()) {
        // The root filter: the first key's leading component, as `--set encoder_weights` users pass it.
        const std::string root = first_key.substr(0, first_key.find('.'));
        try {
            for (const auto& [k, t] : ips::torch_file_read(path, root)) tensor_touch(t);
        } catch (const std::exception& e) {
            note(e);
        }
    }
    try {
        int64_t budget = 100000;
        ivalue_walk(ips::torch_file_load(path), 0, budget);
    } catch (const std::exception& e) {
        note(e);
    }
}

}  // namespace ips_fuzz
