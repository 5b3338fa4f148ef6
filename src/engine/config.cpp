#include "ips/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "ips/vit.h"

namespace ips {
namespace {

// One row per key: how to read it from YAML into Config and how to write it back.
// A table keeps the reader, the writer and the list of known keys in one place.
struct KeySpec {
    const char* key;
    std::function<void(Config&, const YAML::Node&)> read;
    std::function<void(const Config&, YAML::Emitter&)> write;
};

[[noreturn]] void key_fail(const std::string& key, const std::string& why) {
    throw ConfigError("config key '" + key + "': " + why);
}

template <typename T>
T scalar_as(const YAML::Node& node, const std::string& key, const char* type_name) {
    if (!node.IsScalar()) key_fail(key, std::string("expected ") + type_name);
    try {
        return node.as<T>();
    } catch (const YAML::Exception&) {
        key_fail(key, std::string("expected ") + type_name + ", got '" + node.Scalar() + "'");
    }
}

template <typename T> const char* type_name_of();
template <> const char* type_name_of<int>() { return "an integer"; }
template <> const char* type_name_of<int64_t>() { return "an integer"; }
template <> const char* type_name_of<double>() { return "a number"; }
// Reference files write Python booleans (True/False); yaml-cpp accepts those too.
template <> const char* type_name_of<bool>() { return "a boolean (true/false)"; }
template <> const char* type_name_of<std::string>() { return "a string"; }

// A key stored at cfg.*section.*field: the table names both members, so every layer's struct is
// filled by the same reader and writer.
template <typename S, typename T>
KeySpec field_key(const char* key, S Config::*section, T S::*field) {
    return {key, [=](Config& c, const YAML::Node& n) { (c.*section).*field = scalar_as<T>(n, key, type_name_of<T>()); },
            [=](const Config& c, YAML::Emitter& e) {
                e << YAML::Key << key << YAML::Value;
                if constexpr (std::is_same_v<T, bool>) e << YAML::TrueFalseBool;
                e << (c.*section).*field;
            }};
}

// An enum key: its YAML names in enum order.
template <typename S, typename E>
KeySpec enum_key(const char* key, S Config::*section, E S::*field, std::vector<const char*> names) {
    return {key,
            [=](Config& c, const YAML::Node& n) {
                const std::string v = scalar_as<std::string>(n, key, "a string");
                std::string list;
                for (size_t i = 0; i < names.size(); ++i) {
                    if (v == names[i]) {
                        (c.*section).*field = static_cast<E>(i);
                        return;
                    }
                    list += std::string(i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i];
                }
                key_fail(key, "must be " + list + ", got '" + v + "'");
            },
            [=](const Config& c, YAML::Emitter& e) {
                e << YAML::Key << key << YAML::Value << names[static_cast<size_t>((c.*section).*field)];
            }};
}

template <typename S>
KeySpec pair_key(const char* key, S Config::*section, std::array<int64_t, 2> S::*field) {
    return {key,
            [=](Config& c, const YAML::Node& n) {
                if (n.IsScalar()) {  // a single number means a square
                    int64_t v = scalar_as<int64_t>(n, key, "an integer or a list of two integers");
                    (c.*section).*field = {v, v};
                    return;
                }
                if (!n.IsSequence() || n.size() != 2) key_fail(key, "expected a list of two integers, e.g. [50, 50]");
                (c.*section).*field = {scalar_as<int64_t>(n[0], key, "an integer"),
                                       scalar_as<int64_t>(n[1], key, "an integer")};
            },
            [=](const Config& c, YAML::Emitter& e) {
                const auto& v = (c.*section).*field;
                e << YAML::Key << key << YAML::Value << YAML::Flow << std::vector<int64_t>{v[0], v[1]};
            }};
}

const std::vector<const char*> kActFnNames = {"softmax", "sigmoid"};
const std::vector<const char*> kMetricNames = {"accuracy", "multilabel_accuracy", "auc"};
const std::vector<const char*> kEncoderNames = {"resnet18", "resnet34", "resnet50", "vit"};

// freeze_encoder: none (-1), all (0), or K (all but the last K blocks).
KeySpec freeze_key() {
    constexpr const char* key = "freeze_encoder";
    return {key,
            [](Config& c, const YAML::Node& n) {
                const std::string v = scalar_as<std::string>(n, key, "none, all or a number of blocks");
                if (v == "none") {
                    c.model.freeze_encoder = -1;
                } else if (v == "all") {
                    c.model.freeze_encoder = 0;
                } else {
                    int k = -1;
                    try {
                        k = n.as<int>();
                    } catch (const YAML::Exception&) {
                    }
                    if (k < 0) key_fail(key, "must be none, all or the number of last blocks that train (>= 0), got '" + v + "'");
                    c.model.freeze_encoder = k;
                }
            },
            [](const Config& c, YAML::Emitter& e) {
                e << YAML::Key << key << YAML::Value;
                const int k = c.model.freeze_encoder;
                if (k < 0) e << "none";
                else if (k == 0) e << "all";
                else e << k;
            }};
}

template <typename E>
E name_parse(const std::string& s, const std::vector<const char*>& names, const std::string& key) {
    for (size_t i = 0; i < names.size(); ++i)
        if (s == names[i]) return static_cast<E>(i);
    std::string list;
    for (size_t i = 0; i < names.size(); ++i) list += std::string(i ? ", " : "") + names[i];
    key_fail(key, "expected one of " + list + ", got '" + s + "'");
}

Task task_read(const YAML::Node& t, const std::string& tkey) {
    if (!t.IsMap()) key_fail(tkey, "expected a map");
    Task task;
    for (const auto& f : t) {
        const std::string field = f.first.as<std::string>();
        const std::string fkey = tkey + "." + field;
        if (field == "id") task.id = scalar_as<int>(f.second, fkey, "an integer");
        else if (field == "name") task.name = scalar_as<std::string>(f.second, fkey, "a string");
        else if (field == "act_fn") task.act_fn = name_parse<ActFn>(scalar_as<std::string>(f.second, fkey, "a string"), kActFnNames, fkey);
        else if (field == "metric") task.metric = name_parse<Metric>(scalar_as<std::string>(f.second, fkey, "a string"), kMetricNames, fkey);
        else throw ConfigError("unknown config key '" + fkey + "' (a task has id, name, act_fn, metric)");
    }
    if (task.name.empty()) key_fail(tkey + ".name", "missing");
    return task;
}

void tasks_read(Config& c, const YAML::Node& n) {
    if (!n.IsMap()) key_fail("tasks", "expected a map of tasks");
    c.model.tasks.clear();
    for (const auto& kv : n) c.model.tasks.push_back(task_read(kv.second, "tasks." + kv.first.as<std::string>()));
}

void tasks_write(const Config& c, YAML::Emitter& e) {
    e << YAML::Key << "tasks" << YAML::Value << YAML::BeginMap;
    for (size_t i = 0; i < c.model.tasks.size(); ++i) {
        const Task& t = c.model.tasks[i];
        e << YAML::Key << ("task" + std::to_string(i)) << YAML::Value << YAML::BeginMap;
        e << YAML::Key << "id" << YAML::Value << t.id;
        e << YAML::Key << "name" << YAML::Value << t.name;
        e << YAML::Key << "act_fn" << YAML::Value << kActFnNames[static_cast<size_t>(t.act_fn)];
        e << YAML::Key << "metric" << YAML::Value << metric_name(t.metric);
        e << YAML::EndMap;
    }
    e << YAML::EndMap;
}

// Keys in the order the reference's files and our saved configs list them; one row per key, so the
// table stays whole even though it runs past a screen.
const std::vector<KeySpec>& key_table() {
    using C = Config;
    using T = TrainOptions;
    using D = DataOptions;
    using Mo = ModelOptions;
    using S = SelectOptions;
    static const std::vector<KeySpec> table = {
        field_key("n_epoch", &C::train, &T::n_epoch),
        field_key("B", &C::train, &T::B),
        field_key("B_seq", &C::train, &T::B_seq),
        field_key("n_epoch_warmup", &C::train, &T::n_epoch_warmup),
        field_key("lr", &C::train, &T::lr),
        field_key("wd", &C::train, &T::wd),
        field_key("n_class", &C::model, &Mo::n_class),
        field_key("data_dir", &C::data, &D::data_dir),
        field_key("train_fname", &C::data, &D::train_fname),
        field_key("test_fname", &C::data, &D::test_fname),
        field_key("eager", &C::data, &D::eager),
        field_key("dataset", &C::data, &D::dataset),
        enum_key("normalize", &C::data, &D::normalize, {"none", "imagenet"}),
        field_key("n_train", &C::data, &D::n_train),
        field_key("n_test", &C::data, &D::n_test),
        pair_key("img_size", &C::data, &D::img_size),
        field_key("slide_level", &C::data, &D::slide_level),
        field_key("slide_mpp", &C::data, &D::slide_mpp),
        field_key("bag_patch_size", &C::data, &D::bag_patch_size),
        field_key("tissue", &C::data, &D::tissue),
        field_key("tissue_min", &C::data, &D::tissue_min),
        field_key("eps", &C::train, &T::eps),
        field_key("sync_bn", &C::train, &T::sync_bn),
        enum_key("nonfinite_loss", &C::train, &T::nonfinite_loss, {"stop", "skip"}),
        {"seed", [](C& c, const YAML::Node& n) { c.seed = scalar_as<int64_t>(n, "seed", "an integer"); },
         [](const C& c, YAML::Emitter& e) { e << YAML::Key << "seed" << YAML::Value << c.seed; }},
        field_key("is_image", &C::model, &Mo::is_image),
        enum_key("enc_type", &C::model, &Mo::enc_type, kEncoderNames),
        field_key("pretrained", &C::model, &Mo::pretrained),
        field_key("encoder_weights", &C::model, &Mo::encoder_weights),
        field_key("vit", &C::model, &Mo::vit),
        field_key("vit_depth", &C::model, &Mo::vit_depth),
        freeze_key(),
        field_key("n_chan_in", &C::model, &Mo::n_chan_in),
        field_key("n_res_blocks", &C::model, &Mo::n_res_blocks),
        field_key("encoder_width", &C::model, &Mo::encoder_width),
        enum_key("precision", &C::compute, &ComputeOptions::precision, {"auto", "fp32", "tf32", "bf16"}),
        enum_key("channels_last", &C::compute, &ComputeOptions::channels_last, {"auto", "true", "false"}),
        field_key("cudnn_benchmark", &C::compute, &ComputeOptions::cudnn_benchmark),
        field_key("shuffle", &C::select, &S::shuffle),
        enum_key("shuffle_style", &C::select, &S::shuffle_style, {"batch", "instance"}),
        field_key("shuffle_eval", &C::select, &S::shuffle_eval),
        field_key("n_token", &C::model, &Mo::n_token),
        field_key("N", &C::data, &D::N),
        field_key("M", &C::select, &S::M),
        field_key("I", &C::select, &S::I),
        pair_key("patch_size", &C::data, &D::patch_size),
        pair_key("patch_stride", &C::data, &D::patch_stride),
        field_key("use_pos", &C::model, &Mo::use_pos),
        field_key("H", &C::model, &Mo::H),
        field_key("D", &C::model, &Mo::D),
        field_key("D_k", &C::model, &Mo::D_k),
        field_key("D_v", &C::model, &Mo::D_v),
        field_key("D_inner", &C::model, &Mo::D_inner),
        field_key("attn_dropout", &C::model, &Mo::attn_dropout),
        field_key("dropout", &C::model, &Mo::dropout),
        field_key("zero_keys", &C::model, &Mo::zero_keys),
        {"tasks", tasks_read, tasks_write},
    };
    return table;
}

// Keys of the reference implementation that have no meaning here (its data loader and
// profiling switches): accepted so that its files load unchanged, and reported.
const std::set<std::string>& ignored_reference_keys() {
    static const std::set<std::string> keys = {"n_worker", "pin_memory", "track_efficiency", "track_epoch"};
    return keys;
}

// --set a.b.c=value: walk (and create) nested maps; the value is parsed as YAML.
void override_apply(YAML::Node& root, const std::string& assignment) {
    auto eq = assignment.find('=');
    if (eq == std::string::npos || eq == 0) throw ConfigError("override '" + assignment + "': expected KEY=VALUE");
    std::string key = assignment.substr(0, eq);
    YAML::Node value;
    try {
        // "key=" sets an empty string (to clear a file key such as encoder_weights).
        value = eq + 1 == assignment.size() ? YAML::Node(std::string()) : YAML::Load(assignment.substr(eq + 1));
    } catch (const YAML::Exception& e) {
        throw ConfigError("override of config key '" + key + "': value is not valid YAML: " + e.what());
    }
    std::vector<std::string> path;
    std::stringstream ss(key);
    for (std::string part; std::getline(ss, part, '.');) path.push_back(part);
    // yaml-cpp nodes are handles, so walking with operator[] on copies edits the tree in place.
    std::vector<YAML::Node> chain{root};
    for (size_t i = 0; i + 1 < path.size(); ++i) chain.push_back(chain.back()[path[i]]);
    chain.back()[path.back()] = value;
}

void train_validate(const TrainOptions& t) {
    if (t.n_epoch < 1) key_fail("n_epoch", "must be >= 1");
    if (t.B < 1) key_fail("B", "must be >= 1");
    // B_seq above B means "all B at once" (so --set B=2 works on a B_seq: 16 file).
    if (t.B_seq < 1) key_fail("B_seq", "must be >= 1");
    if (t.n_epoch_warmup < 0 || t.n_epoch_warmup > t.n_epoch) key_fail("n_epoch_warmup", "must be between 0 and n_epoch");
    if (!(t.lr > 0)) key_fail("lr", "must be > 0");
    if (t.wd < 0) key_fail("wd", "must be >= 0");
    if (!(t.eps >= 0)) key_fail("eps", "must be >= 0");
}

void data_validate(const DataOptions& d, bool is_image) {
    // Sides and counts stay below 2^31 (a 2-gigapixel side is beyond any slide), so that the grid
    // arithmetic below and in config_image_size cannot overflow (found by fuzz/config.cpp).
    constexpr int64_t kMost = int64_t(1) << 31;
    const auto bounded = [&](const char* key, const std::array<int64_t, 2>& v) {
        if (v[0] > kMost || v[1] > kMost) key_fail(key, "must be at most 2^31");
    };
    bounded("img_size", d.img_size);
    if (d.img_size[0] < 0 || d.img_size[1] < 0) key_fail("img_size", "must be >= 0 (0: the square grid of N patches)");
    bounded("patch_size", d.patch_size);
    bounded("patch_stride", d.patch_stride);
    if (d.N > kMost) key_fail("N", "must be at most 2^31");
    if (is_image) {
        for (int i = 0; i < 2; ++i) {
            if (d.patch_size[i] < 1) key_fail("patch_size", "must be >= 1");
            if (d.patch_stride[i] < 1) key_fail("patch_stride", "must be >= 1");
        }
        if (d.img_size[0] > 0 && (d.patch_size[0] > d.img_size[0] || d.patch_size[1] > d.img_size[1]))
            key_fail("patch_size", "patch is larger than the image (img_size)");
    }
    if (d.N < 0) key_fail("N", "must be >= 0");
    if (d.slide_level < 0) key_fail("slide_level", "must be >= 0");
    if (d.slide_mpp < 0) key_fail("slide_mpp", "must be >= 0 (0: use slide_level)");
    if (d.tissue_min < 0 || d.tissue_min > 1) key_fail("tissue_min", "must be a fraction in [0, 1]");
    if (d.N > 0 && is_image && d.img_size[0] > 0) {
        const int64_t rows = (d.img_size[0] - d.patch_size[0]) / d.patch_stride[0] + 1;
        const int64_t cols = (d.img_size[1] - d.patch_size[1]) / d.patch_stride[1] + 1;
        if (rows * cols != d.N)
            key_fail("N", "the grid of img_size, patch_size and patch_stride has " + std::to_string(rows * cols) +
                              " patches, not " + std::to_string(d.N));
    }
    if (d.n_train < 0) key_fail("n_train", "must be >= 0");
    if (d.n_test < 0) key_fail("n_test", "must be >= 0");
}

const VitPreset& preset_of(const ModelOptions& m) {
    if (m.vit.empty()) key_fail("vit", "enc_type vit needs a preset name (" + vit_preset_names() + ")");
    try {
        return vit_preset(m.vit);
    } catch (const std::invalid_argument& e) {
        key_fail("vit", e.what());
    }
}

void vit_validate(const ModelOptions& m) {
    const VitPreset& p = preset_of(m);
    if (m.n_chan_in != p.vit.in_chans)
        key_fail("n_chan_in", "the ViT '" + m.vit + "' takes " + std::to_string(p.vit.in_chans) + " channels");
    if (m.vit_depth < 0 || m.vit_depth > p.vit.depth)
        key_fail("vit_depth", "must be between 0 (the preset's) and the preset's " + std::to_string(p.vit.depth) + " blocks");
}

void model_validate(const ModelOptions& m) {
    if (m.n_class < 1) key_fail("n_class", "must be >= 1");
    if (m.is_image && m.enc_type == EncoderType::vit) {
        vit_validate(m);
    } else if (m.is_image) {
        if (!m.vit.empty()) key_fail("vit", "names a ViT preset, but enc_type is " + std::string(encoder_type_name(m.enc_type)) + " (set enc_type: vit)");
        if (m.n_res_blocks != 2 && m.n_res_blocks != 4) key_fail("n_res_blocks", "must be 2 or 4");
        if (m.n_chan_in != 1 && m.n_chan_in != 3) key_fail("n_chan_in", "image encoders take 1 or 3 channels");
        if (m.encoder_width < 1) key_fail("encoder_width", "must be >= 1");
    } else if (m.n_chan_in < 1) {
        key_fail("n_chan_in", "feature size must be >= 1");
    }
    const std::pair<const char*, int> positive[] = {{"n_token", m.n_token}, {"H", m.H},     {"D", m.D},
                                                    {"D_k", m.D_k},         {"D_v", m.D_v}, {"D_inner", m.D_inner}};
    for (const auto& [key, v] : positive)
        if (v < 1) key_fail(key, "must be >= 1");
    if (m.use_pos && m.D % 2 != 0) key_fail("D", "must be even when use_pos is on (sin/cos pairs)");
    if (m.is_image && encoder_dim(m) != m.D) {
        const std::string trunk = m.enc_type == EncoderType::vit
                                      ? "the ViT '" + m.vit + "'"
                                      : std::string("the ") + encoder_type_name(m.enc_type) + " trunk with " +
                                            std::to_string(m.n_res_blocks) + " blocks of width " +
                                            std::to_string(m.encoder_width);
        key_fail("D", trunk + " yields " + std::to_string(encoder_dim(m)) + "-d embeddings, not " + std::to_string(m.D));
    }
    if (m.freeze_encoder < -1) key_fail("freeze_encoder", "must be none, all or a number of blocks >= 0");
    if (!m.is_image && m.freeze_encoder >= 0)
        key_fail("freeze_encoder", "feature bags have no encoder to freeze (the projector always trains)");
    if (m.attn_dropout < 0 || m.attn_dropout >= 1) key_fail("attn_dropout", "must be in [0, 1)");
    if (m.dropout < 0 || m.dropout >= 1) key_fail("dropout", "must be in [0, 1)");
    std::set<std::string> names;
    for (size_t i = 0; i < m.tasks.size(); ++i) {
        const Task& t = m.tasks[i];
        const std::string key = "tasks.task" + std::to_string(i);
        if (t.id < 0 || t.id >= m.n_token)
            key_fail(key + ".id", "must be in [0, n_token) = [0, " + std::to_string(m.n_token) + ")");
        if (!names.insert(t.name).second) key_fail(key + ".name", "duplicate task name '" + t.name + "'");
        if (t.metric == Metric::multilabel_accuracy && t.act_fn != ActFn::sigmoid)
            key_fail(key + ".metric", "multilabel_accuracy needs act_fn sigmoid");
    }
}

}  // namespace

const char* metric_name(Metric m) { return kMetricNames[static_cast<size_t>(m)]; }
const char* encoder_type_name(EncoderType e) { return kEncoderNames[static_cast<size_t>(e)]; }

int64_t encoder_dim(const ModelOptions& m) {
    if (!m.is_image) return m.D;
    if (m.enc_type == EncoderType::vit) return vit_out_dim(preset_of(m).vit);
    const int64_t expansion = m.enc_type == EncoderType::resnet50 ? 4 : 1;
    return int64_t{m.encoder_width} * (m.n_res_blocks == 4 ? 8 : 2) * expansion;
}

std::string encoder_name(const ModelOptions& m) {
    if (!m.is_image) return "projector";
    return m.enc_type == EncoderType::vit ? m.vit : encoder_type_name(m.enc_type);
}

Config config_parse(const std::string& yaml_text, const std::vector<std::string>& overrides,
                    std::vector<std::string>* ignored, const std::string& origin) {
    YAML::Node root;
    try {
        root = YAML::Load(yaml_text);
    } catch (const YAML::Exception& e) {
        throw ConfigError(origin + ": not valid YAML: " + e.what());
    }
    if (root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
    if (!root.IsMap()) throw ConfigError(origin + ": expected a map of config keys at the top level");
    for (const auto& o : overrides) override_apply(root, o);

    Config cfg;
    const auto& table = key_table();
    for (const auto& kv : root) {
        const std::string key = kv.first.as<std::string>();
        auto it = std::find_if(table.begin(), table.end(), [&](const KeySpec& s) { return key == s.key; });
        if (it != table.end()) {
            try {
                it->read(cfg, kv.second);
            } catch (const ConfigError& e) {
                throw ConfigError(origin + ": " + e.what());
            }
        } else if (ignored_reference_keys().count(key)) {
            if (ignored) ignored->push_back(key);
        } else {
            throw ConfigError(origin + ": unknown config key '" + key + "'");
        }
    }
    if (cfg.model.tasks.empty()) throw ConfigError(origin + ": config key 'tasks': at least one task is required");
    config_validate(cfg);
    return cfg;
}

Config config_load(const std::string& path, const std::vector<std::string>& overrides,
                   std::vector<std::string>* ignored) {
    // A folder opens as an empty stream on Linux and would read as an empty config.
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) throw ConfigError("config file '" + path + "' is a directory");
    std::ifstream in(path);
    if (!in && errno == ENOENT) throw FileNotFound("cannot open config file '" + path + "': " + std::strerror(errno));
    if (!in) throw ConfigError("cannot open config file '" + path + "': " + std::strerror(errno));
    std::stringstream ss;
    ss << in.rdbuf();
    return config_parse(ss.str(), overrides, ignored, path);
}

std::array<int64_t, 2> config_image_size(const DataOptions& d) {
    if (d.img_size[0] > 0 && d.img_size[1] > 0) return d.img_size;
    // A square grid of N patches: side = (g - 1) * stride + patch.
    auto g = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(d.N))));
    return {(g - 1) * d.patch_stride[0] + d.patch_size[0], (g - 1) * d.patch_stride[1] + d.patch_size[1]};
}

void config_validate(const Config& c) {
    train_validate(c.train);
    model_validate(c.model);
    data_validate(c.data, c.model.is_image);
    if (c.model.is_image && c.model.enc_type == EncoderType::vit && c.data.normalize != Normalize::none)
        key_fail("normalize", "the ViT '" + c.model.vit + "' normalises with its own mean and std; set normalize: none");
    if (c.select.M < 1) key_fail("M", "must be >= 1");
    if (c.select.I < 1) key_fail("I", "must be >= 1");
    // An image config's N is its grid (checked against img_size above): every image has exactly N
    // patches, and a larger memory would hold only padding. Feature bags bring their own N, so
    // there M >= N stays the SPEC's "use every patch".
    if (c.model.is_image && c.data.N > 0 && c.select.M > c.data.N)
        key_fail("M", "is " + std::to_string(c.select.M) + ", more than the N = " + std::to_string(c.data.N) +
                          " patches of every image (M = N keeps them all)");
}

std::string config_to_yaml(const Config& cfg) {
    YAML::Emitter e;
    e << YAML::BeginMap;
    for (const auto& spec : key_table()) spec.write(cfg, e);
    e << YAML::EndMap;
    return std::string(e.c_str()) + "\n";
}

}  // namespace ips
