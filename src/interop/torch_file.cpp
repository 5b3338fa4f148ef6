// torch.save files: zip records through libtorch's PyTorchStreamReader/Writer (present with
// the same calls in libtorch 1.13 and 2.x), the pickle through pickle_read.cpp / pickle_write.cpp.
#include "ips/torch_file.h"

#include <caffe2/serialize/inline_container.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

#include "pickle_read.h"
#include "pickle_write.h"
#include "ips/config.h"
#include "ips/fault.h"
#include "ips/files.h"

namespace ips {
namespace {

using detail::PyKind;
using detail::PyRef;

[[noreturn]] void fail(const std::string& msg) { throw std::runtime_error(msg); }

std::string file_error(const std::string& path, const std::string& what) {
    return "torch file '" + path + "': " + what;
}

bool starts_with(const std::string& s, const std::string& prefix) {
    return s.compare(0, prefix.size(), prefix) == 0;
}

bool host_is_little_endian() {
    const uint16_t one = 1;
    uint8_t first = 0;
    std::memcpy(&first, &one, 1);
    return first == 1;
}

// Tells the kinds of file people pass by mistake apart before the zip reader gives a vaguer message.
void check_magic(const std::string& path) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) throw FileNotFound(file_error(path, "no such file"));
    if (std::filesystem::is_directory(path, ec)) fail(file_error(path, "is a directory"));
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(file_error(path, std::string("cannot open: ") + std::strerror(errno)));
    char magic[4] = {0, 0, 0, 0};
    in.read(magic, 4);
    if (in.gcount() < 4) fail(file_error(path, "too short to be a torch.save file (" +
                                                   std::to_string(in.gcount()) + " bytes)"));
    if (std::memcmp(magic, "PK\x03\x04", 4) == 0) return;
    if (static_cast<uint8_t>(magic[0]) == 0x80)
        fail(file_error(path, "legacy (PyTorch < 1.6) torch.save format is not supported; re-save it with "
                              "a newer PyTorch: torch.save(torch.load(f), f)"));
    fail(file_error(path, "not a zip archive, so not a torch.save file"));
}

// Files written on a machine of the other byte order are converted in place.
void swap_bytes(torch::Tensor& t) {
    size_t unit = c10::elementSize(t.scalar_type());
    if (t.is_complex()) unit /= 2;
    if (unit < 2) return;
    auto* p = static_cast<uint8_t*>(t.data_ptr());
    const size_t n = t.numel() * c10::elementSize(t.scalar_type());
    for (size_t k = 0; k + unit <= n; k += unit) std::reverse(p + k, p + k + unit);
}

std::string key_text(const PyRef& k) {
    switch (k->kind) {
        case PyKind::str: return k->s;
        case PyKind::integer: return std::to_string(k->i);
        case PyKind::boolean: return k->b ? "True" : "False";
        case PyKind::none: return "None";
        case PyKind::floating: {
            std::ostringstream s;
            s << k->f;
            return s.str();
        }
        case PyKind::tuple: {
            std::string s = "(";
            for (size_t i = 0; i < k->items.size(); ++i) s += (i ? ", " : "") + key_text(k->items[i]);
            return s + ")";
        }
        default: return "?";
    }
}

std::string join_key(const std::string& prefix, const std::string& key) {
    return prefix.empty() ? key : prefix + "." + key;
}

// A pickle can share one container many times (the memo), so a few bytes can expand into an
// exponential tree: the walks below stop after this many objects (real files hold thousands;
// found by fuzz/torch_pickle.cpp).
constexpr int64_t kMostObjects = int64_t(1) << 20;

void budget_spend(int64_t& budget) {
    if (--budget < 0) fail("more than " + std::to_string(kMostObjects) + " objects once shared containers are expanded");
}

void flatten(const PyRef& v, const std::string& key, NamedTensors& out, int depth, int64_t& budget) {
    // Containers can refer to themselves through the memo; real state dicts are a few levels deep.
    if (depth > 64) fail("containers nested more than 64 levels deep");
    budget_spend(budget);
    switch (v->kind) {
        case PyKind::tensor: out.emplace_back(key, v->tensor); break;
        case PyKind::dict:
            for (const auto& [k, item] : v->dict) flatten(item, join_key(key, key_text(k)), out, depth + 1, budget);
            break;
        case PyKind::tuple:
        case PyKind::list:
            for (size_t i = 0; i < v->items.size(); ++i)
                flatten(v->items[i], join_key(key, std::to_string(i)), out, depth + 1, budget);
            break;
        default: break;
    }
}

std::string top_level_keys(const NamedTensors& all) {
    std::vector<std::string> seen;
    for (const auto& [k, t] : all) {
        const std::string head = k.substr(0, k.find('.'));
        if (std::find(seen.begin(), seen.end(), head) == seen.end()) seen.push_back(head);
    }
    std::string s;
    for (size_t i = 0; i < seen.size() && i < 10; ++i) s += (i ? ", " : "") + seen[i];
    if (seen.size() > 10) s += ", ...";
    return s.empty() ? "none" : s;
}

c10::IValue ivalue_of(const PyRef& v, int depth, int64_t& budget) {
    if (depth > 64) fail("containers nested more than 64 levels deep");
    budget_spend(budget);
    switch (v->kind) {
        case PyKind::boolean: return v->b;
        case PyKind::integer: return v->i;
        case PyKind::floating: return v->f;
        case PyKind::str:
        case PyKind::bytes: return v->s;
        case PyKind::tensor: return v->tensor;
        case PyKind::tuple:
        case PyKind::list: {
            c10::impl::GenericList list(c10::AnyType::get());
            for (const auto& item : v->items) list.push_back(ivalue_of(item, depth + 1, budget));
            return list;
        }
        case PyKind::dict: {
            c10::impl::GenericDict dict(c10::StringType::get(), c10::AnyType::get());
            for (const auto& [k, item] : v->dict) dict.insert_or_assign(key_text(k), ivalue_of(item, depth + 1, budget));
            return dict;
        }
        default: return c10::IValue();
    }
}

PyRef read_archive(const std::string& path) {
    caffe2::serialize::PyTorchStreamReader reader(path);
    if (!reader.hasRecord("data.pkl")) {
        if (reader.hasRecord("constants.pkl") || reader.hasRecord("code/"))
            fail("a TorchScript archive (torch.jit.save), not a torch.save file");
        fail("no data.pkl record in the archive, so not a torch.save file");
    }
    bool swap = false;
    if (reader.hasRecord("byteorder")) {
        auto [ptr, size] = reader.getRecord("byteorder");
        const std::string order(static_cast<const char*>(ptr.get()), size);
        if (order != "little" && order != "big") fail("unknown byteorder record '" + order + "'");
        swap = (order == "little") != host_is_little_endian();
    }
    auto load_storage = [&](const std::string& key, torch::ScalarType dtype, int64_t numel) {
        const std::string name = "data/" + key;
        if (!reader.hasRecord(name)) fail("storage record '" + name + "' is missing");
        auto [ptr, size] = reader.getRecord(name);
        const size_t elem = c10::elementSize(dtype);
        if (size_t(numel) > size / elem)
            fail("storage record '" + name + "' holds " + std::to_string(size) + " bytes, the pickle needs " +
                 std::to_string(numel) + " x " + std::to_string(elem));
        const auto options = torch::TensorOptions().dtype(dtype);
        if (numel == 0) return torch::empty({0}, options);
        // The record's buffer becomes the storage; the deleter keeps it alive as long as the tensor.
        auto holder = std::make_shared<at::DataPtr>(std::move(ptr));
        auto t = torch::from_blob(holder->get(), {numel}, [holder](void*) {}, options);
        if (swap) swap_bytes(t);
        return t;
    };
    auto pkl_record = reader.getRecord("data.pkl");
    const std::string pkl(static_cast<const char*>(std::get<0>(pkl_record).get()), std::get<1>(pkl_record));
    return detail::pickle_load(pkl, load_storage);
}

// Runs `read` on the file, turning every failure into an error that names the file.
template <typename F>
auto with_file_errors(const std::string& path, F read) {
    check_magic(path);
    try {
        return read();
    } catch (const c10::Error& e) {
        std::string what = e.what_without_backtrace();
        if (what.find("central directory") != std::string::npos) what += " (the file is truncated or damaged)";
        fail(file_error(path, what));
    } catch (const std::exception& e) {
        fail(file_error(path, e.what()));
    }
}

}  // namespace

c10::IValue torch_file_load(const std::string& path) {
    return with_file_errors(path, [&] {
        int64_t budget = kMostObjects;
        return ivalue_of(read_archive(path), 0, budget);
    });
}

NamedTensors torch_file_read(const std::string& path, const std::string& root) {
    NamedTensors all = with_file_errors(path, [&] {
        NamedTensors out;
        int64_t budget = kMostObjects;
        flatten(read_archive(path), "", out, 0, budget);
        return out;
    });
    if (root.empty()) return all;
    NamedTensors picked;
    for (auto& [k, t] : all) {
        if (k == root) picked.emplace_back("", t);
        else if (starts_with(k, root + ".")) picked.emplace_back(k.substr(root.size() + 1), t);
    }
    if (picked.empty())
        fail(file_error(path, "no tensors under '" + root + "' (top-level keys: " + top_level_keys(all) + ")"));
    return picked;
}

void torch_file_write(const std::string& path, const NamedTensors& tensors) {
    c10::impl::GenericDict dict(c10::StringType::get(), c10::TensorType::get());
    for (const auto& [k, t] : tensors) {
        if (dict.contains(k)) fail(file_error(path, "key '" + k + "' appears twice"));
        dict.insert(k, t);
    }
    torch_file_write_value(path, dict);
}

void torch_file_write_value(const std::string& path, const c10::IValue& root) {
    std::vector<torch::Tensor> storages;
    std::string pkl;
    try {
        pkl = detail::pickle_value(root, storages);
    } catch (const std::exception& e) {
        fail(file_error(path, e.what()));
    }

    // The first write error (a full disk), kept; the sink then swallows the rest. It must not fail
    // towards the zip writer: the writer's destructor finishes the archive, and throws (ending the
    // process) when it has seen a failed write.
    std::string write_error;
    try {
        AtomicFile out(path);
        {
            // The function-based writer names the archive "archive/", as Python's torch.save does.
            std::function<size_t(const void*, size_t)> sink = [&out, &write_error](const void* buf, size_t n) -> size_t {
                if (!write_error.empty()) return n;
                try {
                    out.write(buf, n);
                } catch (const std::exception& e) {
                    write_error = e.what();
                }
                return n;
            };
            caffe2::serialize::PyTorchStreamWriter writer(sink);
            writer.writeRecord("data.pkl", pkl.data(), pkl.size());
            const std::string order = host_is_little_endian() ? "little" : "big";
            writer.writeRecord("byteorder", order.data(), order.size());
            static const char kNothing = 0;
            for (size_t k = 0; k < storages.size(); ++k) {
                const torch::Tensor& t = storages[k];
                const size_t bytes = t.numel() * t.element_size();
                writer.writeRecord("data/" + std::to_string(k), bytes ? t.data_ptr() : &kNothing, bytes);
                fault_point("torch-file-record-written");
            }
            writer.writeEndOfFile();
        }
        if (!write_error.empty()) fail(write_error);
        out.commit();
    } catch (const std::exception& e) {
        if (!write_error.empty()) fail(write_error);
        const auto* c10e = dynamic_cast<const c10::Error*>(&e);
        const std::string what = c10e ? c10e->what_without_backtrace() : e.what();
        fail(starts_with(what, "torch file '") || starts_with(what, "cannot write '") ? what : file_error(path, what));
    }
}

// ---- state dicts and modules ----

namespace {

void collect_state(const torch::nn::Module& m, const std::string& prefix, NamedTensors& out) {
    // libtorch registers an undefined "bias" for bias-free layers; PyTorch has no such entry.
    for (const auto& p : m.named_parameters(/*recurse=*/false))
        if (p.value().defined()) out.emplace_back(prefix + p.key(), p.value());
    for (const auto& b : m.named_buffers(/*recurse=*/false))
        if (b.value().defined()) out.emplace_back(prefix + b.key(), b.value());
    for (const auto& c : m.named_children()) collect_state(*c.value(), prefix + c.key() + ".", out);
}

bool is_batches_tracked(const std::string& key) {
    const std::string leaf = "num_batches_tracked";
    return key == leaf || (key.size() > leaf.size() && key.compare(key.size() - leaf.size() - 1, std::string::npos,
                                                                   "." + leaf) == 0);
}

std::string shape_text(torch::IntArrayRef sizes) {
    std::ostringstream s;
    s << sizes;
    return s.str();
}

void list_into(std::string& msg, const char* what, const std::vector<std::string>& names) {
    if (names.empty()) return;
    constexpr size_t kShown = 12;
    msg += "; " + std::to_string(names.size()) + " " + what + ": ";
    for (size_t i = 0; i < names.size() && i < kShown; ++i) msg += (i ? ", " : "") + names[i];
    if (names.size() > kShown) msg += ", ... (" + std::to_string(names.size() - kShown) + " more)";
}

// Checks everything first and copies only when the load is acceptable, so a failed strict load
// leaves the module as it was.
StateDictReport apply_state(torch::nn::Module& module, const NamedTensors& sd, const std::string& prefix,
                            bool strict, const std::string& source, const KeyShown& shown) {
    std::unordered_map<std::string, torch::Tensor> targets;
    std::vector<std::string> order;
    for (auto& [k, t] : state_dict_of(module)) {
        if (!starts_with(k, prefix)) continue;
        targets.emplace(k.substr(prefix.size()), t);
        order.push_back(k.substr(prefix.size()));
    }
    std::unordered_map<std::string, size_t> last;  // a repeated key: the later entry wins, as in a dict
    for (size_t i = 0; i < sd.size(); ++i) last[sd[i].first] = i;

    StateDictReport report;
    std::vector<std::string> mismatch_detail;
    std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;
    for (size_t i = 0; i < sd.size(); ++i) {
        const auto& [k, src] = sd[i];
        if (last[k] != i) continue;
        auto it = targets.find(k);
        if (it == targets.end()) {
            report.unexpected.push_back(k);
        } else if (!src.defined() || src.sizes() != it->second.sizes()) {
            report.shape_mismatch.push_back(k);
            mismatch_detail.push_back(shown(k) + " (file " + (src.defined() ? shape_text(src.sizes()) : "undefined") +
                                      ", module " + shape_text(it->second.sizes()) + ")");
        } else {
            copies.emplace_back(it->second, src);
        }
    }
    for (const auto& name : order)
        if (!last.count(name) && !is_batches_tracked(name)) report.missing.push_back(name);

    const bool bad = !report.missing.empty() || !report.unexpected.empty() || !report.shape_mismatch.empty();
    if (strict && bad) {
        std::vector<std::string> missing, unexpected;
        for (const auto& k : report.missing) missing.push_back(shown(k));
        for (const auto& k : report.unexpected) unexpected.push_back(shown(k));
        std::string msg = "state dict" + (source.empty() ? std::string() : " '" + source + "'") +
                          " does not fit the module" + (prefix.empty() ? "" : " (under '" + prefix + "')");
        list_into(msg, "shape mismatch", mismatch_detail);
        list_into(msg, "missing", missing);
        list_into(msg, "unexpected", unexpected);
        fail(msg);
    }
    torch::NoGradGuard no_grad;
    for (auto& [dst, src] : copies) dst.copy_(src);
    return report;
}

}  // namespace

NamedTensors state_dict_of(torch::nn::Module& module) {
    NamedTensors out;
    collect_state(module, "", out);
    return out;
}

StateDictReport state_dict_apply(torch::nn::Module& module, const NamedTensors& sd,
                                 const std::string& prefix_in_module, bool strict, const std::string& source,
                                 const KeyShown& key_shown) {
    const KeyShown same = [](const std::string& k) { return k; };
    return apply_state(module, sd, prefix_in_module, strict, source, key_shown ? key_shown : same);
}

}  // namespace ips
