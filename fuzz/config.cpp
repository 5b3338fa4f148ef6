// The YAML config and `--set KEY=VALUE` overrides: config_load (file + overrides + validation),
// then what the rest of the program does with a loaded config (image size, encoder size) and the
// round trip every run and checkpoint relies on: the YAML config_to_yaml saves must load again and
// save to the same text.
//
// Input: the config file, then up to 8 overrides, separated by '\0' bytes.
#include "fuzz_util.h"
#include "ips/config.h"

using namespace ips;
using namespace ips_fuzz;

IPS_FUZZ_INIT_QUIET

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const auto parts = split_nul(std::string(reinterpret_cast<const char*>(data), size), 9);
    const std::string path = file_write("config.yaml", parts[0]);
    const std::vector<std::string> overrides(parts.begin() + 1, parts.end());
    Config cfg;
    std::vector<std::string> ignored;
    try {
        cfg = config_load(path, overrides, &ignored);
    } catch (const std::exception& e) {
        note(e);
        return 0;  // a clear error (ConfigError, or yaml-cpp's own for keys that are not text)
    }
    // What callers compute from any config that loaded.
    (void)config_image_size(cfg.data);
    (void)encoder_dim(cfg.model);
    for (const Task& t : cfg.model.tasks) (void)metric_name(t.metric);
    (void)encoder_type_name(cfg.model.enc_type);

    // The saved config loads again and saves to the same text.
    const std::string saved = config_to_yaml(cfg);
    Config again;
    try {
        again = config_parse(saved, {}, nullptr, "<saved>");
    } catch (const std::exception& e) {
        fuzz_fail(std::string("config_to_yaml wrote a config that does not load: ") + e.what() + "\n" + saved);
    }
    const std::string resaved = config_to_yaml(again);
    if (resaved != saved) fuzz_fail("config_to_yaml -> config_parse -> config_to_yaml changed the text:\n" + saved +
                                    "---\n" + resaved);
    return 0;
}
