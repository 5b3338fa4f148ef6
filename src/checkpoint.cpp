#include "ips/checkpoint.h"

#include <cstdio>
#include <fstream>

#include "ips/torch_file.h"

namespace ips {
namespace {

constexpr const char* kFormat = "ips-checkpoint-v1";

void file_must_exist(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("checkpoint '" + path + "': cannot open file");
}

int64_t read_int(torch::serialize::InputArchive& ar, const char* key, const std::string& path) {
    c10::IValue v;
    if (!ar.try_read(key, v) || !v.isInt())
        throw std::runtime_error("checkpoint '" + path + "': missing entry '" + key + "'");
    return v.toInt();
}

// Mirrors Module::load, but names the file and the parameter on a missing entry or a shape
// mismatch (libtorch would silently resize on a mismatch).
void module_load(torch::nn::Module& m, torch::serialize::InputArchive& ar, const std::string& prefix,
                 const std::string& path) {
    torch::NoGradGuard no_grad;
    auto copy_into = [&](const std::string& name, torch::Tensor& dst, bool is_buffer) {
        torch::Tensor t;
        const std::string full = prefix + name;
        if (!ar.try_read(name, t, is_buffer))
            throw std::runtime_error("checkpoint '" + path + "': missing entry '" + full + "'");
        if (t.sizes() != dst.sizes())
            throw std::runtime_error("checkpoint '" + path + "': '" + full + "' has shape " +
                                     c10::str(t.sizes()) + ", the model expects " + c10::str(dst.sizes()));
        dst.copy_(t);
    };
    for (auto& item : m.named_parameters(/*recurse=*/false)) copy_into(item.key(), item.value(), false);
    for (auto& item : m.named_buffers(/*recurse=*/false)) copy_into(item.key(), item.value(), true);
    for (const auto& child : m.named_children()) {
        torch::serialize::InputArchive sub;
        if (!ar.try_read(child.key(), sub))
            throw std::runtime_error("checkpoint '" + path + "': missing module '" + prefix + child.key() + "'");
        module_load(*child.value(), sub, prefix + child.key() + ".", path);
    }
}

}  // namespace

void checkpoint_save(const std::string& path, IPSNet& net, torch::optim::Optimizer* optimizer,
                     const CheckpointMeta& meta) {
    torch::serialize::OutputArchive ar;
    ar.write("format", c10::IValue(std::string(kFormat)));
    ar.write("epoch", c10::IValue(meta.epoch));
    ar.write("step", c10::IValue(meta.step));
    ar.write("best_score", c10::IValue(meta.best_score));
    ar.write("config_yaml", c10::IValue(meta.config_yaml));
    torch::serialize::OutputArchive model_ar;
    net->save(model_ar);
    ar.write("model", model_ar);
    if (optimizer) {
        torch::serialize::OutputArchive opt_ar;
        optimizer->save(opt_ar);
        ar.write("optimizer", opt_ar);
    }
    // Write beside the target and rename: a crash mid-write leaves the previous file intact.
    const std::string tmp = path + ".tmp";
    ar.save_to(tmp);
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        throw std::runtime_error("checkpoint '" + path + "': cannot move the written file into place");
    }
}

CheckpointMeta checkpoint_meta(const std::string& path) {
    file_must_exist(path);
    torch::serialize::InputArchive ar;
    try {
        ar.load_from(path);
    } catch (const c10::Error& e) {
        throw std::runtime_error("checkpoint '" + path + "': not a readable ips checkpoint (" +
                                 std::string(e.what_without_backtrace()) + ")");
    }
    c10::IValue v;
    if (!ar.try_read("format", v) || !v.isString() || v.toStringRef() != kFormat)
        throw std::runtime_error("checkpoint '" + path + "': not an ips checkpoint (no '" + kFormat +
                                 "' marker)");
    CheckpointMeta meta;
    meta.epoch = read_int(ar, "epoch", path);
    meta.step = read_int(ar, "step", path);
    if (ar.try_read("best_score", v) && v.isDouble()) meta.best_score = v.toDouble();
    if (ar.try_read("config_yaml", v) && v.isString()) meta.config_yaml = v.toStringRef();
    return meta;
}

CheckpointMeta checkpoint_load(const std::string& path, IPSNet& net, torch::optim::Optimizer* optimizer) {
    CheckpointMeta meta = checkpoint_meta(path);
    torch::serialize::InputArchive ar;
    ar.load_from(path);
    torch::serialize::InputArchive model_ar;
    if (!ar.try_read("model", model_ar))
        throw std::runtime_error("checkpoint '" + path + "': no model entry");
    module_load(*net, model_ar, "", path);
    if (optimizer) {
        torch::serialize::InputArchive opt_ar;
        if (!ar.try_read("optimizer", opt_ar))
            throw std::runtime_error("checkpoint '" + path + "': no optimizer state to resume from");
        optimizer->load(opt_ar);
    }
    return meta;
}

void weights_load(const std::string& path, IPSNet& net) {
    std::string ours_error;
    try {
        checkpoint_load(path, net, nullptr);
        return;
    } catch (const std::exception& e) {
        ours_error = e.what();
    }
    NamedTensors sd;
    try {
        sd = torch_file_read(path);
    } catch (const std::exception& e) {
        throw std::runtime_error("weights '" + path + "' are neither an ips checkpoint (" + ours_error +
                                 ") nor a PyTorch state dict (" + e.what() + ")");
    }
    state_dict_apply(*net, sd, "", /*strict=*/true, path);
}

}  // namespace ips
