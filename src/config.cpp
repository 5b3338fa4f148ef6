#include "ips/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

namespace ips {
namespace {

// One row per key: how to read it from YAML into Config and how to write it back.
// A table keeps the reader, the writer and the list of known keys in one place.
struct KeySpec {
    const char* key;
    std::function<void(Config&, const YAML::Node&)> read;
    std::function<void(const Config&, YAML::Emitter&)> write;
};

template <typename T>
T scalar_as(const YAML::Node& node, const char* key, const char* type_name) {
    if (!node.IsScalar())
        throw ConfigError(std::string("config key '") + key + "': expected " + type_name);
    try {
        return node.as<T>();
    } catch (const YAML::Exception&) {
        throw ConfigError(std::string("config key '") + key + "': expected " + type_name +
                          ", got '" + node.Scalar() + "'");
    }
}

bool bool_as(const YAML::Node& node, const char* key) {
    // Reference files write Python booleans (True/False); yaml-cpp accepts those too.
    return scalar_as<bool>(node, key, "a boolean (true/false)");
}

template <typename T, typename M>
KeySpec num_key(const char* key, M Config::*member, const char* type_name) {
    return {key, [=](Config& c, const YAML::Node& n) { c.*member = scalar_as<T>(n, key, type_name); },
            [=](const Config& c, YAML::Emitter& e) { e << YAML::Key << key << YAML::Value << c.*member; }};
}
KeySpec int_key(const char* key, int Config::*m) { return num_key<int>(key, m, "an integer"); }
KeySpec i64_key(const char* key, int64_t Config::*m) { return num_key<int64_t>(key, m, "an integer"); }
KeySpec real_key(const char* key, double Config::*m) { return num_key<double>(key, m, "a number"); }
KeySpec str_key(const char* key, std::string Config::*m) { return num_key<std::string>(key, m, "a string"); }
KeySpec bool_key(const char* key, bool Config::*m) {
    return {key, [=](Config& c, const YAML::Node& n) { c.*m = bool_as(n, key); },
            [=](const Config& c, YAML::Emitter& e) {
                e << YAML::Key << key << YAML::Value << YAML::TrueFalseBool << c.*m;
            }};
}
KeySpec pair_key(const char* key, std::array<int64_t, 2> Config::*m) {
    return {key,
            [=](Config& c, const YAML::Node& n) {
                if (n.IsScalar()) {  // a single number means a square
                    int64_t v = scalar_as<int64_t>(n, key, "an integer or a list of two integers");
                    c.*m = {v, v};
                    return;
                }
                if (!n.IsSequence() || n.size() != 2)
                    throw ConfigError(std::string("config key '") + key +
                                      "': expected a list of two integers, e.g. [50, 50]");
                c.*m = {scalar_as<int64_t>(n[0], key, "an integer"),
                        scalar_as<int64_t>(n[1], key, "an integer")};
            },
            [=](const Config& c, YAML::Emitter& e) {
                e << YAML::Key << key << YAML::Value << YAML::Flow
                  << std::vector<int64_t>{(c.*m)[0], (c.*m)[1]};
            }};
}

ActFn act_fn_parse(const std::string& s, const std::string& key) {
    if (s == "softmax") return ActFn::softmax;
    if (s == "sigmoid") return ActFn::sigmoid;
    throw ConfigError("config key '" + key + "': expected softmax or sigmoid, got '" + s + "'");
}
Metric metric_parse(const std::string& s, const std::string& key) {
    if (s == "accuracy") return Metric::accuracy;
    if (s == "multilabel_accuracy") return Metric::multilabel_accuracy;
    if (s == "auc") return Metric::auc;
    throw ConfigError("config key '" + key +
                      "': expected accuracy, multilabel_accuracy or auc, got '" + s + "'");
}
const char* act_fn_name(ActFn a) { return a == ActFn::softmax ? "softmax" : "sigmoid"; }

void tasks_read(Config& c, const YAML::Node& n) {
    if (!n.IsMap()) throw ConfigError("config key 'tasks': expected a map of tasks");
    c.tasks.clear();
    for (const auto& kv : n) {
        std::string tkey = "tasks." + kv.first.as<std::string>();
        const YAML::Node& t = kv.second;
        if (!t.IsMap()) throw ConfigError("config key '" + tkey + "': expected a map");
        Task task;
        for (const auto& f : t) {
            std::string field = f.first.as<std::string>();
            std::string fkey = tkey + "." + field;
            if (field == "id") task.id = scalar_as<int>(f.second, fkey.c_str(), "an integer");
            else if (field == "name") task.name = scalar_as<std::string>(f.second, fkey.c_str(), "a string");
            else if (field == "act_fn") task.act_fn = act_fn_parse(f.second.as<std::string>(), fkey);
            else if (field == "metric") task.metric = metric_parse(f.second.as<std::string>(), fkey);
            else throw ConfigError("unknown config key '" + fkey + "' (a task has id, name, act_fn, metric)");
        }
        if (task.name.empty()) throw ConfigError("config key '" + tkey + ".name': missing");
        c.tasks.push_back(task);
    }
}

void tasks_write(const Config& c, YAML::Emitter& e) {
    e << YAML::Key << "tasks" << YAML::Value << YAML::BeginMap;
    for (size_t i = 0; i < c.tasks.size(); ++i) {
        const Task& t = c.tasks[i];
        e << YAML::Key << ("task" + std::to_string(i)) << YAML::Value << YAML::BeginMap;
        e << YAML::Key << "id" << YAML::Value << t.id;
        e << YAML::Key << "name" << YAML::Value << t.name;
        e << YAML::Key << "act_fn" << YAML::Value << act_fn_name(t.act_fn);
        e << YAML::Key << "metric" << YAML::Value << metric_name(t.metric);
        e << YAML::EndMap;
    }
    e << YAML::EndMap;
}

const std::vector<KeySpec>& key_table() {
    static const std::vector<KeySpec> table = {
        int_key("n_epoch", &Config::n_epoch),
        int_key("B", &Config::B),
        int_key("B_seq", &Config::B_seq),
        int_key("n_epoch_warmup", &Config::n_epoch_warmup),
        real_key("lr", &Config::lr),
        real_key("wd", &Config::wd),
        int_key("n_class", &Config::n_class),
        str_key("data_dir", &Config::data_dir),
        str_key("train_fname", &Config::train_fname),
        str_key("test_fname", &Config::test_fname),
        bool_key("eager", &Config::eager),
        str_key("dataset", &Config::dataset),
        str_key("normalize", &Config::normalize),
        int_key("n_train", &Config::n_train),
        int_key("n_test", &Config::n_test),
        pair_key("img_size", &Config::img_size),
        int_key("slide_level", &Config::slide_level),
        real_key("slide_mpp", &Config::slide_mpp),
        bool_key("tissue", &Config::tissue),
        real_key("tissue_min", &Config::tissue_min),
        real_key("eps", &Config::eps),
        i64_key("seed", &Config::seed),
        bool_key("is_image", &Config::is_image),
        str_key("enc_type", &Config::enc_type),
        bool_key("pretrained", &Config::pretrained),
        str_key("encoder_weights", &Config::encoder_weights),
        int_key("n_chan_in", &Config::n_chan_in),
        int_key("n_res_blocks", &Config::n_res_blocks),
        int_key("encoder_width", &Config::encoder_width),
        str_key("precision", &Config::precision),
        str_key("channels_last", &Config::channels_last),
        bool_key("cudnn_benchmark", &Config::cudnn_benchmark),
        bool_key("shuffle", &Config::shuffle),
        str_key("shuffle_style", &Config::shuffle_style),
        bool_key("shuffle_eval", &Config::shuffle_eval),
        int_key("n_token", &Config::n_token),
        i64_key("N", &Config::N),
        i64_key("M", &Config::M),
        i64_key("I", &Config::I),
        pair_key("patch_size", &Config::patch_size),
        pair_key("patch_stride", &Config::patch_stride),
        bool_key("use_pos", &Config::use_pos),
        int_key("H", &Config::H),
        int_key("D", &Config::D),
        int_key("D_k", &Config::D_k),
        int_key("D_v", &Config::D_v),
        int_key("D_inner", &Config::D_inner),
        real_key("attn_dropout", &Config::attn_dropout),
        real_key("dropout", &Config::dropout),
        {"tasks", tasks_read, tasks_write},
    };
    return table;
}

// Keys of the reference implementation that have no meaning here (its data loader and
// profiling switches): accepted so that its files load unchanged, and reported.
const std::set<std::string>& ignored_reference_keys() {
    static const std::set<std::string> keys = {"n_worker", "pin_memory", "track_efficiency",
                                               "track_epoch"};
    return keys;
}

// --set a.b.c=value: walk (and create) nested maps; the value is parsed as YAML.
void override_apply(YAML::Node& root, const std::string& assignment) {
    auto eq = assignment.find('=');
    if (eq == std::string::npos || eq == 0)
        throw ConfigError("override '" + assignment + "': expected KEY=VALUE");
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

}  // namespace

const char* metric_name(Metric m) {
    return m == Metric::accuracy ? "accuracy" : m == Metric::auc ? "auc" : "multilabel_accuracy";
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
        std::string key = kv.first.as<std::string>();
        auto it = std::find_if(table.begin(), table.end(),
                               [&](const KeySpec& s) { return key == s.key; });
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
    // The reference derives its head count from its task map; default to one per token.
    if (cfg.tasks.empty())
        throw ConfigError(origin + ": config key 'tasks': at least one task is required");
    config_validate(cfg);
    return cfg;
}

Config config_load(const std::string& path, const std::vector<std::string>& overrides,
                   std::vector<std::string>* ignored) {
    std::ifstream in(path);
    if (!in) throw ConfigError("cannot open config file '" + path + "'");
    std::stringstream ss;
    ss << in.rdbuf();
    return config_parse(ss.str(), overrides, ignored, path);
}

std::array<int64_t, 2> config_image_size(const Config& cfg) {
    if (cfg.img_size[0] > 0 && cfg.img_size[1] > 0) return cfg.img_size;
    // A square grid of N patches: side = (g - 1) * stride + patch.
    auto g = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(cfg.N))));
    return {(g - 1) * cfg.patch_stride[0] + cfg.patch_size[0],
            (g - 1) * cfg.patch_stride[1] + cfg.patch_size[1]};
}

void config_validate(const Config& c) {
    auto fail = [](const std::string& key, const std::string& why) {
        throw ConfigError("config key '" + key + "': " + why);
    };
    if (c.n_epoch < 1) fail("n_epoch", "must be >= 1");
    if (c.B < 1) fail("B", "must be >= 1");
    // B_seq above B means "all B at once" (so --set B=2 works on a B_seq: 16 file).
    if (c.B_seq < 1) fail("B_seq", "must be >= 1");
    if (c.n_epoch_warmup < 0 || c.n_epoch_warmup > c.n_epoch)
        fail("n_epoch_warmup", "must be between 0 and n_epoch");
    if (!(c.lr > 0)) fail("lr", "must be > 0");
    if (c.wd < 0) fail("wd", "must be >= 0");
    if (c.n_class < 1) fail("n_class", "must be >= 1");
    if (c.normalize != "none" && c.normalize != "imagenet") fail("normalize", "must be none or imagenet");
    if (!(c.eps >= 0)) fail("eps", "must be >= 0");
    if (c.is_image) {
        if (c.enc_type != "resnet18" && c.enc_type != "resnet34" && c.enc_type != "resnet50")
            fail("enc_type", "must be resnet18, resnet34 or resnet50, got '" + c.enc_type + "'");
        if (c.n_res_blocks != 2 && c.n_res_blocks != 4) fail("n_res_blocks", "must be 2 or 4");
        if (c.n_chan_in != 1 && c.n_chan_in != 3) fail("n_chan_in", "image encoders take 1 or 3 channels");
        for (int i = 0; i < 2; ++i) {
            if (c.patch_size[i] < 1) fail("patch_size", "must be >= 1");
            if (c.patch_stride[i] < 1) fail("patch_stride", "must be >= 1");
        }
        if (c.img_size[0] > 0 && (c.patch_size[0] > c.img_size[0] || c.patch_size[1] > c.img_size[1]))
            fail("patch_size", "patch is larger than the image (img_size)");
    } else if (c.n_chan_in < 1) {
        fail("n_chan_in", "feature size must be >= 1");
    }
    if (c.shuffle_style != "batch" && c.shuffle_style != "instance")
        fail("shuffle_style", "must be batch or instance, got '" + c.shuffle_style + "'");
    if (c.M < 1) fail("M", "must be >= 1");
    if (c.I < 1) fail("I", "must be >= 1");
    if (c.N < 0) fail("N", "must be >= 0");
    if (c.slide_level < 0) fail("slide_level", "must be >= 0");
    if (c.slide_mpp < 0) fail("slide_mpp", "must be >= 0 (0: use slide_level)");
    if (c.tissue_min < 0 || c.tissue_min > 1) fail("tissue_min", "must be a fraction in [0, 1]");
    if (c.N > 0 && c.is_image && c.img_size[0] > 0) {
        int64_t rows = (c.img_size[0] - c.patch_size[0]) / c.patch_stride[0] + 1;
        int64_t cols = (c.img_size[1] - c.patch_size[1]) / c.patch_stride[1] + 1;
        if (rows * cols != c.N)
            fail("N", "the grid of img_size, patch_size and patch_stride has " +
                          std::to_string(rows * cols) + " patches, not " + std::to_string(c.N));
    }
    if (c.n_token < 1) fail("n_token", "must be >= 1");
    if (c.H < 1) fail("H", "must be >= 1");
    if (c.D < 1) fail("D", "must be >= 1");
    if (c.D_k < 1) fail("D_k", "must be >= 1");
    if (c.D_v < 1) fail("D_v", "must be >= 1");
    if (c.D_inner < 1) fail("D_inner", "must be >= 1");
    if (c.use_pos && c.D % 2 != 0) fail("D", "must be even when use_pos is on (sin/cos pairs)");
    if (c.is_image) {
        if (c.encoder_width < 1) fail("encoder_width", "must be >= 1");
        const int64_t expansion = c.enc_type == "resnet50" ? 4 : 1;
        const int64_t trunk_dim = c.encoder_width * (c.n_res_blocks == 4 ? 8 : 2) * expansion;
        if (c.D != trunk_dim)
            fail("D", "the " + c.enc_type + " trunk with " + std::to_string(c.n_res_blocks) +
                          " blocks of width " + std::to_string(c.encoder_width) + " yields " +
                          std::to_string(trunk_dim) + "-d embeddings, not " +
                          std::to_string(c.D));
    }
    if (c.precision != "auto" && c.precision != "fp32" && c.precision != "tf32" && c.precision != "bf16")
        fail("precision", "must be auto, fp32, tf32 or bf16, got '" + c.precision + "'");
    if (c.channels_last != "auto" && c.channels_last != "true" && c.channels_last != "false")
        fail("channels_last", "must be auto, true or false, got '" + c.channels_last + "'");
    if (c.attn_dropout < 0 || c.attn_dropout >= 1) fail("attn_dropout", "must be in [0, 1)");
    if (c.dropout < 0 || c.dropout >= 1) fail("dropout", "must be in [0, 1)");
    std::set<std::string> names;
    for (size_t i = 0; i < c.tasks.size(); ++i) {
        const Task& t = c.tasks[i];
        std::string key = "tasks.task" + std::to_string(i);
        if (t.id < 0 || t.id >= c.n_token)
            fail(key + ".id", "must be in [0, n_token) = [0, " + std::to_string(c.n_token) + ")");
        if (!names.insert(t.name).second) fail(key + ".name", "duplicate task name '" + t.name + "'");
        if (t.metric == Metric::multilabel_accuracy && t.act_fn != ActFn::sigmoid)
            fail(key + ".metric", "multilabel_accuracy needs act_fn sigmoid");
    }
    if (c.n_train < 0) fail("n_train", "must be >= 0");
    if (c.n_test < 0) fail("n_test", "must be >= 0");
}

std::string config_to_yaml(const Config& cfg) {
    YAML::Emitter e;
    e << YAML::BeginMap;
    for (const auto& spec : key_table()) spec.write(cfg, e);
    e << YAML::EndMap;
    return std::string(e.c_str()) + "\n";
}

}  // namespace ips
