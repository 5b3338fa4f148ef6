// Checkpoints are torch.save files: Python reads one with torch.load and hands ckpt['model'] to
// the reference layout's load_state_dict. libtorch's optimizer state has no Python counterpart,
// so it rides along as the bytes of libtorch's own archive.
#include "ips/checkpoint.h"

#include <cstdio>
#include <cstring>
#include <sstream>

#include "ips/torch_file.h"
#include "ips/torchvision.h"
#include "ips/runtime.h"
#include "ips/vit_weights.h"

namespace ips {
namespace {

constexpr const char* kFormat = "ips-checkpoint-v2";
constexpr const char* kOptimizerKey = "optimizer_libtorch";

[[noreturn]] void fail(const std::string& path, const std::string& what) {
    throw std::runtime_error("checkpoint '" + path + "': " + what);
}

c10::impl::GenericDict string_dict(const c10::TypePtr& value_type) {
    return c10::impl::GenericDict(c10::StringType::get(), value_type);
}

// Our checkpoint's top-level dict, or an error saying what the file is instead.
c10::impl::GenericDict checkpoint_tree_of(const c10::IValue& root, const std::string& path) {
    if (!root.isGenericDict()) fail(path, "not an ips checkpoint (its top level is not a dict)");
    auto dict = root.toGenericDict();
    auto format = dict.find(std::string("format"));
    if (format == dict.end() || !format->value().isString() || format->value().toStringRef() != kFormat)
        fail(path, std::string("not an ips checkpoint (no format '") + kFormat + "' entry)");
    return dict;
}

c10::impl::GenericDict checkpoint_tree(const std::string& path) { return checkpoint_tree_of(torch_file_load(path), path); }

const c10::IValue& entry(const c10::impl::GenericDict& dict, const char* key, const std::string& path) {
    auto it = dict.find(std::string(key));
    if (it == dict.end()) fail(path, std::string("missing entry '") + key + "'");
    return it->value();
}

CheckpointMeta meta_of(const c10::impl::GenericDict& dict, const std::string& path) {
    CheckpointMeta meta;
    const auto& epoch = entry(dict, "epoch", path);
    const auto& step = entry(dict, "step", path);
    if (!epoch.isInt() || !step.isInt()) fail(path, "'epoch' and 'step' must be integers");
    meta.epoch = epoch.toInt();
    meta.step = step.toInt();
    auto best = dict.find(std::string("best_score"));
    if (best != dict.end() && best->value().isDouble()) meta.best_score = best->value().toDouble();
    auto yaml = dict.find(std::string("config_yaml"));
    if (yaml != dict.end() && yaml->value().isString()) meta.config_yaml = yaml->value().toStringRef();
    // Where inside an epoch the checkpoint was written (absent from older checkpoints: a boundary).
    const auto count = [&](const char* key) -> int64_t {
        auto it = dict.find(std::string(key));
        if (it == dict.end()) return 0;
        if (!it->value().isInt() || it->value().toInt() < 0) fail(path, std::string("'") + key + "' must be an integer >= 0");
        return it->value().toInt();
    };
    meta.epoch_batches = count("epoch_batches");
    meta.epoch_examples = count("epoch_examples");
    meta.epoch_skipped = count("epoch_skipped");
    auto loss_sum = dict.find(std::string("epoch_loss_sum"));
    if (loss_sum != dict.end()) {
        if (!loss_sum->value().isDouble()) fail(path, "'epoch_loss_sum' must be a float");
        meta.epoch_loss_sum = loss_sum->value().toDouble();
    }
    return meta;
}

NamedTensors model_state(const c10::impl::GenericDict& dict, const std::string& path) {
    const auto& model = entry(dict, "model", path);
    if (!model.isGenericDict()) fail(path, "'model' is not a state dict");
    NamedTensors sd;
    for (const auto& item : model.toGenericDict()) {
        if (!item.value().isTensor()) fail(path, "'model." + item.key().toStringRef() + "' is not a tensor");
        sd.emplace_back(item.key().toStringRef(), item.value().toTensor());
    }
    return sd;
}

}  // namespace

void checkpoint_save(const std::string& path, IPSNet& net, torch::optim::Optimizer* optimizer,
                     const CheckpointMeta& meta) {
    auto root = string_dict(c10::AnyType::get());
    root.insert(std::string("format"), std::string(kFormat));
    root.insert(std::string("epoch"), meta.epoch);
    root.insert(std::string("step"), meta.step);
    root.insert(std::string("best_score"), meta.best_score);
    root.insert(std::string("config_yaml"), meta.config_yaml);
    root.insert(std::string("epoch_batches"), meta.epoch_batches);
    root.insert(std::string("epoch_loss_sum"), meta.epoch_loss_sum);
    root.insert(std::string("epoch_examples"), meta.epoch_examples);
    root.insert(std::string("epoch_skipped"), meta.epoch_skipped);
    auto model = string_dict(c10::TensorType::get());
    for (const auto& [k, t] : state_dict_of(*net)) model.insert(k, t);
    root.insert(std::string("model"), model);
    if (optimizer) {
        torch::serialize::OutputArchive archive;
        optimizer->save(archive);
        std::ostringstream bytes;
        archive.save_to(bytes);
        const std::string s = bytes.str();
        auto blob = torch::empty({int64_t(s.size())}, torch::kUInt8);
        std::memcpy(blob.data_ptr(), s.data(), s.size());
        root.insert(std::string(kOptimizerKey), blob);
    }
    torch_file_write_value(path, root);  // atomic: a crash mid-write leaves the previous file intact
}

CheckpointMeta checkpoint_meta(const std::string& path) { return meta_of(checkpoint_tree(path), path); }

// Loads from an already-read checkpoint tree (weights_load reads the file once for both uses).
// A ViT trunk that adopted its weight file's pos_embed grid was saved with it (vit_weights.h).
static NamedTensors vit_grid_taken(IPSNet& net, NamedTensors sd, const std::string& path) {
    if (auto vit = net->vit())
        for (auto& [key, t] : sd)
            if (key == "encoder.1.pos_embed") vit_pos_embed_take(vit, t, path);
    return sd;
}

static CheckpointMeta checkpoint_apply(const c10::impl::GenericDict& dict, const std::string& path, IPSNet& net,
                                torch::optim::Optimizer* optimizer) {
    CheckpointMeta meta = meta_of(dict, path);
    state_dict_apply(*net, vit_grid_taken(net, model_state(dict, path), path), "", /*strict=*/true, path);
    if (optimizer) {
        auto it = dict.find(std::string(kOptimizerKey));
        if (it == dict.end() || !it->value().isTensor()) fail(path, "no optimizer state to resume from");
        const auto blob = it->value().toTensor().contiguous();
        torch::serialize::InputArchive archive;
        try {
            archive.load_from(static_cast<const char*>(blob.data_ptr()), size_t(blob.numel()));
            optimizer->load(archive);
        } catch (const c10::Error& e) {
            fail(path, std::string("unreadable optimizer state (") + e.what_without_backtrace() + ")");
        }
    }
    return meta;
}

CheckpointMeta checkpoint_load(const std::string& path, IPSNet& net, torch::optim::Optimizer* optimizer) {
    return checkpoint_apply(checkpoint_tree(path), path, net, optimizer);
}

void weights_load(const std::string& path, IPSNet& net) {
    c10::IValue root = torch_file_load(path);
    if (root.isGenericDict() && root.toGenericDict().contains(std::string("format"))) {
        checkpoint_apply(checkpoint_tree_of(root, path), path, net, nullptr);
        return;
    }
    // Anything else must be a state dict in the reference layout (torch.save(model.state_dict())).
    state_dict_apply(*net, vit_grid_taken(net, torch_file_read(path), path), "", /*strict=*/true, path);
}

void initial_weights_apply(IPSNet& net) {
    const ModelOptions& m = net->opt;
    if (auto vit = net->vit(); vit && !m.encoder_weights.empty())
        vit_load(vit, m.encoder_weights);
    else if (m.is_image && !m.encoder_weights.empty())
        trunk_load_torchvision(net->encoder, m.encoder_weights, m.n_res_blocks);
    else if (m.is_image && m.pretrained)
        std::fprintf(stderr, "warning: 'pretrained' is set but 'encoder_weights' names no file: the encoder "
                             "starts from random weights\n");
    // The file's tensors were copied into the module and freed, and runtime_configure keeps freed
    // memory on the heap.
    if (m.is_image && !m.encoder_weights.empty()) runtime_memory_release();
}

}  // namespace ips
